"""What a start waits for: a new job file's start is launched before the scan's record and
its parse-cache row are committed; they are written with the start's record (one transaction)
or after the pass, and a fault keeps them for the next transaction."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler.db.store import ProblemRow, Store, VersionRow
from reconciler.executor.base import TaskConfig, TaskHandle
from tests.unit.conftest import Harness, job


def _committed(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(path) as c:
        return c.execute(sql).fetchall()


def test_a_new_file_is_started_before_its_scan_is_committed(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.step()  # the first pass: the anchor of the comparison
    db = h.store.path
    seen: list[tuple[int, int, int]] = []
    real = h.fake.start_all

    def start_all(configs: Sequence[TaskConfig]) -> list[TaskHandle | Exception]:
        seen.append((
            len(_committed(db, "SELECT 1 FROM jobs WHERE id = 'b'")),
            len(_committed(db, "SELECT 1 FROM job_versions WHERE job_id = 'b'")),
            len(_committed(db, "SELECT 1 FROM parse_cache")),
        ))  # fmt: skip
        return real(configs)

    h.fake.start_all = start_all  # type: ignore[method-assign]
    rows_before = len(_committed(db, "SELECT 1 FROM parse_cache"))
    h.write("b.hcl", job("b"))
    h.step()
    assert seen == [(0, 0, rows_before)]  # launched with nothing of b.hcl's scan written yet
    # ... which the start's transaction wrote: its instance refers to the version
    assert _committed(db, "SELECT v.digest IS NOT NULL FROM task_instances i LEFT JOIN"
                      " job_versions v ON v.id = i.version_id WHERE i.job_id = 'b'") == [(1,)]  # fmt: skip
    assert h.job_status("b")[0] != "removed" and h.states("b") == {"b/g/0/t": "running"}
    assert len(_committed(db, "SELECT 1 FROM parse_cache")) == rows_before + 1  # after the pass


def test_a_scan_that_starts_nothing_is_recorded_after_its_pass(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.step()
    h.write("bad.hcl", 'job "x" { group "g" { nonsense = 1 } }')
    h.step()
    errors = _committed(h.store.path, "SELECT file FROM spec_errors WHERE cleared_at IS NULL")
    assert [f for (f,) in errors if str(f).endswith("bad.hcl")]


def test_a_deferred_scan_survives_a_failed_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    try:
        store.defer_scan([VersionRow("j", "d1", "{}", "j.hcl")],
                         [ProblemRow("j.hcl", 1, 1, "job", "a warning", "warning")], 1.0)  # fmt: skip
        with pytest.raises(RuntimeError), store._tx():
            raise RuntimeError("the store refused the start's transaction")
        assert _committed(store.path, "SELECT id FROM jobs") == []
        assert store.flush_scan() and not store.flush_scan()  # written once
        assert _committed(store.path, "SELECT id FROM jobs") == [("j",)]
        assert _committed(store.path, "SELECT message FROM spec_errors") == [("a warning",)]
        # a later scan's record comes after an unwritten earlier one, never instead of it
        store.defer_scan([VersionRow("k", "d2", "{}", "k.hcl")], [], 2.0)
        store.defer_scan([VersionRow("k", "d3", "{}", "k.hcl")], [], 3.0)
        store.flush_scan()
        assert _committed(store.path, "SELECT digest FROM job_versions WHERE job_id = 'k'"
                          " ORDER BY id") == [("d2",), ("d3",)]  # fmt: skip
        # the problem of the first scan is cleared by the later ones, which did not see it
        assert _committed(store.path, "SELECT cleared_at FROM spec_errors") == [(2.0,)]
    finally:
        store.close()


def _restarting(h: Harness) -> None:
    h.write("r.hcl", job("r", env='FAKE_RUN_FOR = "1"',
                         extra_group='restart {\n attempts = 100\n delay = "0s"\n}'))  # fmt: skip
    h.step()
    assert h.states("r") == {"r/g/0/t": "running"}


def test_a_restart_is_planned_from_what_writing_its_exit_left(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass after an exit that only left its slot to start again plans from the exit's
    read with the written slot, not a second read: which must be what a read would give."""
    import reconciler.service.passes as passes

    _restarting(h)
    planned: list[tuple[Any, Any, int]] = []
    real_plan, read = passes.plan, h.store.observed
    reads = _count_reads(h, monkeypatch)

    def spy(desired: Any, observed: Any, *a: Any, **kw: Any) -> Any:
        fresh = read(h.service.applier.live, kw.get("scope"))  # (not counted)
        planned.append((observed, fresh, reads[0]))
        return real_plan(desired, observed, *a, **kw)

    monkeypatch.setattr(passes, "plan", spy)
    h.step(1.5)  # the task exits, restarts at once
    assert len([c for c in h.fake.started if c.id == "r/g/0/t"]) == 2
    used, fresh, reads_before = planned[0]
    assert used.slots == fresh.slots and used.live == fresh.live
    assert used.slots[next(iter(used.slots))].state == "pending"
    assert reads_before == 1  # the exit's own read, none between it and the plan


