"""Parse + validate 1,000 job files: cold, then a no-change rescan (which must not re-parse),
and a restart that finds every parse in the store (spec/parsecache.py); and how many of the
seed files take the HCL fast path (spec/hclfast.py). CPU time of this
process, which a loaded machine blurs less than the wall clock.

.venv/bin/python bench/spec.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from reconciler.db.parsecache import ParseRows
from reconciler.db.store import Store
from reconciler.spec import hcl, hclfast
from reconciler.spec.load import Loader, is_job_file

JOBS = Path(__file__).parents[1] / "jobs"


def main(n: int = 1000) -> None:
    seeds = [(p.stem, p.read_text()) for p in sorted(JOBS.glob("*.hcl")) if is_job_file(p.name)]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for i in range(n):
            stem, text = seeds[i % len(seeds)]
            (root / f"{stem}-{i}.hcl").write_text(
                text.replace(f'job "{stem}"', f'job "{stem}-{i}"', 1)
            )
        store = Store(Path(d) / "state" / "state.db")
        t0, c0 = time.perf_counter(), time.process_time()
        loader = Loader(root, cache=ParseRows(store.pool))
        desired = loader.scan()
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        c0 = time.process_time()
        restart = Loader(root, cache=ParseRows(store.pool)).scan()
        from_store = time.process_time() - c0
        assert restart.jobs == desired.jobs
        assert len(desired.jobs) == n, desired.errors[:3]
        warm = []
        for _ in range(20):
            t0 = time.perf_counter()
            again = loader.scan()
            warm.append(time.perf_counter() - t0)
            assert again is desired
        (root / f"{seeds[0][0]}-0.hcl").write_text(
            seeds[0][1].replace(f'job "{seeds[0][0]}"', 'job "changed"')
        )
        t0 = time.perf_counter()
        loader.scan()
        one = time.perf_counter() - t0
        store.close()
    print(f"job files: {n}")
    fast = 0
    for _, text in seeds:
        try:
            hclfast.parse(text, hcl.MAX_TOKENS, hcl.MAX_PARSE_SECONDS)
            fast += 1
        except hclfast.Declined:
            pass
    print(f"seed files (jobs/) read on the fast path, without lark: {fast} of {len(seeds)}")
    print(f"cold parse + validate: {cold * 1000:.0f} ms wall, {cold_cpu * 1000:.0f} ms CPU "
          f"({cold_cpu / n * 1000:.2f} ms per file)")  # fmt: skip
    print(f"a restart, every parse found in the store: {from_store * 1000:.0f} ms CPU")
    print(f"no-change rescan (cached): p50 {statistics.median(warm) * 1000:.1f} ms, "
          f"max {max(warm) * 1000:.1f} ms  (target < 50 ms)")  # fmt: skip
    print(f"rescan with one file changed: {one * 1000:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
