"""The wheel's package list (pyproject.toml) names every package of the tree, and the top-level
alembic/ is what installs as reconciler.migrations."""

from __future__ import annotations

import tomllib
from pathlib import Path

from reconciler.db import engine as db_engine

ROOT = Path(__file__).parents[2]


def _setuptools() -> dict[str, object]:
    config: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config


def test_every_package_is_listed_for_the_wheel() -> None:
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "reconciler").rglob("__init__.py")}
    listed = set(_setuptools()["packages"])  # type: ignore[call-overload]
    missing = sorted(on_disk - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    mapped = {"reconciler.migrations", "reconciler.migrations.versions"}
    assert listed - on_disk == mapped


def test_migrations_install_from_the_top_level_alembic_directory() -> None:
    assert _setuptools()["package-dir"] == {"reconciler.migrations": "alembic"}
    assert not (ROOT / "reconciler" / "migrations" / "env.py").exists()
    assert db_engine.migrations_dir() == ROOT / "alembic"
    assert sorted(p.name for p in (ROOT / "alembic" / "versions").glob("0001_*.py"))
