"""service registry, check status and check transitions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = {
    "v_checks": """
        SELECT e.id, strftime('%Y-%m-%d %H:%M:%f', e.at, 'unixepoch') AS at,
               e.job_id || '/' || e.group_name || '/' || e.idx
                 || CASE WHEN e.task = '' THEN '' ELSE '/' || e.task END AS address,
               e.job_id, e.group_name, e.idx, e.task, e.service, e.check_name, e.previous,
               e.status, e.output, e.instance_id
        FROM check_events e""",
    "v_services": """
        SELECT s.name, s.address, s.port, s.port_label, s.tags, s.provider,
               s.job_id || '/' || s.group_name || '/' || s.idx
                 || CASE WHEN s.task = '' THEN '' ELSE '/' || s.task END AS owner,
               s.job_id, s.group_name, s.idx, s.task, s.alloc_id,
               strftime('%Y-%m-%d %H:%M:%f', s.registered_at, 'unixepoch') AS registered
        FROM services s""",
}


def _where() -> list[sa.Column[object]]:
    return [
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("group_name", sa.String(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), nullable=False),
        *_where(),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("port_label", sa.String(), nullable=False),
        sa.Column("alloc_id", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("registered_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
    )
    with op.batch_alter_table("services") as batch:
        batch.create_index(batch.f("ix_services_name"), ["name"], unique=False)
        batch.create_index("ix_services_owner", ["job_id", "group_name", "idx", "task"])
    op.create_table(
        "checks",
        sa.Column("id", sa.Integer(), nullable=False),
        *_where(),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("since", sa.Double(), nullable=False),
        sa.Column("on_update", sa.String(), nullable=False),
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checks")),
        sa.UniqueConstraint(
            "job_id", "group_name", "idx", "task", "service", "name", name=op.f("uq_checks_job_id")
        ),
    )
    op.create_table(
        "check_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        *_where(),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("check_name", sa.String(), nullable=False),
        sa.Column("previous", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_events")),
    )
    with op.batch_alter_table("check_events") as batch:
        batch.create_index(batch.f("ix_check_events_at"), ["at"], unique=False)
        batch.create_index("ix_check_events_job", ["job_id", "at"])
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("check_events")
    op.drop_table("checks")
    op.drop_table("services")
