"""What probing costs: N tcp and http checks (half each) at a 10 s interval, run by the
service's one check scheduler, against loopback servers in another process (their CPU is not
counted). Prints the scheduler's CPU as a share of one core, and the probes it completed.

    .venv/bin/python bench/checks.py [--checks 1000] [--seconds 60]

The first line is a calibration (a fixed Python loop): compare runs on this kind of VM with it.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.remove(str(Path(__file__).resolve().parent))  # bench/http.py would shadow the stdlib
sys.path.insert(0, str(Path(__file__).parents[1]))

from reconciler.db.registry import CheckEntry
from reconciler.plan.health import Thresholds
from reconciler.service.checks import CheckSpec, Scheduler
from reconciler.service.probes import Target

SERVER = r"""
import asyncio, sys

async def tcp(reader, writer):
    writer.close()

async def http(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except Exception:
        pass
    writer.close()

async def main():
    a = await asyncio.start_server(tcp, "127.0.0.1", 0, backlog=1024)
    b = await asyncio.start_server(http, "127.0.0.1", 0, backlog=1024)
    print(a.sockets[0].getsockname()[1], b.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def calibration() -> float:
    t = time.perf_counter()
    n = 0
    for i in range(3_000_000):
        n += i
    return time.perf_counter() - t


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=10.0)
    args = ap.parse_args()
    print(f"calibration: {calibration():.3f} s for a fixed Python loop")
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        tcp_port, http_port = map(int, server.stdout.readline().split())
        done = {"probes": 0, "transitions": 0}
        lock = threading.Lock()

        def post(transitions: list[object], restarts: list[object]) -> None:
            with lock:
                done["transitions"] += len(transitions)

        sched = Scheduler(post, lambda *_: (0, b""))
        counted = sched._result

        def count(*a: object, **k: object) -> None:
            done["probes"] += 1
            counted(*a, **k)  # type: ignore[arg-type]

        sched._result = count  # type: ignore[method-assign]
        specs = {}
        for i in range(args.checks):
            kind = "tcp" if i % 2 else "http"
            port = tcp_port if kind == "tcp" else http_port
            entry = CheckEntry("bench", "g", i, "t", "svc", f"c{i}", kind, "require_healthy", "x")
            specs[entry.key()] = CheckSpec(entry, args.interval, 2.0, Thresholds(),
                                           Target(kind, "127.0.0.1", port, "/health"))  # fmt: skip
        sched.start()
        sched.update(None, specs)
        time.sleep(args.interval)  # every check has had its first probe (at interval / 2)
        c0, t0, p0 = cpu(), time.monotonic(), done["probes"]
        time.sleep(args.seconds)
        c1, t1, p1 = cpu(), time.monotonic(), done["probes"]
        sched.stop()
        share = (c1 - c0) / (t1 - t0) * 100
        rate = (p1 - p0) / (t1 - t0)
        expected = args.checks / args.interval
        print(f"{args.checks} checks (tcp and http, half each) every {args.interval:g} s: "
              f"{share:.2f} % of one core over {t1 - t0:.0f} s; {rate:.1f} probes/s "
              f"(expected {expected:.1f}); {(c1 - c0) / max(1, p1 - p0) * 1e6:.0f} µs CPU "
              f"per probe; {done['transitions']} transitions")  # fmt: skip
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
