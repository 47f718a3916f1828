"""Operator verbs: status, history, logs, exec, signal, restart, stop, start.

Read verbs open the store read-only and work while the service is stopped; acting verbs go
through the control socket and say so clearly when the service is not running.
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from reconciler.cli import DataDir, Json, app
from reconciler.cli.common import (
    NOT_FOUND,
    NOT_RUNNING,
    USAGE,
    console,
    data_dir,
    emit_json,
    fail,
    read_store,
    resolve_tasks,
)
from reconciler.db import queries
from reconciler.db.snapshot import SlotKey
from reconciler.spec.units import format_duration


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _reason(slot: dict[str, Any]) -> str:
    """A slot waiting to be rescheduled says when: "rescheduling in 28s (reschedule 2)"."""
    reason, at = str(slot["reason"] or ""), slot.get("next_start_at")
    if slot["state"] == "pending" and at and reason.startswith("rescheduling ("):
        left = max(0, round(float(at) - time.time()))
        return f"rescheduling in {format_duration(left)} {reason.removeprefix('rescheduling ')}"
    return reason


def _ago(ts: float | None) -> str:
    if ts is None:
        return ""
    s = int(time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


STATUS_WORD = {"ready": "Ready", "reconciling": "Reconciling", "failed": "Failed",
               "blocked": "Blocked", "stopped": "Stopped", "removed": "Removed",
               "running": "Running", "complete": "Complete"}  # fmt: skip


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="One job")] = None,
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """Jobs (Ready / Reconciling / Failed / Blocked, why), versions, and task instances."""
    store = read_store(data_dir(data))
    jobs = [j for j in queries.jobs(store) if job is None or j["id"] == job]
    if job is not None and not jobs:
        fail(f"no job {job!r}", NOT_FOUND)
    slots = queries.slots(store, job)
    problems = queries.spec_errors(store)
    service = _service_state(data_dir(data))
    if as_json:
        emit_json({"service": service, "jobs": jobs, "tasks": slots, "file_problems": problems})
        return
    _print_service(service)
    for j in jobs:
        word = STATUS_WORD.get(j["status"], j["status"])
        colour = {"Ready": "green", "Failed": "red", "Blocked": "magenta"}.get(word, "yellow")
        line = f"{j['id']}: {word}" + (f" ({j['reason']})" if j["reason"] else "")
        console.print(f"[bold {colour}]{line}[/]" if console.is_terminal else line)
        applied = (j["applied"] or "-")[:12]
        attempted = (j["attempted"] or "-")[:12]
        extra = f" (commit {j['applied_commit'][:10]})" if j.get("applied_commit") else ""
        console.print(f"  file {j['source_file']}  applied {applied}{extra}  attempted {attempted}")
        table = Table(box=None, show_header=True, pad_edge=False)
        for col in ("task", "state", "pid", "uptime", "restarts", "runs", "reason"):
            table.add_column(col)
        for s in (s for s in slots if s["job_id"] == j["id"]):
            addr = f"{s['job_id']}/{s['group_name']}/{s['idx']}/{s['task']}"
            uptime = _ago(s["started_at"]) if s["state"] == "running" else ""
            table.add_row(addr, s["state"], str(s["pid"] or ""), uptime, str(s["restarts"]),
                          str(s["runs"]), _reason(s)[:80])  # fmt: skip
        console.print(table)
    if problems:
        console.print("job file problems:")
        for p in problems:
            where = p["file"] + (f":{p['line']}" if p["line"] else "")
            sev = "" if p["severity"] == "error" else "warning: "
            console.print(f"  {where}: {sev}{p['path'] + ': ' if p['path'] else ''}{p['message']}")
    if not jobs and not problems:
        console.print("no jobs")


def _service_state(data: Path) -> dict[str, Any]:
    """The running service's own condition (answered without waiting for its loop)."""
    from reconciler.service.control import NotRunning, call

    try:
        code, body = call(data, "state", timeout=3)
    except NotRunning:
        return {"state": "not running", "faults": []}
    except OSError as e:
        return {"state": "not answering", "faults": [], "error": str(e)}
    if code != 200 or not isinstance(body, dict):
        return {"state": "not answering", "faults": [], "error": f"HTTP {code}"}
    return body


