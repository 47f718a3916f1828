"""What every task slot holds of the node (admission), kept as a running total by triggers, so
a pass does not sum 10,000 slots to plan one job. The triggers are (re)made and the total
recomputed whenever the service opens the store: a migration that rebuilt `task_slots` (which
drops its triggers) cannot leave the total stale past a restart."""

from __future__ import annotations

import sqlite3

HOLDING = "('running', 'stopping', 'pending')"  # the slot states that hold their reservation


def _part(row: str, column: str) -> str:
    return f"CASE WHEN {row}.state IN {HOLDING} THEN coalesce({row}.{column}, 0) ELSE 0 END"


def _change(sign_old: str, sign_new: str) -> str:
    parts = []
    for column in ("cpu", "memory", "cores"):
        old = f" {sign_old} {_part('OLD', column)}" if sign_old else ""
        new = f" {sign_new} {_part('NEW', column)}" if sign_new else ""
        parts.append(f"{column} = {column}{old}{new}")
    return f"UPDATE node_held SET {', '.join(parts)} WHERE id = 1;"


TRIGGERS = {
    "node_held_insert": f"AFTER INSERT ON task_slots BEGIN {_change('', '+')} END",
    "node_held_delete": f"AFTER DELETE ON task_slots BEGIN {_change('-', '')} END",
    "node_held_update": (
        f"AFTER UPDATE OF state, cpu, memory, cores ON task_slots BEGIN {_change('-', '+')} END"
    ),
}
TOTAL = (
    "SELECT coalesce(sum(cpu), 0), coalesce(sum(memory), 0), coalesce(sum(cores), 0)"
    f" FROM task_slots WHERE state IN {HOLDING}"
)


def install(raw: sqlite3.Connection) -> None:
    """Make the triggers and recompute the total, in one transaction."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        for name, body in TRIGGERS.items():
            raw.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
        cpu, memory, cores = raw.execute(TOTAL).fetchone()
        raw.execute(
            "INSERT OR REPLACE INTO node_held (id, cpu, memory, cores) VALUES (1, ?, ?, ?)",
            (cpu, memory, cores),
        )
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")


def read(raw: sqlite3.Connection) -> tuple[int, int, int]:
    """The total; summed when the service has not kept it (a store it never opened)."""
    row = raw.execute("SELECT cpu, memory, cores FROM node_held WHERE id = 1").fetchone()
    if row is None:
        row = raw.execute(TOTAL).fetchone()
    return int(row[0]), int(row[1]), int(row[2])
