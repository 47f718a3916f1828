"""which cores each task slot reserves (cores are exclusive across tasks)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # "0,2": the core ids, comma-separated; "" for none. Slots started before keep a count
    # only, and are given ids at their next start.
    op.add_column(
        "task_slots", sa.Column("core_ids", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    with op.batch_alter_table("task_slots") as batch:
        batch.drop_column("core_ids")
