"""Directory skeletons made ahead (rootfs.Spares): a start renames one into place, and the
result is the same tree, with the same modes, as one made at the start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reconciler.executor.linux import rootfs


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_dir()}  # fmt: skip


def test_a_start_takes_skeletons_and_gets_the_same_tree(tmp_path: Path) -> None:
    plain = rootfs.TaskDirs(alloc=tmp_path / "a" / "allocs/j/g/0", task=tmp_path / "a" / "allocs/j/g/0/tasks/t")
    rootfs.prepare(plain, None)
    spares = rootfs.Spares(tmp_path / "b" / "warm" / "spare")
    spares.fill()
    before = len(list(spares.where.iterdir()))
    warm = rootfs.TaskDirs(alloc=tmp_path / "b" / "allocs/j/g/0", task=tmp_path / "b" / "allocs/j/g/0/tasks/t")
    rootfs.prepare(warm, None, spares)
    assert len(list(spares.where.iterdir())) == before - 2  # one group and one task skeleton
    assert _tree(tmp_path / "a" / "allocs") == _tree(tmp_path / "b" / "allocs")
    # A second task of the same group takes only a task skeleton.
    second = rootfs.TaskDirs(alloc=warm.alloc, task=warm.alloc / "tasks" / "u")
    rootfs.prepare(second, None, spares)
    assert (second.task / "local").is_dir() and (second.task / "tmp").is_dir()
    assert stat.S_IMODE(os.stat(second.task / "tmp").st_mode) == 0o1777


def test_an_existing_directory_is_never_replaced(tmp_path: Path) -> None:
    spares = rootfs.Spares(tmp_path / "warm" / "spare")
    spares.fill()
    dirs = rootfs.TaskDirs(alloc=tmp_path / "allocs/j/g/0", task=tmp_path / "allocs/j/g/0/tasks/t")
    (dirs.alloc / "alloc" / "data").mkdir(parents=True)
    (dirs.alloc / "alloc" / "data" / "kept").write_text("x")
    rootfs.prepare(dirs, None, spares)
    assert (dirs.alloc / "alloc" / "data" / "kept").read_text() == "x"
