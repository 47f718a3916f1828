"""`pip install .` gives a working `reconciler`: migrations, shim source and a built shim included."""

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
    # The top-level alembic/ rides in the wheel as reconciler/migrations/ (package-dir mapping).
    assert "reconciler/executor/linux/shim.c" in names
    assert {"reconciler/migrations/env.py", "reconciler/migrations/script.py.mako"} <= set(names)
    versions = {n.rsplit("/", 1)[1] for n in names if n.startswith("reconciler/migrations/versions/")}
    assert versions == {p.name for p in (ROOT / "alembic" / "versions").glob("*.py")}
    assert not any(n.startswith("alembic/") for n in names)  # never a top-level `alembic` package
    # The build hook (setup.py) compiled the shim into the wheel: hosts need no compiler.
    from reconciler.executor.linux import shimbuild

    assert f"reconciler/executor/linux/bin/{shimbuild.name()}" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    # The installed copy, not the checkout: a fresh store migrated to HEAD by the installed
    # scripts (an audit hook lists every file opened), cwd elsewhere.
    code = (
        "import sys; opened = [];"
        "sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == 'open' else None);"
        "sys.path.insert(0, sys.argv[1]); import reconciler, pathlib;"
        "assert reconciler.__file__.startswith(sys.argv[1]), reconciler.__file__;"
        "from reconciler.db.store import Store; from reconciler.db import engine;"
        "s = Store(pathlib.Path(sys.argv[2])); print(sorted(s.observed().jobs));"
        "print(engine.current_revision(s.pool), engine.HEAD); s.close();"
        "print('\\n'.join(f for f in opened if 'alembic' in f or '/migrations/' in f))"
    )
    p = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path / "state.db")],
                       cwd="/", capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    jobs, revisions, *opened = p.stdout.strip().splitlines()
    assert jobs == "[]"
    current, head = revisions.split()
    assert current == head
    installed = str(target / "reconciler" / "migrations") + "/"
    assert any(f.startswith(installed) and "env" in f for f in opened), opened
    assert any(f.startswith(installed + "versions/") for f in opened), opened
    checkout = (str(ROOT / "alembic") + "/", str(ROOT / "reconciler") + "/")
    assert not any(f.startswith(checkout) for f in opened), opened
