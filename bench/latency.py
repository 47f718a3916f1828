"""Where a pickup's and a restart's milliseconds go in the service (root).

Runs `reconciler run` with RECONCILER_TRACE set (reconciler/trace.py: wall-clock stamps kept in
memory, written after each pass), with the workload of bench/peers.py, and prints for each
phase the p50 over the samples of the time since the sample began (file written / SIGKILL sent)
and since the phase before. `exec` is the task's own stamp (`date +%s%N` in its first command),
as peers.py measures it.

    sudo .venv/bin/python bench/latency.py [--samples 20] [--gap 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.peers import Reconciler, now_ns, wait


def stamps_since(trace: Path, t0: int, trigger: str) -> dict[str, int]:
    """The first stamp of `trigger` at or after t0, and the first of each other name after
    it (a pass that something else began in between does not count)."""
    every: list[tuple[str, int]] = []
    if not trace.exists():
        return {}
    with open(trace) as f:
        for line in f:
            every += [(n, ns) for n, ns in json.loads(line) if ns >= t0]
    every.sort(key=lambda x: x[1])
    start = next((ns for n, ns in every if n in trigger.split("|")), None)
    out: dict[str, int] = {}
    for name, ns in every:
        if start is not None and ns >= start and name not in out:
            out[name] = ns
    return out


def background(trace: Path, lo: int, hi: int) -> list[tuple[str, int]]:
    """Every stamp of the service's background threads (`bg_*`: the warm pool's refill, the
    store's checkpoint, the heap's trim) between lo and hi."""
    out: list[tuple[str, int]] = []
    with open(trace) as f:
        for line in f:
            out += [(n, ns) for n, ns in json.loads(line) if n.startswith("bg_") and lo <= ns <= hi]
    return sorted(out, key=lambda x: x[1])


def detail(title: str, trace: Path, samples: list[dict[str, int]], t0s: list[int]) -> str:
    """Each sample, slowest first: its total, its longest steps, and what the background
    threads began from 50 ms before it until its exec (ms from the sample's start)."""
    lines = [f"{title}: each sample, slowest first"]
    rows = sorted(
        zip(samples, t0s, strict=True), key=lambda st: st[0]["exec"] - st[1], reverse=True
    )
    for s, t0 in rows:
        named = sorted(
            ((n, ns) for n, ns in s.items() if not n.startswith("bg_")), key=lambda x: x[1]
        )
        steps = sorted(((b[1] - a[1], b[0]) for a, b in itertools.pairwise(named)), reverse=True)
        bg = background(trace, t0 - 50_000_000, s["exec"])
        lines.append(
            f"{(s['exec'] - t0) / 1e6:7.2f}  "
            + " ".join(f"{n}={d / 1e6:.2f}" for d, n in steps[:3])
            + "  |  " + " ".join(f"{n}@{(ns - t0) / 1e6:+.1f}" for n, ns in bg)
        )  # fmt: skip
    return "\n".join(lines)


def table(title: str, samples: list[dict[str, int]], t0s: list[int]) -> str:
    """p50 of each phase since the sample began, and since the phase before (in the samples
    that have both); `n`: how many samples had the phase."""
    if not samples:
        return f"{title}: no samples"

    def p50(xs: list[int]) -> float:
        return statistics.median(xs) / 1e6 if xs else float("nan")

    since = {n: [s[n] - t for s, t in zip(samples, t0s, strict=True) if n in s]
             for s in samples for n in s}  # fmt: skip
    names = sorted(since, key=lambda n: p50(since[n]))
    lines = [f"{title} ({len(samples)} samples)",
             f"{'phase':<18}{'since start':>12}{'step':>9}{'n':>4}  (ms, p50)"]  # fmt: skip
    prev = None
    for n in names:
        step = (
            p50([s[n] - s[prev] for s in samples if n in s and prev in s])
            if prev
            else p50(since[n])
        )
        lines.append(f"{n:<18}{p50(since[n]):>12.2f}{step:>9.2f}{len(since[n]):>4}")
        prev = n
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.0, help="seconds between samples")
    ap.add_argument("--detail", action="store_true",
                    help="each sample too, with what the background threads did meanwhile")  # fmt: skip
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="latency"))
    trace = root / "trace.jsonl"
    os.environ["RECONCILER_TRACE"] = str(trace)
    peer = Reconciler(root)
    peer.start()
    pick: list[dict[str, int]] = []
    pick_t0: list[int] = []
    rest: list[dict[str, int]] = []
    rest_t0: list[int] = []
    try:
        for i in range(args.samples):
            svc = f"p{i}"
            time.sleep(args.gap)
            t0 = now_ns()
            peer.add([svc])
            if not wait(lambda s=svc: peer.started_ns(s) is not None, 12):
                continue
            wait(lambda: "start_recorded" in stamps_since(trace, t0, "event"), 2)
            s = stamps_since(trace, t0, "event")
            s["exec"] = peer.started_ns(svc) or 0
            pick.append(s)
            pick_t0.append(t0)
        for i in range(len(pick)):
            svc = f"p{i}"
            wait(lambda s=svc: peer.service_pid(s) is not None, 5)
            pid = peer.service_pid(svc)
            before = peer.started_ns(svc)
            if pid is None:
                continue
            time.sleep(args.gap)
            t0 = now_ns()
            os.kill(pid, signal.SIGKILL)
            if not wait(lambda s=svc, b=before: (peer.started_ns(s) or 0) > (b or 0), 10):
                continue
            wait(lambda: "start_recorded" in stamps_since(trace, t0, "x_epoll|exit_seen"), 2)
            s = stamps_since(trace, t0, "x_epoll|exit_seen")
            s["exec"] = peer.started_ns(svc) or 0
            rest.append(s)
            rest_t0.append(t0)
    finally:
        peer.stop()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores")
    print(table("pickup: job file written -> task exec'd", pick, pick_t0))
    print()
    print(table("restart: SIGKILL -> task exec'd again", rest, rest_t0))
    if args.detail:
        print()
        print(detail("pickup", trace, pick, pick_t0))
        print()
        print(detail("restart", trace, rest, rest_t0))


if __name__ == "__main__":
    main()
