"""The Nomad-compatible routes, read side: agent, status, nodes, jobs, allocations, stats, and
reconciler's own views for the dashboard. Streams (logs, events) are in streams.py, writes in
writes.py. Every read is a read-only store transaction; actions go through the loop's queue."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reconciler import __version__
from reconciler.db import reads
from reconciler.db.store import Store
from reconciler.service import nomad
from reconciler.service.http import HttpError, Request, Router
from reconciler.service.loop import Service

EVENTS_PER_TASK = 10  # Nomad keeps the last 10 events of a task state


class Api:
    def __init__(self, service: Service, data_dir: Path, http_addr: str, token: str = "") -> None:
        self.service, self.data_dir, self.http_addr = service, data_dir, http_addr
        self.token = token
        self.db = data_dir / "state.db"
        self.store = Store(self.db, readonly=True)
        self._cpu: dict[str, tuple[float, float]] = {}  # task -> (when, cpu seconds)

    def routes(self, r: Router) -> None:
        r.add("GET", "/v1/agent/self", self.agent_self)
        r.add("GET", "/v1/agent/health", lambda _: {"client": {"ok": True, "message": "ok"},
                                                    "server": {"ok": True, "message": "ok"}})  # fmt: skip
        r.add("GET", "/v1/status/leader", lambda _: self.rpc_addr)
        r.add("GET", "/v1/status/peers", lambda _: [self.rpc_addr])
        r.add("GET", "/v1/regions", lambda _: [nomad.REGION])
        r.add("GET", "/v1/nodes", self.nodes)
        r.add("GET", "/v1/node/([^/]+)", self.node)
        r.add("GET", "/v1/node/([^/]+)/allocations", self.node_allocations)
        r.add("GET", "/v1/jobs", self.jobs)
        r.add("GET", "/v1/job/([^/]+)", self.job)
        r.add("GET", "/v1/job/([^/]+)/summary", self.job_summary)
        r.add("GET", "/v1/job/([^/]+)/allocations", self.job_allocations)
        r.add("GET", "/v1/job/([^/]+)/versions", self.job_versions)
        r.add("GET", "/v1/job/([^/]+)/evaluations", lambda _: [])
        r.add("GET", "/v1/job/([^/]+)/deployments", lambda _: [])
        r.add("GET", "/v1/job/([^/]+)/deployment", lambda _: None)
        r.add("GET", "/v1/evaluations", lambda _: [])
        r.add("GET", "/v1/deployments", lambda _: [])
        r.add("GET", "/v1/allocations", self.allocations)
        r.add("GET", "/v1/allocation/([^/]+)", self.allocation)
        r.add("GET", "/v1/client/allocation/([^/]+)/stats", self.alloc_stats)
        r.add("GET", "/v1/reconciler/overview", self.overview)
        r.add("GET", "/v1/reconciler/history", self.history)

    # ---- shared lookups ----

    @property
    def rpc_addr(self) -> str:
        host = self.http_addr.rpartition(":")[0] or "127.0.0.1"
        return f"{host}:4647"

    def node_json(self, stub: bool = False) -> dict[str, Any]:
        fp = self.service.fingerprint
        return nomad.node(fp.attributes, fp.healthy, fp.description, self.http_addr,
                          __version__, stub=stub)  # fmt: skip

    def job_row(self, job: str) -> dict[str, Any]:
        rows = reads.jobs(self.store, job)
        if not rows:
            raise HttpError(404, "job not found")
        return rows[0]

    def job_body(self, row: dict[str, Any]) -> dict[str, Any]:
        model = nomad.model_of(row["applied_canonical"] or row["attempted_canonical"])
        return nomad.job(row["id"], model, row, row["version"] or 0)

    def alloc_list(self, job: str | None, full: bool = False, only: str | None = None,
                   prefix: str = "") -> list[dict[str, Any]]:  # fmt: skip
        slots = reads.slots(self.store, job)
        groups = nomad.allocs_of(slots)
        if only is not None or prefix:
            groups = {k: v for k, v in groups.items()
                      if (aid := nomad.alloc_id(*k)) == only or (prefix and aid.startswith(prefix))}  # fmt: skip
        if not groups:
            return []
        jobs_of = {k[0] for k in groups}
        events = reads.task_events(self.store, job if len(jobs_of) == 1 else None,
                                   limit=max(200, 4 * EVENTS_PER_TASK * len(slots)), newest=True)  # fmt: skip
        recent: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
        for e in events:
            if e["task"]:
                recent.setdefault((e["job_id"], e["group_name"], e["idx"], e["task"]), []).append(e)
        rows = {r["id"]: r for r in reads.jobs(self.store)} if full or len(jobs_of) > 1 else {
            r["id"]: r for r in reads.jobs(self.store, next(iter(jobs_of)))}  # fmt: skip
        node = self.node_json(stub=True)
        out = []
        for (j, g, i), tasks in groups.items():
            evs = [e for t in tasks for e in recent.get((j, g, i, t["task"]), [])[-EVENTS_PER_TASK:]]
            row = rows.get(j)
            model = nomad.model_of(row["applied_canonical"] or row["attempted_canonical"]) if row else {}
            body = self.job_body(row) if full and row else None
            out.append(nomad.allocation(tasks, evs, node, body, (row or {}).get("version") or 0,
                                        model.get("type", "service")))  # fmt: skip
        return out

    def find_alloc(self, alloc: str) -> dict[str, Any]:
        found = self.alloc_list(None, full=True, only=alloc)
        if not found:
            raise HttpError(404, f"alloc not found: {alloc}")
        return found[0]

    def alloc_tasks(self, alloc: str, task: str = "") -> list[list[Any]]:
        """The slot keys [job, group, index, task] of an allocation's tasks (only `task` if one
        is named): what a route naming an allocation acts on. 404 for an unknown one."""
        found = self.find_alloc(alloc)
        job, group, idx = found["reconciler"]["Address"].rsplit("/", 2)
        tasks = [t for t in found["TaskStates"] if not task or t == task]
        if not tasks:
            raise HttpError(404, f"unknown task name {task!r}")
        return [[job, group, int(idx), t] for t in tasks]

    # ---- routes ----

    def agent_self(self, _: Request) -> dict[str, Any]:
        node = self.node_json()
        addr, _sep, port = self.http_addr.rpartition(":")
        return {
            "config": {
                "Region": nomad.REGION, "Datacenter": node["Datacenter"],
                "NodeName": node["Name"], "Version": {"Version": __version__, "Revision": "",
                                                      "VersionPrerelease": "", "VersionMetadata": "reconciler"},
                "Client": {"Enabled": True}, "Server": {"Enabled": False},
                "ACL": {"Enabled": bool(self.token)},
            },
            "member": {"Name": node["Name"], "Addr": addr or "127.0.0.1", "Port": int(port or 4646),
                       "Status": "alive", "Tags": {"region": nomad.REGION, "dc": node["Datacenter"],
                                                   "build": __version__}},
            "stats": {"client": {"node_id": node["ID"], "known_servers": "", "last_heartbeat": "0"},
                      "reconciler": self.service.request("health").result(timeout=30)},
        }  # fmt: skip

    def nodes(self, r: Request) -> list[dict[str, Any]]:
        stub = self.node_json(stub=True)
        return [stub] if stub["ID"].startswith(r.arg("prefix")) else []

    def node(self, r: Request) -> dict[str, Any]:
        node = self.node_json()
        if r.params[0] not in (node["ID"], node["Name"]):
            raise HttpError(404, "node not found")
        return node

    def node_allocations(self, r: Request) -> list[dict[str, Any]]:
        self.node(r)
        return self.alloc_list(None, full=True)

    def jobs(self, r: Request) -> list[dict[str, Any]]:
        prefix = r.arg("prefix")
        rows = [j for j in reads.jobs(self.store) if j["id"].startswith(prefix)]
        by_job: dict[str, list[dict[str, Any]]] = {}
        for s in reads.slots(self.store):
            by_job.setdefault(s["job_id"], []).append(s)
        return [nomad.job_stub(j, by_job.get(j["id"], [])) for j in rows]

    def job(self, r: Request) -> dict[str, Any]:
        return self.job_body(self.job_row(r.params[0]))

    def job_summary(self, r: Request) -> dict[str, Any]:
        self.job_row(r.params[0])
        return nomad.summary(r.params[0], reads.slots(self.store, r.params[0]))

    def job_allocations(self, r: Request) -> list[dict[str, Any]]:
        self.job_row(r.params[0])
        return self.alloc_list(r.params[0])

    def job_versions(self, r: Request) -> dict[str, Any]:
        row = self.job_row(r.params[0])
        out = []
        for n, v in enumerate(reads.versions(self.store, row["id"])):
            body = nomad.job(row["id"], nomad.model_of(v["canonical"]), row, n)
            body.update(Version=n, Stable=v["state"] == "applied", SubmitTime=nomad.ns(v["first_seen"]))
            body["reconciler"] = {"State": v["state"], "Error": v["error"], "File": v["source_file"],
                                  "Commit": v["git_commit"], "Digest": v["digest"]}  # fmt: skip
            out.append(body)
        return {"Versions": out[::-1], "Diffs": None, "Index": 0, "KnownLeader": True,
                "LastContact": 0}  # fmt: skip

    def allocations(self, r: Request) -> list[dict[str, Any]]:
        return self.alloc_list(None, prefix=r.arg("prefix"))

    def allocation(self, r: Request) -> dict[str, Any]:
        return self.find_alloc(r.params[0])

    def alloc_stats(self, r: Request) -> dict[str, Any]:
        keys = self.alloc_tasks(r.params[0])
        raw: dict[str, dict[str, Any]] = self.service.request("stats", keys=keys).result(timeout=30)
        now = time.time()
        tasks: dict[str, dict[str, Any]] = {}
        for addr, s in raw.items():
            task = addr.rsplit("/", 1)[1]
            cpu = s["cpu_user_s"] + s["cpu_system_s"]
            before = self._cpu.get(addr)
            self._cpu[addr] = (now, cpu)
            percent = 100 * (cpu - before[1]) / (now - before[0]) if before and now > before[0] else 0.0
            tasks[task] = {"ResourceUsage": _usage(s, percent), "Timestamp": nomad.ns(now),
                           "Pids": None}  # fmt: skip
        total: dict[str, Any] = {"cpu_user_s": 0.0, "cpu_system_s": 0.0, "memory_rss": 0,
                                 "memory_cache": 0, "memory_swap": 0, "memory_max_usage": 0,
                                 "throttled_periods": 0, "throttled_time_s": 0.0}  # fmt: skip
        for s in raw.values():
            for k in total:
                total[k] += s[k]
        pct = sum(t["ResourceUsage"]["CpuStats"]["Percent"] for t in tasks.values())
        return {"ResourceUsage": _usage(total, pct), "Tasks": tasks, "Timestamp": nomad.ns(now)}

    # ---- reconciler's own views (the dashboard) ----

    def overview(self, _: Request) -> dict[str, Any]:
        """Everything the dashboard's first screen shows, in one read."""
        now = time.time()
        jobs = reads.jobs(self.store)
        slots = reads.slots(self.store)
        bucket = 60.0
        since = now - 60 * bucket
        return {
            "now": now,
            "node": self.node_json(stub=True),
            "jobs": [{k: v for k, v in j.items() if not k.endswith("canonical")} for j in jobs],
            "tasks": [s | {"alloc_id": nomad.alloc_id(s["job_id"], s["group_name"], s["idx"])}
                      for s in slots],  # fmt: skip
            "problems": reads.spec_errors(self.store),
            "activity": {"since": since, "bucket": bucket,
                         "rows": reads.activity(self.store, since, bucket)},
            "plan": self.pending_plan(),
        }  # fmt: skip

    def pending_plan(self) -> list[dict[str, str]]:
        """What the next pass would still change (empty when the machine is converged)."""
        from reconciler.plan import plan

        desired = self.service.desired
        if desired is None:
            return []
        observed = self.store.observed()
        live = frozenset(s.instance.id for s in observed.slots.values() if s.instance)
        observed = type(observed)(observed.jobs, observed.slots, live)
        p = plan(desired, observed, self.service.host, time.time(),
                 allow_empty=self.service.allow_empty)  # fmt: skip
        return [
            {"action": name, "task": str(a.key), "reason": a.reason}
            for name, actions in p.buckets().items() if name != "keep" for a in actions
        ]  # fmt: skip

    def history(self, r: Request) -> dict[str, Any]:
        job = r.arg("job") or None
        task = r.arg("task")
        kind = r.arg("type")
        since = time.time() - r.number("since", 0) if r.number("since", 0) else None
        limit = min(max(r.number("limit", 100), 1), 1000)
        runs = [x for x in reads.runs(self.store, job, since, limit) if not task or x["task"] == task]
        events = [
            e for e in reads.task_events(self.store, job, limit=limit * 4, newest=True)
            if (not task or e["task"] == task) and (not kind or e["type"] == kind)
            and (since is None or e["at"] >= since)
        ][-limit:][::-1]  # fmt: skip
        return {"runs": runs, "events": events}


def _usage(s: dict[str, Any], percent: float) -> dict[str, Any]:
    return {
        "MemoryStats": {"RSS": s["memory_rss"], "Cache": s["memory_cache"], "Swap": s["memory_swap"],
                        "Usage": s["memory_rss"] + s["memory_cache"], "MaxUsage": s["memory_max_usage"],
                        "KernelUsage": 0, "KernelMaxUsage": 0, "MappedFile": 0,
                        "Measured": ["RSS", "Cache", "Swap", "Max Usage"]},
        "CpuStats": {"SystemMode": s["cpu_system_s"], "UserMode": s["cpu_user_s"],
                     "TotalTicks": 0.0, "ThrottledPeriods": s["throttled_periods"],
                     "ThrottledTime": nomad.ns(s["throttled_time_s"]), "Percent": percent,
                     "Measured": ["System Mode", "User Mode", "Throttled Periods",
                                  "Throttled Time", "Percent"]},
        "DeviceStats": None,
    }  # fmt: skip
