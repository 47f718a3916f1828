"""Many starts in one pass (apply/starts.py): they are launched together and the ones that
started are recorded in one transaction; a start that fails among them goes through the
restart policy and history as a lone start does, and takes no other start down with it."""

from __future__ import annotations

import threading
from typing import Any

from tests.unit.conftest import NO_RESCHEDULE, Harness, job


def test_a_bulk_start_where_some_fail(h: Harness) -> None:
    transactions: list[int] = []
    started = h.store.started

    def spy(batch: Any, now: float) -> list[int]:
        transactions.append(len(batch))
        return started(batch, now)

    h.store.started = spy  # type: ignore[method-assign]
    for i in range(12):
        env = ""
        if i % 4 == 1:
            env = 'FAKE_START_ERROR = "no such binary"'  # refused: not retried
        elif i % 4 == 2:
            env = 'FAKE_TEMP_ERROR = "the shim ended"'  # failed: the restart policy retries
        h.write(f"j{i}.hcl", job(f"j{i}", env=env,
                                 extra_group='restart {\n delay = "5s"\n}\n' + NO_RESCHEDULE))  # fmt: skip
    h.step()
    states = h.states()
    assert {k for k, v in states.items() if v == "running"} == {
        f"j{i}/g/0/t" for i in (0, 3, 4, 7, 8, 11)
    }
    assert transactions == [6]  # every start of the pass in one write
    for i in (1, 5, 9):
        assert states[f"j{i}/g/0/t"] == "failed"
        assert h.events(f"j{i}/g/0/t")[-2:] == ["Driver Failure", "Not Restarting"]
    for i in (2, 6, 10):
        assert states[f"j{i}/g/0/t"] == "pending"
        assert h.events(f"j{i}/g/0/t")[-2:] == ["Driver Failure", "Restarting"]
    before = len(h.fake.started)
    h.step(6)  # past the restart delay: only the failed ones start again, and fail again
    assert len(h.fake.started) == before
    assert all(h.events(f"j{i}/g/0/t").count("Driver Failure") == 2 for i in (2, 6, 10))
    assert len([c for c in h.fake.started if c.id.startswith("j0/")]) == 1


def test_a_bulk_start_in_the_background_lets_the_next_scan_run(h: Harness) -> None:
    """An executor that allows it starts a large batch on another thread: the loop reads the
    files that arrive meanwhile, then records the batch (failures through the restart policy,
    as above) before it plans again, and the late file's task starts after it."""
    h.fake.background_starts = True
    gate = threading.Event()
    start_all = h.fake.start_all

    def held(configs: Any) -> Any:
        assert gate.wait(10), "the loop never scanned while the starts ran"
        return start_all(configs)

    h.fake.start_all = held  # type: ignore[method-assign]
    scan = h.service.loader.scan
    scanned_while_starting: list[frozenset[str]] = []

    def watching_scan() -> Any:
        if h.service.applier.starting:
            scanned_while_starting.append(h.service.applier.starting)
            gate.set()
        return scan()

    h.service.loader.scan = watching_scan  # type: ignore[method-assign]
    for i in range(12):
        env = 'FAKE_START_ERROR = "no such binary"' if i % 4 == 1 else ""
        h.write(f"j{i}.hcl", job(f"j{i}", env=env, extra_group=NO_RESCHEDULE))
    h.step()
    assert "running" not in h.states().values()  # launched, not recorded yet
    assert len(h.service.applier.starting) == 12
    h.write("late.hcl", job("late"))
    h.step()
    assert scanned_while_starting == [frozenset(f"j{i}/g/0/t" for i in range(12))]
    states = h.states()
    assert {k for k, v in states.items() if v == "running"} == {
        f"j{i}/g/0/t" for i in range(12) if i % 4 != 1
    } | {"late/g/0/t"}
    for i in (1, 5, 9):
        assert states[f"j{i}/g/0/t"] == "failed"
        assert h.events(f"j{i}/g/0/t")[-2:] == ["Driver Failure", "Not Restarting"]
    assert h.events("j0/g/0/t") == ["Received", "Task Setup", "Started"]
    assert not h.service.applier.starting
    assert len([c for c in h.fake.started if c.id == "j0/g/0/t"]) == 1


def test_an_exit_of_a_task_started_in_the_background_waits_for_its_start(h: Harness) -> None:
    """The exit of a task whose start is not recorded yet is recorded after it: the restart
    policy sees a task that ran, not an unknown one."""
    h.fake.background_starts = True
    for i in range(8):
        h.write(f"j{i}.hcl", job(f"j{i}", env='FAKE_RUN_FOR = "1"',
                                 extra_group='restart {\n delay = "5s"\n}'))  # fmt: skip
    h.service.step(0)  # launched in the background
    assert len(h.service.applier.bulks) == 1
    h.service.applier.bulks[0].results.result(10)  # started, not recorded yet
    h.clock.advance(2)
    exits = h.fake.poll_exits(0)
    assert len(exits) == 8
    for item in exits:
        h.service.queue.put(("exit", item))
    h.service.step(0)
    assert not h.service.applier.starting
    for i in range(8):
        assert h.events(f"j{i}/g/0/t")[:4] == ["Received", "Task Setup", "Started", "Terminated"]
        assert h.states()[f"j{i}/g/0/t"] == "pending"  # restarting after the delay


def test_a_job_status_planned_with_starts_in_the_background_is_written_with_them(
    h: Harness,
) -> None:
    """Room for 10 of 20 tasks: the job is Blocked, and a reader never sees it Blocked before
    the 10 that fit are recorded running."""
    h.fake.background_starts = True
    running = h.service.applier.running  # two descriptors each; room for 10
    h.service.descriptors = lambda: (30 + 2 * len(running), 64 + 30 + 2 * 10)
    gate = threading.Event()
    start_all = h.fake.start_all

    def held(configs: Any) -> Any:
        assert gate.wait(10)
        return start_all(configs)

    h.fake.start_all = held  # type: ignore[method-assign]
    h.write("many.hcl", job("many", count=20))
    h.step()
    assert len(h.service.applier.starting) == 10
    assert h.job_status("many")[0] != "blocked"
    gate.set()
    h.service.applier.bulks[0].results.result(10)
    h.step()
    assert list(h.states("many").values()).count("running") == 10
    status, reason = h.job_status("many")
    assert status == "blocked" and reason.startswith("file descriptor limit"), reason
