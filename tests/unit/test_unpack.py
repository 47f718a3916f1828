"""Unpacking artifacts: go-getter's choice of type, limits, and no member ever lands outside its
destination (fuzzed over hostile names and member kinds)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.executor.linux import safefs, unpack

KINDS = {"reg": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
         "lnk": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}  # fmt: skip


def make_tar(path: Path, members: list[tuple[str, str, str, int]], compression: str = "gz") -> None:
    with tarfile.open(path, f"w:{compression}", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, link, mode in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = KINDS[kind], link, mode
            data = f"data of {name}".encode() if kind == "reg" else b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)


@contextmanager
def base_fd(path: Path) -> Iterator[int]:
    fd = safefs.open_base(str(path))
    try:
        yield fd
    finally:
        os.close(fd)


def unpack_into(
    archive: Path, kind: str, root: Path, limits: unpack.Limits = unpack.Limits()
) -> int:
    with unpack.members(str(archive), kind, limits) as items, base_fd(root) as fd:
        return unpack.place_tree(items, fd, "dest", None, limits)


def tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(d) / n
            out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


def test_type_by_longest_suffix_and_archive_option() -> None:
    assert unpack.kind_of("/x/app.tar.gz", "") == "tar.gz"
    assert unpack.kind_of("/x/app.tgz", "") == "tgz"
    assert unpack.kind_of("/x/app.gz", "") == "gz"
    assert unpack.kind_of("/x/app.tar.xz", "") == "tar.xz"
    assert unpack.kind_of("/x/app.zip", "") == "zip"
    assert unpack.kind_of("/x/app.sh", "") == ""
    assert unpack.kind_of("/x/app.tar.gz", "false") == ""
    assert unpack.kind_of("/x/app.bin", "tar.gz") == "tar.gz"


def test_tar_gz_unpacks_with_modes_stripped(tmp_path: Path) -> None:
    a = tmp_path / "a.tar.gz"
    make_tar(a, [("bin/", "dir", "", 0o755), ("bin/run", "reg", "", 0o6755),
                 ("etc/conf", "reg", "", 0o666)])  # fmt: skip
    root = tmp_path / "root"
    root.mkdir()
    assert unpack_into(a, "tar.gz", root) == 3
    run = root / "dest/bin/run"
    assert run.read_bytes() == b"data of bin/run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o755  # setuid and setgid gone
    assert stat.S_IMODE((root / "dest/etc/conf").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("members", "error"),
    [
        ([("../x", "reg", "", 0o644)], "entry contains '..'"),
        ([("a/../../x", "reg", "", 0o644)], "entry contains '..'"),
        ([("/etc/x", "reg", "", 0o644)], "absolute name"),
        ([("l", "sym", "/etc/passwd", 0o777)], "is a link"),
        ([("l", "sym", "inside", 0o777)], "is a link"),
        ([("h", "lnk", "../../etc/passwd", 0o644)], "is a link"),
        ([("dev", "chr", "", 0o644)], "device, FIFO"),
        ([("fifo", "fifo", "", 0o644)], "device, FIFO"),
    ],
)
def test_hostile_members_refuse_the_whole_archive(
    tmp_path: Path, members: list[tuple[str, str, str, int]], error: str
) -> None:
    a = tmp_path / "a.tar.gz"
    make_tar(a, [("ok", "reg", "", 0o644), *members])
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(unpack.Refused, match=error):
        unpack_into(a, "tar.gz", root)
    assert tree(root) == {}  # checked before anything is placed


def test_limits(tmp_path: Path) -> None:
    a = tmp_path / "a.tar"
    make_tar(a, [(f"f{i}", "reg", "", 0o644) for i in range(5)], compression="")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(unpack.Refused, match="too many files: 4 > 3"):
        unpack_into(a, "tar", root, unpack.Limits(files=3))
    with pytest.raises(unpack.Refused, match="larger than limit: 20"):
        unpack_into(a, "tar", root, unpack.Limits(size=20))
    assert unpack_into(a, "tar", root, unpack.Limits(size=100, files=5)) == 5


def test_zip_with_link_or_dotdot_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("d/f.txt", "hello")
    assert unpack_into(good, "zip", root) == 1
    assert (root / "dest/d/f.txt").read_text() == "hello"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil", "x")
    with pytest.raises(unpack.Refused, match=r"'\.\.'"):
        unpack_into(bad, "zip", root)
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("l")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(unpack.Refused, match="is a link"):
        unpack_into(link, "zip", root)


def test_a_link_planted_in_the_destination_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dest").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "dest/bin").symlink_to(outside)
    a = tmp_path / "a.tar.gz"
    make_tar(a, [("bin/run", "reg", "", 0o755)])
    with pytest.raises(safefs.UnsafePath):
        unpack_into(a, "tar.gz", root)
    assert list(outside.iterdir()) == []


NAMES = st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "\\", "..\\x", "c d", "é"]),
                 min_size=1, max_size=5).map("/".join)  # fmt: skip
MEMBER = st.tuples(NAMES, st.sampled_from(list(KINDS)),
                   st.sampled_from(["", "a", "../x", "/etc/passwd", "../../outside/f"]),
                   st.sampled_from([0o644, 0o755, 0o4755, 0o2777, 0o1777]))  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(members=st.lists(MEMBER, min_size=1, max_size=6))
def test_fuzz_nothing_lands_outside_the_destination(
    tmp_path_factory: pytest.TempPathFactory, members: list[tuple[str, str, str, int]]
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    outside = work / "outside"
    outside.mkdir()
    (outside / "f").write_text("keep")
    root = work / "root"
    root.mkdir()
    a = work / "a.tar.gz"
    make_tar(a, members)
    try:
        unpack_into(a, "tar.gz", root)
    except unpack.Refused:
        assert tree(root) == {}  # all or nothing: refused before the first write
    except (safefs.UnsafePath, OSError):
        pass  # e.g. a file where a later member needs a directory: refused by safefs
    assert tree(outside) == {"f": b"keep"}
    assert set(os.listdir(work)) == {"outside", "root", "a.tar.gz"}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(d) / n
            st_ = p.lstat()
            assert stat.S_ISDIR(st_.st_mode) or stat.S_ISREG(st_.st_mode)
            assert not st_.st_mode & (stat.S_ISUID | stat.S_ISGID)
            assert str(p).startswith(str(root / "dest"))


def test_destinations_map_to_the_task_directories(tmp_path: Path) -> None:
    from reconciler.executor.linux.artifacts import Failed, destination
    from reconciler.executor.linux.rootfs import TaskDirs

    d = TaskDirs(alloc=tmp_path / "a", task=tmp_path / "a/tasks/t")
    assert destination(d, "local/") == (d.local, "")
    assert destination(d, "local/bin") == (d.local, "bin")
    assert destination(d, "/alloc/data/x") == (d.alloc / "alloc", "data/x")
    assert destination(d, "../alloc/data") == (d.alloc / "alloc", "data")
    assert destination(d, "tmp/x") == (d.task / "tmp", "x")
    assert destination(d, "other/x") == (d.local, "other/x")
    for bad in ("../../x", "../t2/local", "alloc/logs/x", "secrets/x", "../../local/alloc"):
        with pytest.raises(Failed):
            destination(d, bad)
