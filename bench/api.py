"""The HTTP listener's cost, measured on the real `reconciler run` (root): with 1,000 tasks,
the service's idle CPU and RSS without the listener and with it, then RSS again after the API
has served a round of requests (lists of 1,000 allocations, the dashboard's overview, log
reads, event streams opened and closed).

    sudo .venv/bin/python bench/api.py [--tasks 1000] [--rounds 2] [--api-rounds 5]

Idle CPU is read over 90 s (CPU time comes in 10 ms ticks). Other work on the machine shows up
as noise: compare the calibration line between runs.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.loop import IDLE, JOB, calibration
from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def converge(svc: ServiceProc, jobs: Path, tasks: int) -> None:
    files, count = max(1, tasks // 10), 10
    for i in range(files):
        tmp = jobs / f".c{i}.tmp"
        tmp.write_text(JOB.format(name=f"c{i}", count=count, arg="100000"))
        tmp.rename(jobs / f"c{i}.hcl")
    db = sqlite3.connect(f"file:{svc.data / 'state.db'}?mode=ro", uri=True)
    t0 = time.time()
    running = "SELECT count(*) FROM task_slots WHERE state='running'"
    while db.execute(running).fetchone()[0] < files * count:
        if time.time() - t0 > 600:
            raise SystemExit(f"not converged in 600 s: {db.execute(running).fetchone()[0]} running")
        time.sleep(0.2)
    db.close()
    time.sleep(15)  # past min_healthy_time: versions promoted, nothing due


def idle(svc: ServiceProc) -> tuple[float, float]:
    p = psutil.Process(svc.proc.pid)  # type: ignore[union-attr]
    rss = p.memory_info().rss / 2**20
    c0 = sum(p.cpu_times()[:2])
    time.sleep(IDLE)
    c1 = sum(p.cpu_times()[:2])
    return rss, (c1 - c0) / IDLE * 100


def exercise(base: str) -> None:
    """A round of what clients and the dashboard ask."""
    s = requests.Session()
    allocs = s.get(f"{base}/v1/allocations", timeout=60).json()
    for _ in range(5):
        s.get(f"{base}/v1/jobs", timeout=60).raise_for_status()
        s.get(f"{base}/v1/reconciler/overview", timeout=60).raise_for_status()
        s.get(f"{base}/v1/job/c1/allocations", timeout=60).raise_for_status()
        s.get(f"{base}/v1/reconciler/history", timeout=60).raise_for_status()
    for a in allocs[:50]:
        s.get(f"{base}/v1/allocation/{a['ID']}", timeout=60).raise_for_status()
        s.get(f"{base}/v1/client/fs/logs/{a['ID']}", params={"task": "t", "type": "stdout"},
              timeout=60).raise_for_status()  # fmt: skip
    for _ in range(10):  # streams opened and dropped
        with requests.get(f"{base}/v1/event/stream", stream=True, timeout=60) as r:
            r.raise_for_status()


def run(tasks: int, http: bool, api_rounds: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="rchttp"))
    jobs = root / "jobs"
    jobs.mkdir()
    port = free_port()
    config = root / "node.hcl"  # room for 1,000 tasks of 100 MHz (admission)
    config.write_text("client {\n  cpu_total_compute = 1000000\n  memory_total_mb = 100000\n}\n")
    extra = ("--config", str(config)) + (("--http-addr", f"127.0.0.1:{port}") if http else ())
    svc = ServiceProc(jobs, root / "data", *extra)
    try:
        svc.start()
        converge(svc, jobs, tasks)
        rss, cpu = idle(svc)
        line = f"{'with' if http else 'without'} the listener, {tasks} tasks: RSS {rss:.1f} MB, idle CPU {cpu:.3f} % of a core over {IDLE} s"
        if http:
            base = f"http://127.0.0.1:{port}"
            p = psutil.Process(svc.proc.pid)  # type: ignore[union-attr]
            rounds = []
            for _ in range(api_rounds):
                cpu = sum(p.cpu_times()[:2])
                exercise(base)
                time.sleep(12)  # dropped streams end at their next heartbeat (10 s)
                rounds.append(f"{p.memory_info().rss / 2**20:.1f} MB/{p.num_threads()} threads/"
                              f"{sum(p.cpu_times()[:2]) - cpu:.1f} s CPU")  # fmt: skip
            line += f"; after each of {api_rounds} rounds of API requests (RSS/threads/CPU of the round): " + ", ".join(rounds)
        return line
    finally:
        if svc.proc and svc.proc.poll() is None:
            svc.kill()
        teardown(svc.data)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--listener-only", action="store_true", help="only the run with the listener")
    ap.add_argument("--api-rounds", type=int, default=5, help="rounds of API requests per run")
    args = ap.parse_args()
    for i in range(args.rounds):
        print(calibration(), flush=True)
        order = (False, True) if i % 2 == 0 else (True, False)  # alternate the order
        for http in (True,) if args.listener_only else order:
            print(f"round {i + 1}: " + run(args.tasks, http, args.api_rounds), flush=True)


if __name__ == "__main__":
    main()
