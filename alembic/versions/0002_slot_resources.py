"""what each task slot reserves of the node (resource admission)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 15:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Slots started before admission existed reserve nothing until they start again.
    for column in ("cpu", "memory", "cores"):
        op.add_column(
            "task_slots", sa.Column(column, sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("task_slots") as batch:
        for column in ("cpu", "memory", "cores"):
            batch.drop_column(column)
