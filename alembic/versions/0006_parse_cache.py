"""parse cache (job file results kept across restarts); node_held (a running total for admission)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 18:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parse_cache",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(), nullable=False),
    )
    # the few slots that reserve cores, found without a scan of every slot
    op.create_index(
        "ix_task_slots_core_ids", "task_slots", ["core_ids"], sqlite_where=sa.text("core_ids != ''")
    )
    # one row, kept by triggers on task_slots (reconciler/db/held.py makes them at each start)
    op.create_table(
        "node_held",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cpu", sa.Integer(), nullable=False),
        sa.Column("memory", sa.Integer(), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    for trigger in ("node_held_insert", "node_held_delete", "node_held_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.drop_table("node_held")
    op.drop_index("ix_task_slots_core_ids", "task_slots")
    op.drop_table("parse_cache")
