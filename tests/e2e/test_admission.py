"""Resource admission on the real service: what does not fit waits, and starts when room frees."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc
from tests.e2e.test_service import job, write

# 1000 MB of memory, 100 of them kept for the system: 900 MB for tasks
NODE = """
client {
  memory_total_mb = 1000
  reserved { memory = 100 }
}
"""


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProc]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (tmp_path / "node.hcl").write_text(NODE)
    s = ServiceProc(jobs, tmp_path / "data", "--config", str(tmp_path / "node.hcl"))
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def sized(name: str, memory: int, count: int = 1) -> str:
    return job(name, count=count).replace("memory = 32", f"memory = {memory}")


def test_the_job_that_does_not_fit_waits_then_starts_when_room_frees(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "a.hcl", sized("a", 400))
    write(svc, "b.hcl", sized("b", 400))
    svc.wait(lambda: len(svc.pids()) == 2, what="a and b running")
    write(svc, "c.hcl", sized("c", 400))
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'c'") == [("blocked",)],
             what="c blocked")  # fmt: skip
    assert not svc.pids("c")
    out = svc.cli("status", "c").stdout
    assert "Blocked (Resources exhausted: memory (needs 400 MB, 100 MB free))" in out, out
    events = svc.query("SELECT message FROM task_events WHERE job_id = 'c'"
                       " AND type = 'Placement Failure'")  # fmt: skip
    assert events and "Resources exhausted: memory" in events[0][0]
    node = svc.cli("node", "--config", str(svc.data.parent / "node.hcl")).stdout
    assert "memory  800 / 900 MB" in node, node
    (svc.jobs / "a.hcl").unlink()
    svc.wait(lambda: "c/g/0/t" in svc.pids("c"), what="c started once a was removed")
    assert not svc.pids("a")


def test_count_100000_starts_nothing_and_answers_at_once(svc: ServiceProc) -> None:
    svc.start()
    t0 = time.monotonic()
    write(svc, "big.hcl", sized("big", 10, count=100_000))
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'big'") == [("blocked",)],
             what="big blocked")  # fmt: skip
    print(f"count = 100000 blocked after {time.monotonic() - t0:.3f}s")
    assert svc.query("SELECT count(*) FROM task_instances") == [(0,)]
    reason = svc.query("SELECT reason FROM jobs WHERE id = 'big'")[0][0]
    assert reason.startswith("Resources exhausted: cpu (the job needs 10000000 MHz")
    out = svc.cli("plan", "--jobs", str(svc.jobs), "--config",
                  str(svc.data.parent / "node.hcl")).stdout  # fmt: skip
    assert "blocked" in out and "all 100000 instances" in out
