"""SQLite engines: WAL, BEGIN IMMEDIATE for writers, a read-only mode for the CLI, and
migrations applied at start from inside the package (works from an installed wheel)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool


def make_engine(path: Path, *, readonly: bool = False, busy_ms: int = 10000) -> Engine:
    url = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool if readonly else None)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A deferred BEGIN cannot wait out a read->write upgrade; IMMEDIATE takes the lock first.
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


# The newest migration. A store already there is opened without importing Alembic at all
# (about 11 MB of the service's memory); tests/unit/test_store.py keeps this in step.
HEAD = "0002"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        try:
            row = raw.execute("SELECT version_num FROM alembic_version").fetchone()
        except Exception:  # no table yet: a new store
            return None
    return str(row[0]) if row else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and current_revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", "reconciler:migrations")
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")  # batch migrations copy tables; no cascades
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if bad := conn.exec_driver_sql("PRAGMA foreign_key_check").all():
                    raise RuntimeError(f"foreign key violations after migration: {bad[:5]}")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