def test_a_request_in_the_same_step_makes_the_pass_read_again(h: Harness) -> None:
    """A request written in the step of an exit (the job stopped by the operator) is seen by
    the pass: the exit's snapshot, which does not know of it, is not planned from."""
    _restarting(h)
    h.clock.advance(1.5)
    for handle, result in h.fake.poll_exits(0):
        h.service.queue.put(("exit", (handle, result)))
    reply = h.service.request("stop", job="r")
    h.service.step(0)
    assert reply.result(0) == {"ok": True}
    assert len([c for c in h.fake.started if c.id == "r/g/0/t"]) == 1  # not started again
    assert h.job_status("r")[0] == "stopped"


def _count_reads(h: Harness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads = [0]
    real = h.store.observed

    def counted(*a: Any, **kw: Any) -> Any:
        reads[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(h.store, "observed", counted)
    return reads


def test_a_restart_is_launched_before_its_exit_is_committed(h: Harness) -> None:
    """The exit that leaves its slot to start again is written in the restart's transaction,
    after the launch: nothing commits between the exit and the claim."""
    _restarting(h)
    db = h.store.path
    seen: list[list[tuple[object, ...]]] = []
    real = h.fake.start_all

    def start_all(configs: Sequence[TaskConfig]) -> list[TaskHandle | Exception]:
        seen.append(_committed(db, "SELECT finished_at FROM task_instances WHERE job_id = 'r'"))
        return real(configs)

    h.fake.start_all = start_all  # type: ignore[method-assign]
    h.step(1.5)  # the task exits, restarts at once
    assert seen == [[(None,)]]  # launched with the exit not committed yet
    assert [f is not None for (f,) in _committed(
        db, "SELECT finished_at FROM task_instances WHERE job_id = 'r' ORDER BY id")] == [True, False]  # fmt: skip
    assert _committed(db, "SELECT exit_code, outcome FROM task_instances WHERE job_id = 'r'"
                      " AND finished_at IS NOT NULL") == [(0, "exited")]  # fmt: skip
    events = h.events("r/g/0/t")
    assert events.count("Terminated") == 1 and events.count("Started") == 2


def test_a_deferred_exit_survives_a_failed_transaction_and_its_thread_reads_it(
    h: Harness,
) -> None:
    _restarting(h)
    db = h.store.path
    ((iid,),) = _committed(db, "SELECT id FROM task_instances WHERE job_id = 'r'")
    key = next(iter(h.store.observed().slots))
    h.store.defer_finished(key, iid, exit_code=3, signal=0, oom=False, error="",
                           finished_at=5.0, outcome="failed", now=5.0, slot_state="pending",
                           next_start_at=5.0, restarts=1, window_start=5.0)  # fmt: skip
    with pytest.raises(RuntimeError), h.store._tx():
        raise RuntimeError("the store refused the start's transaction")
    assert _committed(db, "SELECT finished_at FROM task_instances") == [(None,)]
    real = h.store._connection

    class FullAtCommit:  # a full disk fails the commit, when the log grows
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *a: Any) -> Any:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *a)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

    @contextmanager
    def full() -> Iterator[Any]:
        with real() as conn:
            yield FullAtCommit(conn)

    h.store._connection = full  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        h.store.flush_exits()
    h.store._connection = real  # type: ignore[method-assign]
    assert _committed(db, "SELECT finished_at FROM task_instances") == [(None,)]
    assert h.store.unwritten_exits() == 1
    # the thread that deferred it reads the store after writing it
    assert h.store.observed().slots[key].state == "pending"
    assert _committed(db, "SELECT exit_code, finished_at FROM task_instances") == [(3, 5.0)]
    h.store.flush_exits()  # written once
    assert _committed(db, "SELECT restarts FROM task_slots") == [(1,)]


def test_a_restarts_lines_are_logged_after_its_launch_in_order(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    _restarting(h)
    caplog.set_level(logging.INFO, logger="reconciler")
    caplog.clear()
    logged_at_launch: list[int] = []
    real = h.fake.start_all

    def start_all(configs: Sequence[TaskConfig]) -> list[TaskHandle | Exception]:
        logged_at_launch.append(len(caplog.messages))
        return real(configs)

    h.fake.start_all = start_all  # type: ignore[method-assign]
    h.step(1.5)
    assert logged_at_launch == [0]  # nothing written to the log before the launch
    lines = [m for m in caplog.messages if m.startswith("r/g/0/t")]
    assert [m.split(": ")[1].split()[0] for m in lines] == ["exited", "started"]
