// reconciler's dashboard: plain JavaScript against the service's own HTTP API. No build step,
// nothing fetched from elsewhere. Text from the server is only ever set as textContent.
"use strict";

const $ = (s) => document.querySelector(s);
const WORDS = { ready: "Ready", reconciling: "Reconciling", failed: "Failed",
  blocked: "Blocked", stopped: "Stopped", removed: "Removed" };
let token = localStorage.getItem("reconciler-token") || "";
let logAbort = null;
let current = null; // the task whose log is shown: {alloc, task, address}
let refreshTimer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function authHeaders() { return token ? { "X-Nomad-Token": token } : {}; }

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
  if (r.status === 403) { $("#auth").hidden = false; throw new Error("a token is needed"); }
  if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
  return r.json();
}

function ago(ts, now) {
  if (!ts) return "";
  let s = Math.max(0, Math.floor(now - ts));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) return `${Math.floor(s / size)}${unit}`;
  }
  return `${s}s`;
}

function when(ts) {
  return ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
}

function fill(table, rows) {
  const body = $(table + " tbody");
  body.replaceChildren(...rows);
}

function render(o) {
  $("#node").textContent = `${o.node.Name} · ${o.node.Status}`;
  const byJob = {};
  for (const t of o.tasks) (byJob[t.job_id] ||= []).push(t);
  fill("#jobs", o.jobs.map((j) => {
    const word = WORDS[j.status] || j.status;
    const tasks = byJob[j.id] || [];
    const running = tasks.filter((t) => t.state === "running").length;
    return el("tr", { "data-job": j.id },
      el("td", {}, el("strong", {}, j.id)),
      el("td", { class: "wrap" }, el("span", { class: `pill ${word}` }, word),
        j.reason ? el("span", { class: "muted" }, " " + j.reason) : ""),
      el("td", {}, `${running}/${tasks.length} running`),
      el("td", {}, el("code", {}, j.source_file || "")),
      el("td", {}, el("code", {}, (j.applied || j.attempted || "").slice(0, 12)),
        j.applied_commit ? el("span", { class: "muted" }, ` @${j.applied_commit.slice(0, 8)}`) : ""),
      el("td", {},
        j.paused
          ? el("button", { onclick: () => act(`/v1/reconciler/job/${enc(j.id)}/start`) }, "start")
          : el("button", { onclick: () => act(`/v1/reconciler/job/${enc(j.id)}/stop`) }, "stop")));
  }));
  fill("#tasks", o.tasks.map((t) => {
    const address = `${t.job_id}/${t.group_name}/${t.idx}/${t.task}`;
    const up = t.state === "running" ? ago(t.started_at, o.now) : "";
    return el("tr", { "data-task": address },
      el("td", {}, el("code", {}, address)),
      el("td", {}, el("span", { class: t.state }, t.state)),
      el("td", {}, t.pid ?? ""), el("td", {}, up), el("td", {}, String(t.restarts)),
      el("td", {}, String(t.runs)), el("td", { class: "wrap muted" }, t.reason || ""),
      el("td", {},
        el("button", { class: "logs", onclick: () => openLogs(t.alloc_id, t.task, address) }, "logs"), " ",
        el("button", { onclick: () => act(`/v1/client/allocation/${t.alloc_id}/restart`,
          { TaskName: t.task }) }, "restart")));
  }));
  $("#plan").replaceChildren(...(o.plan.length ? o.plan.map((p) => el("li", {},
    el("strong", {}, p.action), " ", el("code", {}, p.task), el("span", { class: "muted" }, " " + p.reason)))
    : [el("li", { class: "muted" }, "nothing: the machine runs what the files say")]));
  $("#problems").replaceChildren(...(o.problems.length ? o.problems.map((p) => el("li", {},
    el("code", { class: p.severity }, p.file + (p.line ? `:${p.line}` : "")), ": ",
    p.severity === "error" ? "" : "warning: ", p.path ? `${p.path}: ` : "", p.message))
    : [el("li", { class: "muted" }, "none")]));
  chart(o.activity);
}

