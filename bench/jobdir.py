"""The job directory at 10,000 files: a cold scan, a rescan when nothing changed, and one edit
picked up by the running service, next to the same figures for a directory of 10 files.

The executor is the fake one: what is measured is reading the directory and deciding, not
starting processes. An edit is picked up when the service has read and recorded the file's
new version (the watcher's wake, the scan, the records); a new file, when the executor is asked
to start its task (and the plan in between), as `reconciler run` does it.

    .venv/bin/python -m bench.jobdir [N]    (the CPU figures: -c "from bench.jobdir import cpu; print(cpu(10_000))")
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig, TaskConfig, TaskHandle
from reconciler.executor.fake import FakeExecutor
from reconciler.service.loop import Service

JOB = 'job "{n}" {{\n type = "batch"\n group "g" {{\n  task "t" {{\n   driver = "exec"\n   config {{ command = "/bin/{cmd}" }}\n  }}\n }}\n}}\n'


def write(jobs: Path, name: str, cmd: str) -> None:
    tmp = jobs / f".{name}.tmp"
    tmp.write_text(JOB.format(n=name, cmd=cmd))
    tmp.rename(jobs / f"{name}.hcl")  # an editor's atomic save


def ms(xs: list[float]) -> str:
    return f"p50 {statistics.median(xs) * 1000:.1f} ms"


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


class Watching(FakeExecutor):
    """Tells the bench when a task with the awaited command is started."""

    want = ""
    seen = threading.Event()

    def start(self, config: TaskConfig) -> TaskHandle:
        handle = super().start(config)
        if config.command == self.want:
            self.seen.set()
        return handle


def recorded(svc: Service, name: str) -> str:
    """The version of a job the service has read (what the loop last recorded)."""
    desired = svc._recorded
    spec = desired.jobs.get(name) if desired is not None else None
    return spec.canonical if spec is not None else ""


def measure(n: int, runs: int = 15) -> str:
    with tempfile.TemporaryDirectory() as d:
        jobs = Path(d) / "jobs"
        jobs.mkdir()
        for i in range(n):
            write(jobs, f"j{i}", "app")
        store = Store(Path(d) / "state.db")
        ex = Watching(time.time)
        svc = Service(jobs, store, ex, NodeConfig())
        t0, cpu0 = time.perf_counter(), time.process_time()
        first = svc.loader.scan()
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert len(first.jobs) == n
        listing = timed(svc.loader.scan, runs)  # no watcher yet: every entry is looked at
        loop = threading.Thread(target=svc.run, daemon=True)
        loop.start()
        while svc.passes == 0:
            time.sleep(0.05)
        pickups, starts = [], []
        for i in range(runs):
            name = f"j{n // 2}"
            time.sleep(0.1)  # the last pass is over: each edit is a burst of its own
            t0 = time.perf_counter()
            write(jobs, name, f"edit{i}")
            while f"edit{i}" not in recorded(svc, name):
                time.sleep(0.0002)
            pickups.append(time.perf_counter() - t0)
            ex.want = f"/bin/new{i}"
            ex.seen.clear()
            time.sleep(0.1)
            t0 = time.perf_counter()
            write(jobs, f"new{i}", f"new{i}")
            assert ex.seen.wait(60), "the new file was not started"
            starts.append(time.perf_counter() - t0)
        time.sleep(0.2)
        journal = timed(svc.loader.scan, runs)  # the loop is idle: what its 30 s rescan does
        svc.stop()
        loop.join(60)
        store.close()
    return (
        f"{n:>6} files: cold scan {cold:.1f} s ({cold_cpu:.1f} s CPU); no-change rescan "
        f"listing every entry {ms(listing)}, with the watcher's journal {ms(journal)}; "
        f"one edit read and recorded {ms(pickups)}; a new file started {ms(starts)}"
    )


def cpu(n: int, runs: int = 10) -> str:
    """The same, in CPU time of one thread and without the watcher's threads (the journal fed by
    hand): figures a loaded machine does not blur."""

    def median_ms(fn: object) -> float:
        out = []
        for _ in range(runs):
            c0 = time.thread_time()
            fn()  # type: ignore[operator]
            out.append(time.thread_time() - c0)
        return statistics.median(out) * 1000

    with tempfile.TemporaryDirectory() as d:
        jobs = Path(d) / "jobs"
        jobs.mkdir()
        for i in range(n):
            write(jobs, f"j{i}", "app")
        store = Store(Path(d) / "state.db")
        svc = Service(jobs, store, FakeExecutor(time.time), NodeConfig(), watch=False)
        c0 = time.thread_time()
        svc.loader.scan()
        cold = time.thread_time() - c0
        listing = median_ms(svc.loader.scan)
        svc.loader.journal.attach()
        svc.reconcile()

        def quiet() -> None:
            svc._scan_due = True
            svc.reconcile(force=False)

        edits = iter(range(10**6))

        def edit() -> None:
            write(jobs, f"j{n // 2}", f"edit{next(edits)}")
            svc.loader.journal.note(f"j{n // 2}.hcl")
            quiet()

        young = median_ms(edit)  # every task started < min_healthy_time ago: n deadlines ahead
        time.sleep(max(0.0, svc._last_pass + 10.1 - svc.clock()))  # (no CPU): past them all
        quiet()
        nochange, one = median_ms(quiet), median_ms(edit)
        store.close()
    return (
        f"{n:>6} files, CPU: cold scan {cold:.2f} s; no-change rescan listing every entry "
        f"{listing:.1f} ms, a no-change pass with the journal {nochange:.1f} ms; a pass for one "
        f"edit (read, recorded, planned) {one:.1f} ms ({young:.1f} ms while every task is "
        f"younger than min_healthy_time)"
    )


if __name__ == "__main__":
    print(cpu(10))
    print(cpu(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
    print(measure(10))
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
