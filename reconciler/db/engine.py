"""SQLite engines: WAL, BEGIN IMMEDIATE for writers, a read-only mode for the CLI, and
migrations applied at start (the top-level alembic/, installed as reconciler/migrations/)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from reconciler.faults import transient_cause

# The service's writes wait this long for a lock before the pass is retried later (Degraded,
# "store locked by another process"): short, so the loop stays responsive meanwhile.
WRITER_BUSY_MS = 2000
WAL_LIMIT = 64 << 20  # the WAL file is cut back to this after a checkpoint


class StoreRefused(Exception):
    """The store cannot be used as it is; the message says what to do (one line)."""


def make_engine(path: Path, *, readonly: bool = False, busy_ms: int | None = None) -> Engine:
    busy_ms = busy_ms if busy_ms is not None else (10000 if readonly else WRITER_BUSY_MS)
    url = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool if readonly else None)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
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
HEAD = "0005"


def migrations_dir() -> Path:
    """The Alembic scripts: the wheel installs the top-level alembic/ as reconciler/migrations/
    (a package-dir mapping in pyproject.toml); a checkout has them at the top."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "migrations"
    return installed if (installed / "env.py").is_file() else package.parent / "alembic"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        try:
            row = raw.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # no table yet: a new store
            return None
    return str(row[0]) if row else None


def check(engine: Engine, path: Path) -> None:
    """At start, before anything runs: refuse a damaged store or one from a newer reconciler.
    The message is one line with the way out; running tasks are left alone meanwhile."""
    try:
        with engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            rows = [r[0] for r in raw.execute("PRAGMA quick_check(5)").fetchall()]
    except (sqlite3.DatabaseError, DBAPIError) as e:
        orig = getattr(e, "orig", e)
        cause = transient_cause(orig)
        if cause == "store locked by another process":
            return  # a reader is never refused for a writer elsewhere; the service waits it out
        if cause in ("store is read-only", "read-only filesystem"):
            raise StoreRefused(
                f"cannot write {path} ({orig}): remount the data dir read-write (or fix its "
                "ownership), then start reconciler again (running tasks are left alone)"
            ) from e
        if cause is not None:
            raise  # a full disk, an I/O error: the caller waits it out
        rows = [str(orig)]
    if rows != ["ok"]:
        raise StoreRefused(
            f"{path} is damaged ({'; '.join(rows)[:200]}); reconciler will not use it and has "
            f"started nothing (running tasks are left alone). Recover: `sqlite3 {path} .recover "
            f"| sqlite3 {path}.recovered`, check it, move it to {path.name} (or restore a "
            "backup, see docs/operations.md), then start reconciler again"
        )
    rev = current_revision(engine)
    if rev is not None and rev > HEAD:
        raise StoreRefused(
            f"{path} has schema {rev}, newer than this reconciler knows ({HEAD}): it was used by "
            "a newer version. Run that version again, or restore a backup taken before the "
            "upgrade (running tasks are left alone)"
        )


def upgrade(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and current_revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
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
