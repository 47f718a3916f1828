"""What the task slots hold of the node is a running total kept by triggers: it equals the sum
of every slot after any writes, and a store opened again remakes and recomputes it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from reconciler.db import held
from reconciler.db.store import Store

INSERT = (
    "INSERT INTO task_slots (job_id, group_name, idx, task, state, reason, spec_digest, restarts,"
    " stop_intent, cpu, memory, cores, updated_at) VALUES (?, 'g', ?, 't', ?, '', '', 0, '', ?, ?, ?, 0)"
)
STATES = ["pending", "running", "stopping", "dead", "complete", "failed"]


def _raw(store: Store) -> Any:
    from reconciler.db.engine import connect

    return connect(store.path)


def test_the_total_follows_every_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    raw = _raw(store)
    rnd = random.Random(7)
    for i in range(60):
        raw.execute(
            INSERT,
            (
                f"j{i}",
                i,
                rnd.choice(STATES),
                rnd.randint(0, 500),
                rnd.randint(0, 900),
                rnd.randint(0, 2),
            ),
        )
    for _ in range(80):
        i = rnd.randrange(60)
        if rnd.random() < 0.7:
            raw.execute("UPDATE task_slots SET state = ?, cpu = ? WHERE job_id = ?",
                        (rnd.choice(STATES), rnd.randint(0, 500), f"j{i}"))  # fmt: skip
        else:
            raw.execute("DELETE FROM task_slots WHERE job_id = ?", (f"j{i}",))
        assert held.read(raw) == tuple(raw.execute(held.TOTAL).fetchone())
    assert held.read(raw) != (0, 0, 0)
    raw.close()
    store.close()


def test_a_store_opened_again_remakes_the_triggers_and_the_total(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    raw = _raw(store)
    for name in held.TRIGGERS:  # as a migration that rebuilt task_slots would leave it
        raw.execute(f"DROP TRIGGER {name}")
    raw.execute(INSERT, ("a", 0, "running", 100, 200, 1))
    raw.execute("UPDATE node_held SET cpu = 999")
    raw.close()
    store.close()
    store = Store(tmp_path / "state.db")
    raw = _raw(store)
    assert held.read(raw) == (100, 200, 1)
    raw.execute(INSERT, ("b", 0, "pending", 1, 2, 0))
    assert held.read(raw) == (101, 202, 1)
    raw.close()
    store.close()
