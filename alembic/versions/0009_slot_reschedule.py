"""what the next reschedule of a failed group instance needs (its reschedules so far)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # '{"n":2,"e":[[at,delay],...]}' (reconciler/reschedules.py Tracker); "" for none
    op.add_column(
        "task_slots", sa.Column("reschedule", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    op.execute("ALTER TABLE task_slots DROP COLUMN reschedule")