function chart(a) {
  const n = 60, w = 600, h = 100, series = [["starts", "#1a7f37"], ["exits", "#0969da"], ["restarts", "#cf222e"]];
  const data = Array.from({ length: n }, () => ({ starts: 0, exits: 0, restarts: 0 }));
  for (const r of a.rows) if (r.slot >= 0 && r.slot < n) data[r.slot] = r;
  const max = Math.max(1, ...data.map((d) => d.starts + d.exits + d.restarts));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h + 14}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "task starts, exits and restarts per minute over the last hour");
  const bw = w / n;
  data.forEach((d, i) => {
    let y = h;
    for (const [k, colour] of series) {
      const v = d[k] || 0;
      if (!v) continue;
      const bh = (v / max) * h;
      y -= bh;
      const r = document.createElementNS(ns, "rect");
      Object.entries({ x: i * bw + 1, y, width: bw - 2, height: bh, fill: colour }).forEach(([k2, v2]) => r.setAttribute(k2, v2));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${k}: ${v}`;
      r.append(title);
      svg.append(r);
    }
  });
  const axis = document.createElementNS(ns, "line");
  Object.entries({ x1: 0, y1: h, x2: w, y2: h, stroke: "#dde2e6" }).forEach(([k, v]) => axis.setAttribute(k, v));
  svg.append(axis);
  const legend = el("div", { class: "legend" }, ...series.map(([k, c]) =>
    el("span", {}, el("span", { class: "sw", style: `background:${c}` }), k)),
    el("span", { class: "muted" }, `max ${max}/min`));
  $("#chart").replaceChildren(svg, legend);
}

function enc(s) { return encodeURIComponent(s); }

async function act(path, body) {
  try {
    await api(path, { method: "POST", body: JSON.stringify(body || {}),
      headers: { "Content-Type": "application/json" } });
  } catch (e) { alert(e.message); }
  soon();
}

async function refresh() {
  try { render(await api("/v1/reconciler/overview")); } catch (e) { $("#node").textContent = e.message; }
}

function soon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { refresh(); history(); }, 250);
}

// A streamed response, line by line or chunk by chunk, until it ends or is aborted.
async function readStream(resp, onText) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(dec.decode(value, { stream: true }));
  }
}

async function openLogs(alloc, task, address) {
  current = { alloc, task, address };
  if (logAbort) logAbort.abort();
  logAbort = new AbortController();
  const stream = document.querySelector("input[name=stream]:checked").value;
  $("#logs-section").hidden = false;
  $("#logs-title").textContent = `${address} (${stream}, following)`;
  const pre = $("#logs");
  pre.textContent = "";
  const q = `task=${enc(task)}&type=${stream}&follow=true&plain=true&origin=end&offset=65536`;
  try {
    const resp = await fetch(`/v1/client/fs/logs/${alloc}?${q}`, { headers: authHeaders(), signal: logAbort.signal });
    if (!resp.ok) { pre.textContent = await resp.text(); return; }
    await readStream(resp, (text) => {
      const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent = (pre.textContent + text).slice(-200000);
      if (stick) pre.scrollTop = pre.scrollHeight;
    });
  } catch (e) { if (e.name !== "AbortError") pre.textContent += `\n[${e.message}]`; }
}

async function followEvents() {
  const live = $("#live");
  for (;;) {
    try {
      const resp = await fetch("/v1/event/stream?topic=Job&topic=Allocation", { headers: authHeaders() });
      if (resp.ok) {
        live.textContent = "live"; live.className = "pill live";
        let buf = "";
        await readStream(resp, (text) => {
          buf += text;
          const lines = buf.split("\n");
          buf = lines.pop();
          if (lines.some((l) => l.length > 2)) soon(); // "{}" is a heartbeat
        });
      }
    } catch (e) { /* reconnect below */ }
    live.textContent = "offline"; live.className = "pill muted";
    await new Promise((r) => setTimeout(r, 3000));
  }
}

async function history() {
  const f = new FormData($("#filters"));
  const q = new URLSearchParams();
  for (const [k, v] of f.entries()) if (v) q.set(k, v);
  try {
    const h = await api(`/v1/reconciler/history?${q}`);
    fill("#runs", h.runs.map((r) => el("tr", {},
      el("td", {}, el("code", {}, `${r.job_id}/${r.group_name}/${r.idx}/${r.task}`)),
      el("td", {}, r.pid ?? ""), el("td", {}, when(r.started_at)), el("td", {}, when(r.finished_at)),
      el("td", {}, el("span", { class: r.outcome === "exited" ? "complete" : r.outcome }, r.outcome)),
      el("td", {}, r.exit_code ?? ""), el("td", {}, r.signal || ""))));
    fill("#events", h.events.map((e) => el("tr", {},
      el("td", {}, when(e.at)),
      el("td", {}, el("code", {}, e.task ? `${e.job_id}/${e.group_name}/${e.idx}/${e.task}` : e.job_id)),
      el("td", {}, e.type), el("td", { class: "wrap" }, e.message))));
  } catch (e) { /* shown by refresh */ }
}

$("#filters").addEventListener("submit", (e) => { e.preventDefault(); history(); });
$("#logs-close").addEventListener("click", () => {
  if (logAbort) logAbort.abort();
  current = null;
  $("#logs-section").hidden = true;
});
document.querySelectorAll("input[name=stream]").forEach((r) => r.addEventListener("change", () => {
  if (current) openLogs(current.alloc, current.task, current.address);
}));
$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("#token").value;
  localStorage.setItem("reconciler-token", token);
  $("#auth").hidden = true;
  refresh(); history();
});

refresh();
history();
followEvents();
setInterval(refresh, 15000); // uptimes move on even when nothing happens