def _print_service(service: dict[str, Any]) -> None:
    state = service["state"]
    word = {"ok": "OK", "degraded": "Degraded"}.get(state, state)
    faults = [f for f in service.get("faults", []) if f["degraded"]]
    line = f"service: {word}" + (" (" + "; ".join(f["cause"] for f in faults) + ")" if faults else "")
    colour = {"OK": "green", "Degraded": "red"}.get(word, "yellow")
    console.print(f"[bold {colour}]{line}[/]" if console.is_terminal else line)
    for f in service.get("faults", []):
        since = _ago(f["since"])
        kind = "" if f["degraded"] else "warning: "
        console.print(f"  {kind}{f['cause']} for {since}: {f['detail']}")
    if service.get("unrecorded_exits"):
        console.print(f"  {service['unrecorded_exits']} task exits kept in memory, written when "
                      "the store takes writes again")  # fmt: skip
    if service.get("retry_in") is not None:
        console.print(f"  next attempt in {service['retry_in']:g}s")


def _since(text: str | None) -> float | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d+)([smhd])", text)
    if m:
        return time.time() - int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        fail(f"--since {text!r}: use a duration (30m, 2h, 1d) or an ISO time", USAGE)


@app.command()
def history(
    job: Annotated[str | None, typer.Argument(help="One job")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Only this task name")] = None,
    since: Annotated[str | None, typer.Option("--since", help="30m, 2h, 1d or an ISO time")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """Runs (exit code, signal, OOM) and events, newest first."""
    store = read_store(data_dir(data))
    t = _since(since)
    runs = queries.runs(store, job, task, t, limit)
    events = queries.events(store, job, task, t, limit)
    if as_json:
        emit_json({"runs": runs, "events": events})
        return
    table = Table(title="runs", box=None)
    for col in ("id", "task", "pid", "started", "finished", "outcome", "exit", "signal", "oom"):
        table.add_column(col)
    for r in runs:
        table.add_row(str(r["id"]), f"{r['job_id']}/{r['group_name']}/{r['idx']}/{r['task']}",
                      str(r["pid"] or ""), _when(r["started_at"]), _when(r["finished_at"]),
                      r["outcome"], "" if r["exit_code"] is None else str(r["exit_code"]),
                      str(r["signal"] or ""), "yes" if r["oom_killed"] else "")  # fmt: skip
    console.print(table)
    table = Table(title="events", box=None)
    for col in ("time", "task", "type", "message"):
        table.add_column(col)
    for e in events:
        addr = (
            f"{e['job_id']}/{e['group_name']}/{e['idx']}/{e['task']}" if e["task"] else e["job_id"]
        )
        table.add_row(_when(e["at"]), addr, e["type"], e["message"])
    console.print(table)


def _keys(data: Path) -> list[SlotKey]:
    store = read_store(data)
    return [
        SlotKey(s["job_id"], s["group_name"], s["idx"], s["task"]) for s in queries.slots(store)
    ]


def _log_files(data: Path, key: SlotKey, stream: str) -> list[Path]:
    d = data / "allocs" / key.alloc / "alloc" / "logs"
    files = [(int(p.name.rsplit(".", 1)[1]), p) for p in d.glob(f"{key.task}.{stream}.*")
             if p.name.rsplit(".", 1)[1].isdigit()]  # fmt: skip
    return [p for _, p in sorted(files)]


@app.command()
def logs(
    task: Annotated[str, typer.Argument(help="JOB/TASK or JOB/GROUP/INDEX/TASK")],
    stderr: Annotated[bool, typer.Option("--stderr", help="stderr instead of stdout")] = False,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new output")
    ] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Only the last N lines")] = None,
    data: DataDir = None,
) -> None:
    """A task's output, across rotated files."""
    d = data_dir(data)
    key = resolve_tasks(_keys(d), task)[0]
    stream = "stderr" if stderr else "stdout"
    files = _log_files(d, key, stream)
    out = sys.stdout.buffer
    contents: dict[Path, bytes] = {}

    def read(f: Path) -> bytes:  # each file read once: -f goes on where this output ends
        if f not in contents:
            contents[f] = f.read_bytes()
        return contents[f]

    if tail is not None:
        lines: list[bytes] = []
        for f in reversed(files):
            lines = read(f).splitlines(keepends=True) + lines
            if len(lines) > tail:
                break
        out.write(b"".join(lines[-tail:] if tail else []))
    else:
        for f in files:
            out.write(read(f))
    out.flush()
    if follow:
        from reconciler.cli.live import follow_log

        last = (int(files[-1].name.rsplit(".", 1)[1]), len(read(files[-1]))) if files else None
        follow_log(d, key, stream, last)


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_cmd(
    task: Annotated[str, typer.Argument(help="JOB/TASK or JOB/GROUP/INDEX/TASK")],
    cmd: Annotated[list[str], typer.Argument(help="Command and arguments (after --)")],
    tty: Annotated[bool, typer.Option("-t", "--tty", help="Allocate a terminal")] = False,
    data: DataDir = None,
) -> None:
    """Run a command inside a running task; its exit code is passed through."""
    from reconciler.apply import handle_of
    from reconciler.cli import load_node
    from reconciler.executor.linux.executor import LinuxExecutor

    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        fail("no command given (reconciler exec TASK -- CMD ...)", USAGE)
    d = data_dir(data)
    key = resolve_tasks(_keys(d), task)[0]
    store = read_store(d)
    slot = store.observed().slots.get(key)
    if slot is None or slot.instance is None or slot.state not in ("running", "stopping"):
        fail(f"{key} is not running", NOT_FOUND)
    ex = LinuxExecutor(d.resolve(), load_node(None))
    argv = ex.enter_argv(handle_of(key, slot.instance), cmd)
    try:
        if tty:
            import pty

            status = pty.spawn(argv)
            code = os.waitstatus_to_exitcode(status)
        else:
            import subprocess

            code = subprocess.call(argv)
    finally:
        Path(argv[-1]).unlink(missing_ok=True)
    raise typer.Exit(code if code >= 0 else 128 - code)


def _act(data: Path, action: str, **args: Any) -> Any:
    from reconciler.service.control import NotRunning, call

    try:
        code, body = call(data, action, **args)
    except NotRunning as e:
        fail(str(e), NOT_RUNNING)
    if code != 200:
        fail(body.get("error", f"HTTP {code}") if isinstance(body, dict) else str(body),
             NOT_FOUND if code == 404 else 1)  # fmt: skip
    return body


@app.command()
def signal(
    task: Annotated[str, typer.Argument(help="JOB/TASK or JOB/GROUP/INDEX/TASK")],
    sig: Annotated[str, typer.Argument(help="Signal name, e.g. SIGHUP or HUP")],
    data: DataDir = None,
) -> None:
    """Send a signal to a task's main process."""
    import signal as signals

    name = sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()
    if name not in signals.Signals.__members__:
        fail(f"unknown signal {sig!r}", USAGE)
    d = data_dir(data)
    keys = resolve_tasks(_keys(d), task)
    body = _act(d, "signal", keys=[list(k) for k in keys], signal=name)
    console.print(f"sent {name} to " + ", ".join(body["signalled"]))


@app.command()
def restart(
    target: Annotated[str, typer.Argument(help="JOB, JOB/TASK or JOB/GROUP/INDEX/TASK")],
    data: DataDir = None,
) -> None:
    """Restart a task, or every task of a job (does not count against the restart policy)."""
    d = data_dir(data)
    keys = resolve_tasks(_keys(d), target, allow_job=True)
    body = _act(d, "restart", keys=[list(k) for k in keys])
    console.print("restarting " + (", ".join(body["restarted"]) or "nothing (not running)"))


@app.command()
def stop(job: Annotated[str, typer.Argument()], data: DataDir = None) -> None:
    """Stop a job without deleting its file (until `reconciler start JOB`)."""
    _act(data_dir(data), "stop", job=job)
    console.print(f"{job}: stopping")


@app.command()
def start(job: Annotated[str, typer.Argument()], data: DataDir = None) -> None:
    """Start a job stopped with `reconciler stop`."""
    _act(data_dir(data), "start", job=job)
    console.print(f"{job}: starting")
