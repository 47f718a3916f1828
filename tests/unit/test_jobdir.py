"""Every kind of entry in the job directory: only regular files are read, nothing blocks, and
each odd entry is a problem that says what it is."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.spec import jobdir, load
from reconciler.spec.load import MAX_FILE_BYTES, Desired, Loader
from reconciler.watch import Watcher

JOB = 'job "{name}" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{ command = "/bin/{cmd}" }}\n    }}\n  }}\n}}\n'


def job(name: str, cmd: str = "true") -> str:
    return JOB.format(name=name, cmd=cmd)


def in_time(fn: Callable[[], Any], seconds: float = 20) -> Any:
    """Run fn on a thread: a blocking open must fail the test, not hang it."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"{fn} did not return within {seconds} s (blocked?)"
    return out[0]


def messages(d: Desired) -> dict[str, str]:
    return {Path(p.file).name: p.message for p in d.errors}


def test_odd_entries_are_problems_with_their_kind_and_nothing_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "ok.hcl").write_text(job("ok"))
    os.mkfifo(jobs / "pipe.hcl")
    monkeypatch.chdir(jobs)  # a socket path must be short
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock.hcl")
    monkeypatch.chdir(tmp_path)
    os.symlink("loop-b.hcl", jobs / "loop-a.hcl")
    os.symlink("loop-a.hcl", jobs / "loop-b.hcl")
    os.symlink("self.hcl", jobs / "self.hcl")
    os.symlink("nowhere.hcl", jobs / "dangling.hcl")
    (jobs / "x.hcl").mkdir()
    (jobs / "big.hcl").write_bytes(b"#" * (3 << 20))
    os.symlink("pipe.hcl", jobs / "to-pipe.hcl")
    os.symlink("x.hcl", jobs / "to-dir.hcl")
    try:
        d = in_time(Loader(jobs).scan)
        again = in_time(Loader(jobs).scan)  # a cold loader reads it all the same
    finally:
        sock.close()
    assert set(d.jobs) == {"ok"} and messages(d) == messages(again)
    got = messages(d)
    assert "FIFO" in got["pipe.hcl"] and "skipped" in got["pipe.hcl"]
    assert "Unix socket" in got["sock.hcl"]
    assert all("symlink loop" in got[n] for n in ("loop-a.hcl", "loop-b.hcl", "self.hcl"))
    assert "dangling symlink" in got["dangling.hcl"] and "nowhere.hcl" in got["dangling.hcl"]
    assert "is a directory" in got["x.hcl"]
    assert f"larger than {MAX_FILE_BYTES // 1024} KiB" in got["big.hcl"]
    assert "symlink to a FIFO" in got["to-pipe.hcl"]
    assert "symlink to a directory" in got["to-dir.hcl"]
    assert {Path(f).name for f in d.broken_files} == set(got)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_is_never_opened(tmp_path: Path) -> None:
    os.mknod(tmp_path / "null.hcl", 0o600 | 0o020000, os.makedev(1, 3))
    got = messages(in_time(Loader(tmp_path).scan))
    assert "character device" in got["null.hcl"]


def test_symlinks_inside_the_directory_are_followed_outside_refused(tmp_path: Path) -> None:
    """The layout of a Kubernetes ConfigMap mount: `web.hcl -> ..data/web.hcl`, `..data ->
    ..v1`; re-pointing `..data` is an edit of web.hcl."""
    jobs = tmp_path / "jobs"
    for v, cmd in (("..v1", "one"), ("..v2", "two")):
        (jobs / v).mkdir(parents=True)
        (jobs / v / "web.hcl").write_text(job("web", cmd))
    os.symlink("..v1", jobs / "..data")
    os.symlink("..data/web.hcl", jobs / "web.hcl")
    (tmp_path / "outside.hcl").write_text(job("outside"))
    os.symlink(tmp_path / "outside.hcl", jobs / "out.hcl")
    loader = Loader(jobs)
    d = loader.scan()
    assert "/bin/one" in d.jobs["web"].canonical
    assert "points outside" in messages(d)["out.hcl"]
    os.symlink("..v2", jobs / "..data.new")
    os.rename(jobs / "..data.new", jobs / "..data")
    assert "/bin/two" in loader.scan().jobs["web"].canonical


