"""Directory skeletons made ahead (rootfs.Spares): a start renames one into place, and the
result is the same tree, with the same modes, as one made at the start."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from pathlib import Path

from reconciler.executor.linux import rootfs


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_dir()}  # fmt: skip


def test_a_start_takes_skeletons_and_gets_the_same_tree(tmp_path: Path) -> None:
    plain = rootfs.TaskDirs(
        alloc=tmp_path / "a" / "allocs/j/g/0", task=tmp_path / "a" / "allocs/j/g/0/tasks/t"
    )
    rootfs.prepare(plain, None)
    spares = rootfs.Spares(tmp_path / "b" / "warm" / "spare")
    spares.fill()
    before = len(list(spares.where.iterdir()))
    warm = rootfs.TaskDirs(
        alloc=tmp_path / "b" / "allocs/j/g/0", task=tmp_path / "b" / "allocs/j/g/0/tasks/t"
    )
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


def _flags(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = fcntl.ioctl(fd, rootfs.FS_IOC_GETFLAGS, struct.pack("q", 0))
        return int(struct.unpack("q", got)[0]) & 0xFFFFFFFF
    except OSError:
        return None  # a filesystem without inode flags (tmpfs)
    finally:
        os.close(fd)


def test_allocs_is_marked_as_the_top_of_directory_trees(tmp_path: Path) -> None:
    """chattr +T where the filesystem has it (ext2/3/4); a link in its place is not followed."""
    top, other = tmp_path / "allocs", tmp_path / "other"
    top.mkdir()
    other.mkdir()
    before = _flags(other)
    marked = rootfs.spread_out(top)
    if before is None:
        assert not marked
        return
    assert marked and _flags(top) == before | rootfs.FS_TOPDIR_FL  # nothing else changed
    assert rootfs.spread_out(top)  # again: already marked
    (tmp_path / "link").symlink_to(other)
    assert not rootfs.spread_out(tmp_path / "link")
    assert _flags(other) == before
    sub = top / "job"
    sub.mkdir()
    assert not (_flags(sub) or 0) & rootfs.FS_TOPDIR_FL  # not inherited: only allocs/ spreads


def test_a_start_cut_short_is_completed_by_the_next(tmp_path: Path) -> None:
    """The service killed in the middle of making a task's directories: local/ made, tmp/ not,
    or made without its mode yet. The next start completes them, with their modes."""
    whole = rootfs.TaskDirs(
        alloc=tmp_path / "a" / "allocs/j/g/0", task=tmp_path / "a" / "allocs/j/g/0/tasks/t"
    )
    rootfs.prepare(whole, None)
    for case in ("missing", "mode"):
        dirs = rootfs.TaskDirs(
            alloc=tmp_path / case / "allocs/j/g/0", task=tmp_path / case / "allocs/j/g/0/tasks/t"
        )
        (dirs.alloc / "alloc" / "data").mkdir(parents=True, mode=0o755)  # its mode not set yet
        (dirs.task / "local").mkdir(parents=True)
        if case == "mode":
            (dirs.task / "tmp").mkdir(mode=0o755)
        rootfs.prepare(dirs, None)
        assert _tree(tmp_path / case / "allocs") == _tree(tmp_path / "a" / "allocs"), case
