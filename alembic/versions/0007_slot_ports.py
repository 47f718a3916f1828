"""which host ports each task slot's group instance holds (a node never gives one to two)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 03:40:00

"""

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What reconciler gave a port without `static` before ports were recorded (spec/ports.py
# dynamic_port at revision 0006): a holding slot keeps the port its task runs with.
_LO, _HI = 20000, 32000


def _hashed(alloc: str, label: str) -> int:
    h = int(hashlib.sha256(f"{alloc}/{label}".encode()).hexdigest(), 16)
    return _LO + h % (_HI - _LO)


def _ports(canonical: str, job: str, group: str, idx: int) -> str:
    try:
        network = json.loads(canonical)["group"][group].get("network") or {}
        ports = {
            str(label): int((p or {}).get("static") or _hashed(f"{job}/{group}/{idx}", label))
            for label, p in (network.get("port") or {}).items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""  # not a job this reconciler wrote: its next start chooses
    return json.dumps(ports, separators=(",", ":")) if ports else ""


def upgrade() -> None:
    # '{"http":20001}': label -> host port; "" for none
    op.add_column("task_slots", sa.Column("ports", sa.Text(), nullable=False, server_default=""))
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT s.id, s.job_id, s.group_name, s.idx, v.canonical FROM task_slots s"
        " JOIN job_versions v ON v.id = s.version_id"
        " WHERE s.state IN ('running', 'stopping', 'pending')"
    )).all()  # fmt: skip
    for sid, job, group, idx, canonical in rows:
        text = _ports(canonical or "", job, group, idx)
        if text:
            bind.execute(sa.text("UPDATE task_slots SET ports = :p WHERE id = :i"),
                         {"p": text, "i": sid})  # fmt: skip
    # the slots that hold ports, found without a scan of every slot
    op.create_index(
        "ix_task_slots_ports", "task_slots", ["state"], sqlite_where=sa.text("ports != ''")
    )


def downgrade() -> None:
    op.drop_index("ix_task_slots_ports", "task_slots")
    # SQLite's own DROP COLUMN (3.35+): a batch copy of the table trips over the views on it
    op.execute("ALTER TABLE task_slots DROP COLUMN ports")
