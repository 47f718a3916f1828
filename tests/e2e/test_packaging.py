"""`pip install .` gives a working `reconciler`, migrations and shim source included."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_carries_migrations_and_shim_and_runs(tmp_path: Path) -> None:
    # Built from a copy of the tracked files: setuptools' build/ in a checkout keeps files
    # that were renamed or removed since (an old migration would ride along).
    src = tmp_path / "src"
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        dest = src / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True)  # fmt: skip
    wheel = next(tmp_path.glob("reconciler-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "reconciler/migrations/env.py" in names and "reconciler/executor/linux/shim.c" in names
    assert any(n.startswith("reconciler/migrations/versions/0001") for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    # The installed copy, not the checkout: migrations from package resources, cwd elsewhere.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import reconciler, pathlib;"
        "assert reconciler.__file__.startswith(sys.argv[1]), reconciler.__file__;"
        "from reconciler.db.store import Store; s = Store(pathlib.Path(sys.argv[2]));"
        "print(sorted(s.observed().jobs)); s.close()"
    )
    p = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path / "state.db")],
                       cwd="/", capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
