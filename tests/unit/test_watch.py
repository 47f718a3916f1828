"""The watcher's debounce: one wake per burst, and the early calls that let parsing and
priming overlap it."""

from __future__ import annotations

import threading
from pathlib import Path

from watchdog.events import (
    DirModifiedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileModifiedEvent,
    FileMovedEvent,
)

from reconciler.watch import _Debounce


def test_a_burst_wakes_once_and_reports_its_start_early(tmp_path: Path) -> None:
    jobs = str(tmp_path)
    woke = threading.Event()
    wakes: list[float] = []
    early: list[str] = []
    d = _Debounce(tmp_path, lambda t: (wakes.append(t), woke.set()), early.append, 0.05, 1.0)
    d.on_any_event(DirModifiedEvent(jobs))  # the parent's watch sees jobs/ change first
    d.on_any_event(FileMovedEvent(f"{jobs}/.a.tmp", f"{jobs}/a.hcl"))
    d.on_any_event(FileMovedEvent(f"{jobs}/.b.tmp", f"{jobs}/b.hcl"))
    d.on_any_event(FileMovedEvent(f"{jobs}/.c.tmp", f"{jobs}/c.txt"))  # not a job file
    d.on_any_event(FileClosedNoWriteEvent(f"{jobs}/a.hcl"))  # our own read
    assert early == ["", f"{jobs}/a.hcl"]  # the burst's start, then its first job file
    assert woke.wait(5) and len(wakes) == 1
    woke.clear()
    d.on_any_event(FileMovedEvent(f"{jobs}/.b.tmp", f"{jobs}/b.hcl"))
    assert early[2:] == [f"{jobs}/b.hcl"]  # a new burst reports again
    assert woke.wait(5) and len(wakes) == 2


def test_events_outside_the_directory_are_ignored(tmp_path: Path) -> None:
    early: list[str] = []
    d = _Debounce(tmp_path / "jobs", lambda t: None, early.append, 0.01, 1.0)
    d.on_any_event(FileMovedEvent(f"{tmp_path}/x.tmp", f"{tmp_path}/x.hcl"))
    assert early == []


def test_one_thread_debounces_every_burst(tmp_path: Path) -> None:
    jobs = str(tmp_path)
    woke = threading.Semaphore(0)
    d = _Debounce(tmp_path, lambda t: woke.release(), lambda _p: None, 0.001, 1.0)
    before = threading.active_count()
    for i in range(20):
        d.on_any_event(FileMovedEvent(f"{jobs}/.a.tmp", f"{jobs}/a{i}.hcl"))
        assert woke.acquire(timeout=5)
    assert threading.active_count() <= before + 1  # not a timer thread per event
    d.stop()
    assert d._thread is not None
    d._thread.join(5)
    assert not d._thread.is_alive()


def test_a_file_renamed_into_place_ends_its_burst_sooner_than_a_write(tmp_path: Path) -> None:
    """After a rename (the file is whole) the burst is over after `quick`; after a plain
    modification (a write may go on) only after `quiet`; jobs/ itself modified changes neither."""
    jobs = str(tmp_path)
    woke = threading.Event()
    d = _Debounce(tmp_path, lambda t: woke.set(), lambda _p: None, 60.0, 120.0, quick=0.001)
    d.on_any_event(DirModifiedEvent(jobs))  # a temporary file made: a burst, not yet whole
    d.on_any_event(FileMovedEvent(f"{jobs}/.a.tmp", f"{jobs}/a.hcl"))
    d.on_any_event(DirModifiedEvent(jobs))
    assert woke.wait(5)  # long before the minute a write is given
    woke.clear()
    d.on_any_event(FileModifiedEvent(f"{jobs}/b.hcl"))
    assert not woke.wait(0.2)
    d.on_any_event(FileClosedEvent(f"{jobs}/b.hcl"))  # closed after writing: whole
    assert woke.wait(5)
    d.stop()
