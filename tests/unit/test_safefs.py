"""safefs and template destinations: whatever the destination string and whatever links the
task planted, a write lands inside the task's directories or is refused."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.executor.base import StartError
from reconciler.executor.linux import rootfs, safefs, templates

ME = pwd.getpwuid(os.getuid())


def layout(root: Path) -> tuple[rootfs.TaskDirs, Path]:
    dirs = rootfs.TaskDirs(alloc=root / "alloc", task=root / "alloc/tasks/t")
    rootfs.prepare(dirs, {})
    outside = root / "outside"
    outside.mkdir()
    # What a task could have planted in the directories it writes.
    (dirs.local / "link").symlink_to(outside)
    (dirs.local / "file-link").symlink_to(outside / "f")
    (dirs.alloc / "alloc/data/up").symlink_to("../../../..")
    (dirs.task / "tmp/abs").symlink_to("/")
    os.mkfifo(dirs.local / "fifo")
    return dirs, outside


def files_under(top: Path) -> set[str]:
    out = set()
    for dirpath, _, names in os.walk(top):  # os.walk does not follow links
        out |= {os.path.join(dirpath, n) for n in names}
    return out


SEGMENT = st.sampled_from(["local", "secrets", "alloc", "tmp", "data", "..", ".", "", "link",
                           "file-link", "up", "abs", "fifo", "x", "${NOMAD_TASK_DIR}", "é",
                           "\udcff", "a" * 300])  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(SEGMENT, min_size=1, max_size=6), absolute=st.booleans())
def test_writes_land_inside_or_are_refused(tmp_path: Path, parts: list[str], absolute: bool) -> None:
    root = tmp_path / f"r{len(os.listdir(tmp_path))}"
    root.mkdir()
    dirs, outside = layout(root)
    before = files_under(root) - files_under(dirs.alloc)
    dest = ("/" if absolute else "") + "/".join(parts)
    try:
        templates.write(dirs, dest, "x", 0o644, ME)
    except StartError as e:
        assert dest in str(e) or repr(dest) in str(e)
    assert not os.listdir(outside)
    assert files_under(root) - files_under(dirs.alloc) == before


def test_refusals_name_what_was_met(tmp_path: Path) -> None:
    dirs, _ = layout(tmp_path)
    for dest, why in (("local/link/x", "link is a symbolic link"),
                      ("local/file-link", "file-link is a symbolic link"),
                      ("local/fifo", "fifo is a FIFO"),
                      ("alloc/data/up/x", "up is a symbolic link"),
                      ("tmp/abs/etc/passwd", "abs is a symbolic link"),
                      ("local/../../x", "leaves the task directory")):  # fmt: skip
        with pytest.raises(StartError, match=why):
            templates.write(dirs, dest, "x", 0o644, ME)


def test_a_write_replaces_a_regular_file_atomically(tmp_path: Path) -> None:
    dirs, _ = layout(tmp_path)
    templates.write(dirs, "local/a/b/c.conf", "one", 0o640, ME)
    templates.write(dirs, "/local/a/b/c.conf", "two", 0o600, ME)
    target = dirs.local / "a/b/c.conf"
    assert target.read_text() == "two" and (target.stat().st_mode & 0o777) == 0o600
    assert sorted(os.listdir(target.parent)) == ["c.conf"]  # no temporary left behind
    templates.write(dirs, "elsewhere.conf", "three", 0o644, ME)
    assert (dirs.local / "elsewhere.conf").read_text() == "three"
    templates.write(dirs, "tmp/t.conf", "four", 0o644, ME)
    assert (dirs.task / "tmp/t.conf").read_text() == "four"


def test_a_re_render_writes_only_what_changed(tmp_path: Path) -> None:
    dirs, outside = layout(tmp_path)
    assert templates.write(dirs, "local/a.conf", "one", 0o644, ME, unless_same=True)
    before = os.stat(dirs.local / "a.conf").st_ino
    assert not templates.write(dirs, "local/a.conf", "one", 0o644, ME, unless_same=True)
    assert os.stat(dirs.local / "a.conf").st_ino == before  # not replaced
    assert templates.write(dirs, "local/a.conf", "onf", 0o644, ME, unless_same=True)
    assert (dirs.local / "a.conf").read_text() == "onf"
    (outside / "f").write_text("secret")
    base = safefs.open_base(str(dirs.local))
    try:  # what the task planted is never read through, nor waited on
        assert not safefs.holds(base, "file-link", b"secret")
        assert not safefs.holds(base, "link/f", b"secret")
        assert not safefs.holds(base, "fifo", b"")
        assert not safefs.holds(base, "missing", b"")
        assert safefs.holds(base, "a.conf", b"onf") and not safefs.holds(base, "a.conf", b"on")
    finally:
        os.close(base)


def test_ensure_dir_fixes_mode_through_the_fd(tmp_path: Path) -> None:
    base = safefs.open_base(str(tmp_path))
    try:
        os.close(safefs.ensure_dir(base, "a/b", 0o1777))
        assert (tmp_path / "a/b").stat().st_mode & 0o7777 == 0o1777
        (tmp_path / "l").symlink_to(tmp_path / "a")
        with pytest.raises(safefs.UnsafePath):
            safefs.ensure_dir(base, "l/b")
    finally:
        os.close(base)
