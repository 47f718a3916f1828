"""Where "up N" goes: N job files written at once until every task has exec'd with full
isolation, on the real service and executor in this process (root), split by phase.

The workload is bench/peers.py's (a shell that writes a marker and execs sleep). Each phase
is timed around the service's own calls: wall time, and CPU time of the thread that ran it
(the loop thread, or a start thread for the executor's launches). "up" is from the first file
written to the last marker's timestamp, as peers.py measures it.

    sudo .venv/bin/python bench/bringup.py [--sizes 500,1000] [--plain-dirs | --compare N]
                                           [--background-starts] [--after N]

Phases: scan (read, parse, validate the files), record scan (their versions into the store),
plan, observed (store reads), apply (everything apply does), of which task configs, executor
start_all (launch: directories, config, cgroups, spawn; finish: wait for "started"),
store started (the starts' transaction); finish starts: the loop waiting for (and recording) a
batch that ran in the background beside its scans. Per-call sums; launches overlap on threads, so
their wall sum can exceed the wall time they took together.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.peers import JOB, wait
from reconciler.apply import starts as apply_module
from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.executor.linux import cgroups, launch, rootfs
from reconciler.executor.linux.cleanup import teardown
from reconciler.executor.linux.executor import LinuxExecutor
from reconciler.service import loop as loop_module
from reconciler.service import threads
from reconciler.service.process import raise_file_limit
from reconciler.service.start import WARM_POOL

SLEEP = "100000"


class Phases:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.on = False
        self.t0 = 0.0
        self.timeline: list[tuple[str, float, float, str]] = []  # top-level calls: when, what
        self.top = {"scan", "plan", "apply", "  executor start_all", "finish starts"}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kw: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kw)
            finally:
                if self.on:
                    w, c = time.perf_counter() - t0, time.thread_time() - c0
                    with self.lock:
                        self.wall[name] = self.wall.get(name, 0.0) + w
                        self.cpu[name] = self.cpu.get(name, 0.0) + c
                        self.calls[name] = self.calls.get(name, 0) + 1
                        if name in self.top:
                            n = len(args[0]) if name.endswith("start_all") else ""
                            self.timeline.append((name.strip(), t0 - self.t0, w, str(n)))

        return timed

    def reset(self) -> None:
        self.wall, self.cpu, self.calls = {}, {}, {}

    def table(self) -> str:
        lines = ["| phase | calls | wall s | CPU s |", "|---|---|---|---|"]
        for name in self.wall:
            lines.append(f"| {name} | {self.calls[name]} | {self.wall[name]:.2f} | "
                         f"{self.cpu[name]:.2f} |")  # fmt: skip
        return "\n".join(lines)

    def passes(self) -> str:
        return "\n".join(
            f"  {start:6.2f} s +{took:5.2f} s  {name} {n}" for name, start, took, n in self.timeline
        )


def marker(data: Path, svc: str) -> Path:
    return data / "allocs" / svc / "g" / "0" / "alloc" / "data" / "marker"


def started_ns(data: Path, svc: str) -> int | None:
    try:
        return int(marker(data, svc).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _cpu(pid: int) -> float:
    """CPU seconds a process has run (schedstat: exact, not in clock ticks)."""
    return _cpu_at(f"/proc/{pid}/schedstat")


def _threads() -> dict[str, float]:
    """CPU seconds per thread name of this process (threads of one name summed)."""
    out: dict[str, float] = {}
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + _cpu_at(f"/proc/self/task/{t}/schedstat")
    return out


def _cpu_at(path: str) -> float:
    try:
        with open(path) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError):
        return 0.0


def instrument(svc: loop_module.Service, ex: LinuxExecutor, ph: Phases) -> None:
    svc.loader.scan = ph.wrap("scan", svc.loader.scan)  # type: ignore[method-assign]
    svc.store.record_scan = ph.wrap("record scan", svc.store.record_scan)  # type: ignore[method-assign]
    svc.store.observed = ph.wrap("observed", svc.store.observed)  # type: ignore[method-assign]
    loop_module.plan = ph.wrap("plan", loop_module.plan)  # type: ignore[attr-defined]
    svc.applier.apply = ph.wrap("apply", svc.applier.apply)  # type: ignore[method-assign]
    apply_module.task_config = ph.wrap("  task configs", apply_module.task_config)  # type: ignore[attr-defined]
    ex.start_all = ph.wrap("  executor start_all", ex.start_all)  # type: ignore[method-assign]
    for name in ("_launch", "_finish"):
        if hasattr(ex, name):
            setattr(ex, name, ph.wrap(f"    {name.strip('_')}", getattr(ex, name)))
    rootfs.prepare = ph.wrap("      directories", rootfs.prepare)  # type: ignore[assignment]
    cgroups.TaskCgroup.create = ph.wrap("      cgroups", cgroups.TaskCgroup.create)  # type: ignore[method-assign]
    launch.spawn_async = ph.wrap("      spawn", launch.spawn_async)  # type: ignore[assignment]
    svc.store.started = ph.wrap("  store started", svc.store.started)  # type: ignore[method-assign]
    # a large batch runs beside the loop; the loop waits for it here, before it plans again
    svc.applier.finish_starts = ph.wrap("finish starts", svc.applier.finish_starts)  # type: ignore[method-assign]


def add(jobs: Path, names: list[str]) -> None:
    """Write the job files from another process, as bench/peers.py does: a writer in this one
    would take the service's GIL (and its CPU would count as the service's)."""
    code = ("import sys\nfrom pathlib import Path\njobs = Path(sys.argv[1])\n"
            "text = sys.stdin.read()\nfor s in sys.argv[2:]:\n"
            "    tmp = jobs / f'.{s}.tmp'\n    tmp.write_text(text.replace('@S@', s))\n"
            "    tmp.rename(jobs / f'{s}.hcl')\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(jobs), *names], check=True, text=True,
                   input=JOB.format(s="@S@", sleep=SLEEP))  # fmt: skip


def run(size: int, root: Path, after: int = 0) -> str:
    jobs, data = root / "jobs", root / "data"
    jobs.mkdir()
    data.mkdir()
    (jobs / "anchor.hcl").write_text(JOB.format(s="anchor", sleep="99999"))
    store = Store(data / "state.db")
    ex = LinuxExecutor(data, NodeConfig(), warm_pool=WARM_POOL)
    svc = loop_module.Service(jobs, store, ex, NodeConfig())
    ph = Phases()
    instrument(svc, ex, ph)
    sys.setswitchinterval(0.0005)  # as `reconciler run`
    loop = threads.start(svc.run, "loop")
    try:
        if not wait(lambda: started_ns(data, "anchor") is not None, 30):
            return "anchor task did not start"
        time.sleep(2)  # the warm pool fills, the first pass is done
        if after:  # as bench/peers.py: `after` up, then removed; gone when 20 of them are
            first = [f"a{after}-{i}" for i in range(after)]
            add(jobs, first)
            if not wait(lambda: all(started_ns(data, x) for x in first), 300):
                return f"up {after} did not finish"
            time.sleep(12)
            pids = [svc.applier.running[f"{x}/g/0/t"].handle.pid for x in first[:20]]
            for x in first:
                (jobs / f"{x}.hcl").unlink()
            wait(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 90)
        names = [f"n{size}-{i}" for i in range(size)]
        ph.on = True
        load0 = os.getloadavg()[0]
        threads0 = _threads()
        c0 = time.process_time()
        t0 = time.time_ns()
        ph.t0 = time.perf_counter()
        add(jobs, names)
        written = (time.time_ns() - t0) / 1e9
        left = list(names)  # each marker read until it is there (not all, every 0.5 ms)

        def all_up() -> bool:
            while left and started_ns(data, left[-1]) is not None:
                left.pop()
            return not left

        ok = wait(all_up, 300)
        cpu = time.process_time() - c0
        wait(lambda: len(svc.applier.running) > size, 60 + after)  # the pass that started them ends
        ph.on = False
        last = max((started_ns(data, x) or 0) for x in names)
        up = (last - t0) / 1e9 if ok else float("nan")
        passes = svc.passes
        threads1 = _threads()
        by_thread = {n: threads1[n] - threads0.get(n, 0.0) for n in threads1}
        busy = ", ".join(f"{n} {c:.2f}" for n, c in sorted(by_thread.items(), key=lambda x: -x[1])
                         if c >= 0.01)  # fmt: skip
        runs = list(svc.applier.running.values())
        shims = sum(_cpu(r.handle.shim_pid) for r in runs)
        tasks = sum(_cpu(r.handle.pid) for r in runs)
        return (f"up {size}: {up:.2f} s (files written in {written:.2f} s; service process CPU "
                f"{cpu:.2f} s while waiting; load {load0:.2f} -> {os.getloadavg()[0]:.2f}; "
                f"{passes} passes since start)\n"
                f"CPU of the {len(runs)} shims {shims:.2f} s, of their tasks (set-up in the shim's "
                f"child, then the workload's sh) {tasks:.2f} s\n"
                f"CPU s by thread (those still alive; launch threads end with their pass): {busy}"
                f"\n\n{ph.table()}\n\ntimeline:\n{ph.passes()}\n")  # fmt: skip
    finally:
        svc.stop()
        loop.join(30)
        ex.close()
        store.close()
        teardown(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="500,1000")
    ap.add_argument("--plain-dirs", action="store_true",
                    help="leave allocs/ unmarked (no chattr +T), as before: for comparison")  # fmt: skip
    ap.add_argument("--compare", type=int, default=0, metavar="N",
                    help="N pairs of runs per size, unmarked then marked, alternating (the "
                    "load on a shared machine drifts): their summary lines")  # fmt: skip
    ap.add_argument("--after", type=int, default=0, metavar="N",
                    help="first bring N up and remove them, as bench/peers.py does before "
                    "its next size (the next size starts when 20 of them are gone)")  # fmt: skip
    ap.add_argument("--background-starts", action="store_true",
                    help="a bulk start runs beside the loop (LinuxExecutor.background_starts), "
                    "for comparison")  # fmt: skip
    args = ap.parse_args()
    if args.background_starts:
        LinuxExecutor.background_starts = True  # type: ignore[misc]
    marked = rootfs.spread_out
    plain: Callable[[Path], bool] = lambda _path: False  # noqa: E731
    raise_file_limit()  # as `reconciler run`: two descriptors per task
    for size in (int(x) for x in args.sizes.split(",")):
        for mark in ([False, True] * args.compare) or [not args.plain_dirs]:
            rootfs.spread_out = marked if mark else plain  # type: ignore[assignment]
            with tempfile.TemporaryDirectory(prefix="bringup") as d:
                text = run(size, Path(d), args.after)
            if args.compare:
                rows = [x for x in text.splitlines() if "directories" in x or "launch" in x]
                text = f"allocs/ {'marked' if mark else 'plain'}: " + text.splitlines()[0]
                text += "\n" + "\n".join(rows)
            print(text, flush=True)


if __name__ == "__main__":
    main()
