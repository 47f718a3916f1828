"""Drive the real `reconciler run` as a subprocess, as an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from reconciler.db.store import Store
from reconciler.service.control import NotRunning, call

BIN = Path(sys.executable).with_name("reconciler")


class ServiceProc:
    def __init__(self, jobs: Path, data: Path, *extra: str) -> None:
        self.jobs, self.data, self.extra = jobs, data, extra
        self.preexec: Any = None  # runs in the child before exec (limits for a test)
        self.command: list[str] = [str(BIN)]  # what runs `run ...` (a test may wrap it)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data.parent / f"{data.name}-service.log"

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*self.command, "run", "--jobs", str(self.jobs), "--data-dir", str(self.data), *self.extra],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            preexec_fn=self.preexec,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                code, _ = call(self.data, "health", timeout=2)
                if code == 200:
                    return
            except (NotRunning, OSError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("service exited:\n" + self.log.read_text()[-3000:])
            time.sleep(0.05)
        raise RuntimeError("service did not come up:\n" + self.log.read_text()[-3000:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def health(self) -> dict[str, Any]:
        return call(self.data, "health", timeout=10)[1]  # type: ignore[no-any-return]

    def store(self) -> Store:
        return Store(self.data / "state.db", readonly=True)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        s = self.store()
        try:
            with s.engine.connect() as c:
                return [tuple(r) for r in c.exec_driver_sql(sql, params).all()]
        finally:
            s.close()

    def states(self, job: str | None = None) -> dict[str, str]:
        rows = self.query("SELECT job_id, group_name, idx, task, state FROM task_slots")
        return {f"{j}/{g}/{i}/{t}": st for j, g, i, t, st in rows if job is None or j == job}

    def pids(self, job: str | None = None) -> dict[str, int]:
        rows = self.query(
            "SELECT s.job_id, s.group_name, s.idx, s.task, i.pid FROM task_slots s "
            "JOIN task_instances i ON i.id = s.instance_id WHERE s.state = 'running'"
        )
        return {f"{j}/{g}/{i}/{t}": p for j, g, i, t, p in rows if job is None or j == job}

    def wait(self, pred: Any, timeout: float = 30, what: str = "convergence") -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = pred()
                if last:
                    return
            except Exception as e:  # the store may be mid-migration at start
                last = e
            time.sleep(0.05)
        tail = self.log.read_text()[-2000:] if self.log.exists() else ""
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{tail}")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN), *args]
        if args[0] not in ("validate", "version"):  # the option goes before `--`
            argv = [str(BIN), args[0], "--data-dir", str(self.data), *args[1:]]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"})  # fmt: skip
        if check and p.returncode != 0:
            raise AssertionError(f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
