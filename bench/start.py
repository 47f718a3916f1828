"""A service start with N unchanged job files and N running tasks, up to serving (the first
pass done): where the CPU time (of the thread that starts it) goes on the load and plan
side. The executor is the fake one,
whose tasks survive the restart (its `recover` finds them): re-adopting real shims is the
executor's cost and is measured by bench/loop.py.

    .venv/bin/python -m bench.start [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.executor.fake import FakeExecutor
from reconciler.service.loop import Service

JOB = 'job "{n}" {{\n group "g" {{\n  task "t" {{\n   driver = "exec"\n   config {{ command = "/bin/app" }}\n  }}\n }}\n}}\n'


def timed(spent: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kw: Any) -> Any:
        c0 = time.thread_time()
        try:
            return fn(*args, **kw)
        finally:
            spent[name] = spent.get(name, 0.0) + time.thread_time() - c0

    return wrapper


def start(jobs: Path, db: Path, ids: set[str], cache: bool) -> str:
    spent: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.thread_time()
    store = Store(db)
    spent["store open"] = time.thread_time() - c0
    ex = FakeExecutor(time.time)
    ex.survivors = set(ids)
    c1 = time.thread_time()
    svc = Service(jobs, store, ex, NodeConfig(), watch=False)
    spent["service made"] = time.thread_time() - c1
    if not cache:
        svc.loader.cache = None
    svc.loader.scan = timed(spent, "scan", svc.loader.scan)  # type: ignore[method-assign]
    store.observed = timed(spent, "store reads", store.observed)  # type: ignore[method-assign]
    svc.applier.apply = timed(spent, "apply (adopt)", svc.applier.apply)  # type: ignore[method-assign]
    svc.reconcile()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    running = sum(1 for s in store.observed(svc.applier.live).slots.values() if s.state == "running")
    assert svc.adopted == len(ids) and running == len(ids), (svc.adopted, running)
    store.close()
    parts = ", ".join(f"{k} {v * 1000:.0f}" for k, v in spent.items())
    return f"{cpu * 1000:.0f} ms CPU ({wall * 1000:.0f} ms wall): {parts} (ms CPU)"


def main(n: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as d:
        jobs = Path(d) / "jobs"
        jobs.mkdir()
        for i in range(n):
            (jobs / f"j{i}.hcl").write_text(JOB.format(n=f"j{i}"))
        db = Path(d) / "state" / "state.db"
        store = Store(db)
        ex = FakeExecutor(time.time)
        first = Service(jobs, store, ex, NodeConfig(), watch=False)
        first.reconcile()
        ids = set(ex.tasks)
        assert len(ids) == n
        store.close()
        print(f"{n} unchanged files, {n} running tasks, a start up to the first pass done:")
        print("  parses kept in the store: " + start(jobs, db, ids, cache=True))
        print("  every file parsed again:  " + start(jobs, db, ids, cache=False))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
