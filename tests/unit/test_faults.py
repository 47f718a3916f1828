"""Degrade, never die: store faults, unexpected errors, descriptor budget, clock steps."""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError as SAOperationalError

from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.executor.fake import FakeExecutor
from reconciler.faults import Backoff, transient_cause
from reconciler.service.clock import SteadyClock
from reconciler.service.loop import Service
from tests.unit.conftest import Harness, job


class StoreFault:
    """Every write transaction of the store raises `error` while `on`."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        self.error: Exception = sqlite3.OperationalError("database or disk is full")
        real_tx, real_session = store._tx, store.session

        @contextmanager
        def tx(**kw: Any) -> Iterator[Any]:
            if self.on:
                raise self.error
            with real_tx(**kw) as db:
                yield db

        def session() -> Any:
            if self.on:
                raise self.error
            return real_session()

        monkeypatch.setattr(store, "_tx", tx)
        monkeypatch.setattr(store, "session", session)


def test_transient_faults_are_recognised_through_wrappers() -> None:
    assert transient_cause(sqlite3.OperationalError("database is locked")) == (
        "store locked by another process"
    )
    wrapped = SAOperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert transient_cause(wrapped) == "disk full"
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as e:
            raise RuntimeError("building the task directory") from e
    except RuntimeError as chained:
        assert transient_cause(chained) == "too many open files (process limit)"
    assert transient_cause(OSError(errno.EROFS, "ro")) == "read-only filesystem"
    assert transient_cause(ValueError("bug")) is None
    assert transient_cause(sqlite3.OperationalError("no such table: x")) is None


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    b = Backoff(base=0.5, cap=8.0, jitter=0.2, rand=lambda: 1.0)
    delays = [b.next() for _ in range(8)]
    assert delays[:4] == [0.6, 1.2, 2.4, 4.8]
    assert max(delays) == pytest.approx(9.6)  # the cap, plus its jitter
    b.reset()
    assert b.next() == 0.6


def test_full_disk_degrades_keeps_exits_and_converges_when_it_clears(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = StoreFault(h.store, monkeypatch)
    h.write("a.hcl", job("a", count=2, extra_group='restart { delay = "1s" }'))
    h.step()
    assert h.states() == {"a/g/0/t": "running", "a/g/1/t": "running"}
    fault.on = True
    h.fake.finish("a/g/0/t", exit_code=7)  # a task dies while degraded
    h.write("b.hcl", job("b"))  # and a job is added
    h.step()
    assert h.service.health.snapshot()["state"] == "degraded"
    assert h.service.health.cause("fault") == "disk full"
    assert h.service.report()["unrecorded_exits"] == 1
    h.step(60)  # retries keep failing: still up, still degraded, nothing started twice
    assert len(h.fake.alive()) == 1 and len(h.fake.started) == 2
    fault.on = False
    h.step(60)
    h.step(2)
    assert h.service.health.snapshot()["state"] == "ok"
    assert h.states() == {"a/g/0/t": "running", "a/g/1/t": "running", "b/g/0/t": "running"}
    with h.store.engine.connect() as c:
        exit_code, restarts = c.exec_driver_sql(
            "SELECT i.exit_code, s.restarts FROM task_instances i JOIN task_slots s"
            " ON s.job_id = i.job_id AND s.idx = i.idx WHERE i.job_id = 'a' AND i.idx = 0"
            " AND i.finished_at IS NOT NULL"
        ).one()
    assert (exit_code, restarts) == (7, 1)
    assert "Terminated" in h.events("a/g/0/t") and "Restarting" in h.events("a/g/0/t")


def test_a_start_that_cannot_be_recorded_is_undone(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = h.store.started
    calls = {"n": 0}

    def started(batch: Any, now: float) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(batch, now)

    monkeypatch.setattr(h.store, "started", started)
    h.write("a.hcl", job("a"))
    h.step()
    assert h.fake.alive() == [] and len(h.fake.started) == 1  # started, stopped again
    h.step(5)
    assert h.fake.alive() == ["a/g/0/t"] and h.states() == {"a/g/0/t": "running"}


def test_unexpected_error_is_logged_once_and_retried(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = h.service.applier.apply
    broken = {"on": True}

    def apply(plan: Any, observed: Any) -> bool:
        if broken["on"]:
            raise ZeroDivisionError("a bug")
        return real(plan, observed)

    monkeypatch.setattr(h.service.applier, "apply", apply)
    h.write("a.hcl", job("a"))
    with caplog.at_level(logging.INFO, logger="reconciler"):
        for _ in range(4):
            h.step(60)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "ZeroDivisionError" in caplog.text
    assert h.service.health.cause("pass") == "unexpected error in a pass"
    broken["on"] = False
    h.step(60)
    assert h.states() == {"a/g/0/t": "running"}
    assert h.service.health.snapshot() == {"state": "ok", "faults": []}
    changes = [r.getMessage() for r in caplog.records if "degraded" in r.getMessage()]
    assert len(changes) == 1  # one line per change of state, not per retry


def test_descriptor_budget_blocks_new_starts_with_the_reason(h: Harness) -> None:
    usage = {"in_use": 900}  # before any task; each running task holds two more
    h.service.descriptors = lambda: (usage["in_use"] + 2 * len(h.fake.alive()), 1024)
    h.write("a.hcl", job("a", count=40))
    h.step()
    states = h.states()
    assert list(states.values()).count("running") == 30  # (1024 - 64 reserved - 900) / 2
    status, reason = h.job_status("a")
    assert status == "blocked"
    assert reason == "file descriptor limit: 960 of 1024 in use; raise LimitNOFILE"
    usage["in_use"] = 100
    h.step(6)
    assert list(h.states().values()).count("running") == 40


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
def test_a_wall_clock_step_neither_fires_nor_stalls_a_restart_delay(
    tmp_path: Any, jump: float
) -> None:
    wall, mono = [1_800_000_000.0], [1000.0]
    clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    (tmp_path / "jobs").mkdir()
    store = Store(tmp_path / "state.db")
    fake = FakeExecutor(clock)
    svc = Service(tmp_path / "jobs", store, fake, NodeConfig(), clock=clock, watch=False)
    svc.applier.jitter = lambda: 0.0
    (tmp_path / "jobs" / "a.hcl").write_text(
        job("a", env='FAKE_RUN_FOR = "1"', extra_group='restart {\n delay = "15s"\n}')
    )
    svc.queue.put(("scan", 0.0))

    def step(seconds: float) -> None:
        mono[0] += seconds
        wall[0] += seconds
        for h_r in fake.poll_exits(0):
            svc.queue.put(("exit", h_r))
        svc.step(0)

    step(0)
    step(1)  # exited: restart due in 15 s
    assert len(fake.started) == 1
    wall[0] += jump  # the wall clock jumps; the monotonic clock does not
    step(1)
    assert len(fake.started) == 1  # not fired early
    step(14)
    assert len(fake.started) == 2  # nor stalled
    store.close()


def test_a_reader_holding_the_wal_back_is_warned_about(h: Harness) -> None:
    from reconciler.service import recovery

    reader = sqlite3.connect(h.store.path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM jobs").fetchall()  # holds its snapshot
    try:
        h.write("a.hcl", job("a", count=3))
        h.step(recovery.WAL_EVERY)
        h.write("a.hcl", job("a", count=5))
        h.step(recovery.WAL_EVERY)
        assert h.service.health.cause("wal") is None  # not for long yet
        h.write("a.hcl", job("a", count=6))
        h.step(recovery.WAL_HELD_WARN + 1)
        assert h.service.health.cause("wal") == "a reader holds the store's write-ahead log back"
        assert h.service.health.snapshot()["state"] == "ok"  # a warning: work goes on
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    h.step(recovery.WAL_EVERY)
    assert h.service.health.cause("wal") is None


def test_a_damaged_store_or_a_newer_one_is_refused(tmp_path: Any) -> None:
    from reconciler.db.engine import StoreRefused

    path = tmp_path / "state.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreRefused, match=r"schema 9999, newer than this reconciler knows"):
        Store(path)
    path.write_bytes(b"not a database at all" * 500)
    with pytest.raises(StoreRefused, match=r"is damaged .*Recover: `sqlite3 "):
        Store(path)
