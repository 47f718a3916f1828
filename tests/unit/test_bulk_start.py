"""Many starts in one pass (apply/starts.py): they are launched together and the ones that
started are recorded in one transaction; a start that fails among them goes through the
restart policy and history as a lone start does, and takes no other start down with it."""

from __future__ import annotations

from typing import Any

from tests.unit.conftest import Harness, job


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
        h.write(f"j{i}.hcl", job(f"j{i}", env=env, extra_group='restart {\n delay = "5s"\n}'))
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
