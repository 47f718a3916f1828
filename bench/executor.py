"""The executor's cost, side by side in one run (root):

- start latency of an isolated task vs a bare fork+exec of the same binary (p50, p95),
- stop latency,
- proportional memory (PSS, /proc/<pid>/smaps_rollup) of everything reconciler keeps per task
  besides the task itself (its shim), at 100 and 1,000 concurrent tasks.

    sudo .venv/bin/python bench/executor.py [--max 1000] [--warm 8]

With --warm N the executor keeps up to N warm shims (pool.py), as the service does, and each
timed start waits for one to be ready first: the claim path. Each start is split into its
service side (`launch`: directories, config, cgroups or the claim) and the wait for the
shim's "started" (`finish`), in wall time, with the service's CPU time beside.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from reconciler.executor.base import TaskConfig
from reconciler.executor.linux import proc
from reconciler.executor.linux.cleanup import teardown
from reconciler.executor.linux.executor import LinuxExecutor


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def cfg(i: int) -> TaskConfig:
    return TaskConfig(id=f"b/g/{i}/t", alloc_id=f"b/g/{i}", command="/bin/sleep", args=("100000",),
                      memory_mb=16, log_max_files=1, log_max_file_mb=1)  # fmt: skip


def bare_start() -> float:
    t0 = time.perf_counter()
    pid = os.posix_spawn("/bin/sleep", ["sleep", "100000"], {})  # returns once the child exec'd
    dt = time.perf_counter() - t0
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--max", type=int, default=1000)
    ap.add_argument("--warm", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rcb") as d:
        data = Path(d)
        ex = LinuxExecutor(data, warm_pool=args.warm)
        try:
            ex.shim()  # compile once, outside the measurement
            iso, stops = [], []
            launch, finish, cpu = [], [], []
            for i in range(args.runs + 5):
                if ex.pool is not None:
                    deadline = time.monotonic() + 10
                    while ex.pool.size() < 1 and time.monotonic() < deadline:
                        time.sleep(0.005)
                # A quiet spell before each start, as between job file edits (and past the
                # refill that follows a claim): a cold start then waits for the kernel.
                time.sleep(0.05)
                c0 = time.thread_time()
                t0 = time.perf_counter()
                pending = ex._launch(cfg(i))
                t1 = time.perf_counter()
                h = ex._finish(pending)
                dt = time.perf_counter() - t0
                if i >= 5:
                    launch.append(t1 - t0)
                    finish.append(dt - (t1 - t0))
                    cpu.append(time.thread_time() - c0)
                t0 = time.perf_counter()
                ex.stop(h, "SIGKILL", 0)
                assert ex.wait(h, 10) is not None
                st = time.perf_counter() - t0
                ex.destroy(h, force=True)
                if i >= 5:
                    iso.append(dt)
                    stops.append(st)
            bare = [bare_start() for _ in range(args.runs)]
            b50, i50 = statistics.median(bare) * 1000, statistics.median(iso) * 1000
            print(f"start latency (ms)      p50      p95   (n={args.runs})")
            print(f"  bare fork+exec     {b50:7.2f}  {pct(bare, 95) * 1000:7.2f}")
            print(f"  isolated task      {i50:7.2f}  {pct(iso, 95) * 1000:7.2f}")
            print(f"  isolated - bare    {i50 - b50:7.2f} ms at p50 (target: within 10 ms); "
                  f"ratio {i50 / b50:.1f}x")  # fmt: skip
            print(f"  of which launch    {statistics.median(launch) * 1000:7.2f}  (service side: dirs, config, "
                  f"cgroups{' or the claim' if args.warm else ''})")  # fmt: skip
            print(f"  of which finish    {statistics.median(finish) * 1000:7.2f}  (until the shim reports the exec)")
            print(f"  service CPU (thread) p50 {statistics.median(cpu) * 1000:.2f} ms per start; "
                  f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
            print(f"stop latency (SIGKILL to exit seen): p50 {statistics.median(stops) * 1000:.2f} ms, "
                  f"p95 {pct(stops, 95) * 1000:.2f} ms")  # fmt: skip
            handles = []
            for target in sorted({100, args.max}):
                t0 = time.perf_counter()
                while len(handles) < target:
                    handles.append(ex.start(cfg(10_000 + len(handles))))
                took = time.perf_counter() - t0
                time.sleep(1)
                pss = [proc.pss_kb(h.shim_pid) for h in handles]
                task_pss = [proc.pss_kb(h.pid) for h in handles[:50]]
                print(f"{target:5d} concurrent tasks: shim PSS per task {sum(pss) / len(pss):6.1f} kB "
                      f"(max {max(pss)} kB); the task itself (sleep) {statistics.mean(task_pss):.0f} kB; "
                      f"started in {took:.1f} s")  # fmt: skip
            alive = sum(ex.inspect(h) == "running" for h in handles)
            print(f"all {alive}/{len(handles)} running")
        finally:
            ex.close()
            killed = teardown(data)
            print(f"torn down ({killed} processes)")


if __name__ == "__main__":
    main()
