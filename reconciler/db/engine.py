"""SQLite connections: WAL, BEGIN IMMEDIATE for writers, a read-only mode for the CLI, and
migrations applied at start (the top-level alembic/, installed as reconciler/migrations/).

The service reads and writes through plain sqlite3 connections (`Pool`). SQLAlchemy (about
28 MB of a process's memory with its ORM, 33 MB with Alembic) is imported only to migrate a
store that is not at HEAD, and by `make_engine` for the CLI's history queries and tests."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.faults import TransientFault, transient_cause

if TYPE_CHECKING:
    from sqlalchemy import Engine

# The service's writes wait this long for a lock before the pass is retried later (Degraded,
# "store locked by another process"): short, so the loop stays responsive meanwhile.
WRITER_BUSY_MS = 2000
WAL_LIMIT = 64 << 20  # the WAL file is cut back to this after a checkpoint


class StoreRefused(Exception):
    """The store cannot be used as it is; the message says what to do (one line)."""


CACHE_KIB = 256

# Up to this many values an IN list is spelled out; more are passed as one JSON array. Each
# connection keeps its last 128 prepared statements, and a statement made for 500 values holds
# ~50 kB of SQLite's memory: one per length a burst passed would keep megabytes
# (docs/operations.md, "One service lifetime").
SPELLED_OUT = 8


def among(values: Collection[str]) -> tuple[str, tuple[str, ...]]:
    """` IN (...)` for `values` and its parameters: the same statement for any long list."""
    if len(values) <= SPELLED_OUT:
        return f" IN ({','.join('?' * len(values))})", tuple(values)
    return " IN (SELECT value FROM json_each(?))", (json.dumps(list(values)),)


def _busy_ms(readonly: bool, busy_ms: int | None) -> int:
    return busy_ms if busy_ms is not None else (10000 if readonly else WRITER_BUSY_MS)


def _configure(
    conn: sqlite3.Connection, readonly: bool, busy_ms: int, manual_checkpoints: bool = False
) -> None:
    conn.isolation_level = None  # we issue BEGIN ourselves
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
    if manual_checkpoints:  # no commit checkpoints inline (service/checkpoints.py does)
        conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Each connection keeps its own page cache (2 MB by default); the file's pages stay in
    # the kernel's cache anyway, so a small one costs a read a syscall (docs/operations.md)
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")


def connect(
    path: Path, *, readonly: bool = False, busy_ms: int | None = None,
    manual_checkpoints: bool = False,
) -> sqlite3.Connection:  # fmt: skip
    """One plain connection, configured as every connection to the store is."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
    try:
        _configure(conn, readonly, _busy_ms(readonly, busy_ms), manual_checkpoints)
    except BaseException:
        conn.close()
        raise
    return conn


class Pool:
    """Connections handed to one thread at a time and kept for the next (a writer's are; a
    read-only store's are closed after use, as the CLI reads once)."""

    def __init__(self, path: Path, *, readonly: bool = False, busy_ms: int | None = None) -> None:
        self.path, self.readonly, self.busy_ms = path, readonly, busy_ms
        self.manual_checkpoints = False  # set: connections made from now on never checkpoint
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = None
        with self._lock:
            if self._idle and self._pid == os.getpid():
                conn = self._idle.pop()
        if conn is None:
            conn = connect(self.path, readonly=self.readonly, busy_ms=self.busy_ms,
                           manual_checkpoints=self.manual_checkpoints)  # fmt: skip
        try:
            yield conn
        except BaseException:
            conn.close()  # it may be mid-transaction or broken: a fresh one next time
            raise
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if self.readonly or self._pid != os.getpid():
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def make_engine(path: Path, *, readonly: bool = False, busy_ms: int | None = None) -> Engine:
    """An SQLAlchemy engine on the store, configured as `connect` does (imports SQLAlchemy)."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    busy = _busy_ms(readonly, busy_ms)
    url = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool if readonly else None)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        _configure(dbapi_conn, readonly, busy)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A deferred BEGIN cannot wait out a read->write upgrade; IMMEDIATE takes the lock first.
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


# The newest migration. A store already there is opened without importing Alembic at all
# (about 11 MB of the service's memory); tests/unit/test_store.py keeps this in step.
HEAD = "0009"


def migrations_dir() -> Path:
    """The Alembic scripts: the wheel installs the top-level alembic/ as reconciler/migrations/
    (a package-dir mapping in pyproject.toml); a checkout has them at the top."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "migrations"
    return installed if (installed / "env.py").is_file() else package.parent / "alembic"


def current_revision(pool: Pool) -> str | None:
    with pool.connection() as raw:
        try:
            row = raw.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # no table yet: a new store
            return None
    return str(row[0]) if row else None


def check(pool: Pool, path: Path) -> None:
    """At start, before anything runs: refuse a damaged store or one from a newer reconciler.
    The message is one line with the way out; running tasks are left alone meanwhile."""
    try:
        with pool.connection() as raw:
            rows = [r[0] for r in raw.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as e:
        orig = e
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
    rev = current_revision(pool)
    if rev is not None and rev > HEAD:
        raise StoreRefused(
            f"{path} has schema {rev}, newer than this reconciler knows ({HEAD}): it was used by "
            "a newer version. Run that version again, or restore a backup taken before the "
            "upgrade (running tasks are left alone)"
        )


def upgrade(pool: Pool, revision: str = "head", *, apart: bool = False) -> None:
    """Migrate the store to `revision` (nothing to do, and nothing imported, when it is at
    HEAD already). `apart`: in a child process, so that the service never holds SQLAlchemy
    and Alembic in its own memory for the sake of one migration."""
    if revision == "head" and current_revision(pool) == HEAD:
        return
    if apart:
        done = subprocess.run(
            [sys.executable, "-c", _MIGRATE_APART, str(pool.path), revision],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if done.returncode == 3:  # a full disk, a locked store: the caller waits it out
            raise TransientFault(last, f"migrating {pool.path}")
        raise RuntimeError(f"migrating {pool.path} failed: {last}")
    migrate(pool.path, revision, busy_ms=pool.busy_ms)


# The child that migrates: exit status 3 and the cause on its last line for a transient fault.
_MIGRATE_APART = """
import pathlib, sys, traceback
from reconciler.db import engine
from reconciler.faults import transient_cause
try:
    engine.migrate(pathlib.Path(sys.argv[1]), sys.argv[2])
except Exception as e:
    traceback.print_exc()
    cause = transient_cause(e)
    print(cause or f"{type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    sys.exit(3 if cause else 1)
"""


def migrate(path: Path, revision: str = "head", *, busy_ms: int | None = None) -> None:
    """Run Alembic's migrations on the store up to `revision` (imports SQLAlchemy)."""
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    engine = make_engine(path, busy_ms=busy_ms)
    try:
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
    finally:
        engine.dispose()
