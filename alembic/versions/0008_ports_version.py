"""node_held.ports_version: a count triggers bump whenever a slot holding host ports changes,
so a pass reads every held port again only when one changed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 04:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "node_held", sa.Column("ports_version", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    for trigger in ("ports_held_insert", "ports_held_delete", "ports_held_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("ALTER TABLE node_held DROP COLUMN ports_version")
