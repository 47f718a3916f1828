"""The store: migrations from package resources, HEAD in step with Alembic, WAL, read-only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.db import engine as db_engine
from reconciler.db.store import Store


def test_head_constant_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(db_engine.migrations_dir()))
    assert ScriptDirectory.from_config(cfg).get_current_head() == db_engine.HEAD


def test_a_current_store_opens_without_importing_alembic(tmp_path: Path) -> None:
    Store(tmp_path / "state.db").close()
    code = ("import sys, pathlib; from reconciler.db.store import Store;"
            "Store(pathlib.Path(sys.argv[1])).close(); print('alembic' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "state.db")],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert out == "False"


def test_wal_and_read_only(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    with s.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()
    ro = Store(tmp_path / "state.db", readonly=True)
    with pytest.raises(Exception, match="readonly"), ro.engine.connect() as c:
        c.exec_driver_sql("INSERT INTO jobs (id, source_file, status, reason, paused, created_at, updated_at)"
                          " VALUES ('x', '', '', '', 0, 0, 0)")  # fmt: skip
    with pytest.raises(FileNotFoundError, match="no state store"):
        Store(tmp_path / "missing.db", readonly=True)