def as_nobody(fn: Callable[[], Any]) -> Any:
    """fn's result, computed in a child that has dropped root: an unreadable file is only
    unreadable to a process without CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return json.loads(out)


def test_unreadable_file_is_reported() -> None:
    d = Path(tempfile.mkdtemp(prefix="reconciler-unreadable-"))
    try:
        d.chmod(0o755)  # reachable by nobody (pytest's own tmp dirs are not)
        (d / "a.hcl").write_text(job("a"))
        (d / "a.hcl").chmod(0)
        got = as_nobody(lambda: messages(Loader(d).scan()))
        assert got["a.hcl"] == "cannot read: Permission denied"
    finally:
        shutil.rmtree(d)


def test_a_chmod_alone_makes_the_scan_read_the_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "a.hcl"
    p.write_text(job("a"))
    loader = Loader(tmp_path)
    loader.scan()
    reads: list[str] = []
    real = Loader._read
    monkeypatch.setattr(
        Loader,
        "_read",
        lambda self, path, name, **kw: reads.append(name) or real(self, path, name, **kw),
    )
    before = p.stat().st_mtime_ns
    p.chmod(0o600)  # what makes an unreadable file readable changes no mtime
    assert p.stat().st_mtime_ns == before
    loader.scan()
    assert len(reads) == 1


def test_odd_entries_do_not_defeat_the_no_change_fast_path(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.hcl")
    os.symlink("nowhere.hcl", tmp_path / "dangling.hcl")
    (tmp_path / "a.hcl").write_text(job("a"))
    loader = Loader(tmp_path)
    first = loader.scan()
    assert loader.scan() is first and loader.settled()


def test_warm_of_a_fifo_returns(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.hcl")
    in_time(lambda: Loader(tmp_path).warm(tmp_path / "pipe.hcl"))


def test_a_fifo_for_a_var_file_is_reported_not_opened(tmp_path: Path) -> None:
    (tmp_path / "web.hcl").write_text(job("web"))
    os.mkfifo(tmp_path / "web.vars.hcl")
    d = in_time(Loader(tmp_path).scan)
    assert "web.vars.hcl: is a FIFO" in messages(d)["web.hcl"]


def test_a_git_command_at_work_is_not_settled(tmp_path: Path) -> None:
    (tmp_path / "a.hcl").write_text(job("a"))
    (tmp_path / ".git").mkdir()
    loader = Loader(tmp_path)
    loader.scan()
    assert loader.settled()
    for lock in ("index.lock", "HEAD.lock"):
        (tmp_path / ".git" / lock).write_text("")
        assert not loader.settled()  # checkout writes files first, moves HEAD last
        (tmp_path / ".git" / lock).unlink()
    assert loader.settled()


def watched(root: Path) -> Loader:
    """A loader whose journal is fed by hand, as the watcher feeds it."""
    loader = Loader(root)
    loader.journal.attach()
    loader.scan()  # the first scan after attaching lists everything
    return loader


def test_with_a_journal_only_the_named_entries_are_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.hcl").write_text(job("a"))
    (tmp_path / "b.hcl").write_text(job("b"))
    loader = watched(tmp_path)
    listings: list[Path] = []
    real = jobdir.listing
    monkeypatch.setattr(jobdir, "listing", lambda root, w: listings.append(root) or real(root, w))
    first = loader.scan()
    assert loader.scan() is first and loader.settled() and not listings  # nothing noted
    (tmp_path / "a.hcl").write_text(job("a", "edited"))
    loader.journal.note("a.hcl")
    assert "/bin/edited" in loader.scan().jobs["a"].canonical and not listings
    (tmp_path / "c.hcl").write_text(job("c"))
    loader.journal.note("c.hcl")
    assert set(loader.scan().jobs) == {"a", "b", "c"} and not listings
    (tmp_path / "c.hcl").unlink()
    loader.journal.note("c.hcl")
    assert set(loader.scan().jobs) == {"a", "b"} and not listings
    loader.journal.note_all()  # events may have been lost: a full listing
    loader.scan()
    assert len(listings) == 1


def test_a_change_the_journal_missed_is_found_by_the_periodic_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.hcl").write_text(job("a"))
    loader = watched(tmp_path)
    (tmp_path / "a.hcl").write_text(job("a", "edited"))  # written in place: no entry changes
    assert "/bin/true" in loader.scan().jobs["a"].canonical  # not noted, not seen (yet)
    monkeypatch.setattr(load, "LIST_EVERY", 0.0)
    assert "/bin/edited" in loader.scan().jobs["a"].canonical


def test_an_entry_made_but_not_yet_noted_is_not_settled(tmp_path: Path) -> None:
    (tmp_path / "a.hcl").write_text(job("a"))
    loader = watched(tmp_path)
    assert loader.settled()
    (tmp_path / "b.hcl").write_text(job("b"))  # its event has not arrived: the mtime tells
    assert not loader.settled()
    loader.journal.note("b.hcl")
    assert set(loader.scan().jobs) == {"a", "b"} and loader.settled()
    loader.journal.note("b.hcl")  # an event after the scan
    assert not loader.settled()


def test_with_a_journal_symlinks_are_still_followed_every_scan(tmp_path: Path) -> None:
    for v, cmd in (("..v1", "one"), ("..v2", "two")):
        (tmp_path / v).mkdir()
        (tmp_path / v / "web.hcl").write_text(job("web", cmd))
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/web.hcl", tmp_path / "web.hcl")
    loader = watched(tmp_path)
    assert "/bin/one" in loader.scan().jobs["web"].canonical
    os.symlink("..v2", tmp_path / "..data.new")
    os.rename(tmp_path / "..data.new", tmp_path / "..data")  # no job file named by any event
    assert "/bin/two" in loader.scan().jobs["web"].canonical


def test_the_watcher_feeds_the_journal(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    journal = jobdir.Journal()
    w = Watcher(jobs, lambda _t: None, journal=journal)
    w.start()
    try:
        assert journal.attached and journal.take() is None  # first: list everything
        (jobs / ".a.hcl.tmp").write_text(job("a"))
        os.rename(jobs / ".a.hcl.tmp", jobs / "a.hcl")
        deadline = time.monotonic() + 20
        seen: set[str] = set()
        while "a.hcl" not in seen and time.monotonic() < deadline:
            seen |= journal.take() or set()
            time.sleep(0.01)
        assert "a.hcl" in seen
    finally:
        w.stop()
    assert not journal.attached and journal.take() is None
