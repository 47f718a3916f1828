"""Alembic environment. Runs on the connection the service hands over (no alembic.ini and no
logging.fileConfig, which would silence the service's loggers)."""

from alembic import context
from sqlalchemy import create_engine

from reconciler.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if (conn := config.attributes.get("connection")) is not None:
    _run(conn)
else:  # development: alembic -c alembic.ini revision --autogenerate -m "..."
    with create_engine(config.get_main_option("sqlalchemy.url") or "").begin() as c:
        _run(c)
