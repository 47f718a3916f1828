"""periodic and dispatched child jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS: list[sa.Column[object]] = [
    # a child's parent job, how it was launched (periodic | catch-up | forced | dispatch)
    sa.Column("parent_id", sa.String(), nullable=True),
    sa.Column("launch_kind", sa.String(), nullable=False, server_default=""),
    # a periodic parent: the time its next launch is computed from, and for which version
    sa.Column("periodic_from", sa.Float(), nullable=True),
    sa.Column("periodic_digest", sa.String(), nullable=True),
    # a child: when it completed or failed, and when it was garbage-collected
    sa.Column("finished_at", sa.Float(), nullable=True),
    sa.Column("gc_at", sa.Float(), nullable=True),
    # a dispatched child: its meta (JSON), payload and idempotency token
    sa.Column("dispatch_meta", sa.Text(), nullable=False, server_default=""),
    sa.Column("payload", sa.LargeBinary(), nullable=True),
    sa.Column("idempotency_token", sa.String(), nullable=True),
]


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("jobs", column)
    op.create_index("ix_jobs_parent_id", "jobs", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_parent_id", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in COLUMNS:
            batch.drop_column(column.name)
