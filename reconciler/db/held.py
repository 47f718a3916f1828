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
# Slots that hold host ports: any change to them bumps ports_version, so the store reads the
# held ports again only after one changed (db/store.py observed).
_BUMP = "UPDATE node_held SET ports_version = ports_version + 1 WHERE id = 1;"
TRIGGERS |= {
    "ports_held_insert": f"AFTER INSERT ON task_slots WHEN NEW.ports != '' BEGIN {_BUMP} END",
    "ports_held_delete": f"AFTER DELETE ON task_slots WHEN OLD.ports != '' BEGIN {_BUMP} END",
    "ports_held_update": (
        "AFTER UPDATE OF state, ports ON task_slots WHEN NEW.ports != '' OR OLD.ports != ''"
        f" BEGIN {_BUMP} END"
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
        raw.execute(  # ports_version only grows: a reader's cached ports never look current
            "INSERT INTO node_held (id, cpu, memory, cores) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET cpu = excluded.cpu, memory = excluded.memory,"
            " cores = excluded.cores, ports_version = ports_version + 1",
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


def ports_version(raw: sqlite3.Connection) -> int | None:
    """The count the triggers bump when a slot holding ports changes; None: not kept."""
    row = raw.execute("SELECT ports_version FROM node_held WHERE id = 1").fetchone()
    return None if row is None else int(row[0])
