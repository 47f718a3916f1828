"""The watcher's debounce: one wake per burst, and the early calls that let parsing and
priming overlap it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from watchdog.events import (
    DirModifiedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
)

from reconciler.watch import Watcher, _Debounce


def test_a_burst_wakes_once_and_reports_its_start_early(tmp_path: Path) -> None:
    """While a file may be mid-write the burst waits for quiet, then wakes once; its start and
    its first job file are reported at once, so parsing and priming overlap the wait."""
    jobs = str(tmp_path)
    woke = threading.Event()
    wakes: list[float] = []
    early: list[str] = []
    d = _Debounce(tmp_path, lambda t: (wakes.append(t), woke.set()), early.append, 0.05, 1.0)
    d.on_any_event(DirModifiedEvent(jobs))  # the temporary file made
    d.on_any_event(FileModifiedEvent(f"{jobs}/a.hcl"))  # written in place: maybe not whole
    d.on_any_event(FileMovedEvent(f"{jobs}/.b.tmp", f"{jobs}/b.hcl"))
    d.on_any_event(FileMovedEvent(f"{jobs}/.c.tmp", f"{jobs}/c.txt"))  # not a job file
    d.on_any_event(FileClosedNoWriteEvent(f"{jobs}/a.hcl"))  # our own read
    assert early == ["", f"{jobs}/a.hcl"]  # the burst's start, then its first job file
    assert wakes == []  # a.hcl may still be written to
    assert woke.wait(5) and len(wakes) == 1
    woke.clear()
    d.on_any_event(FileModifiedEvent(f"{jobs}/b.hcl"))
    assert early[2:] == [f"{jobs}/b.hcl"]  # a new burst reports again
    assert woke.wait(5) and len(wakes) == 2
    d.stop()


def test_a_file_renamed_into_place_wakes_the_loop_at_once(tmp_path: Path) -> None:
    """A rename into place with nothing else of the burst mid-write wakes the loop before the
    event handler returns, with no quiet period and no early parse (the scan parses it now);
    watchdog's echo of the rename (jobs/ modified) wakes nothing more."""
    jobs = str(tmp_path)
    wakes: list[float] = []
    early: list[str] = []
    d = _Debounce(tmp_path, wakes.append, early.append, 60.0, 120.0)
    d.on_any_event(DirModifiedEvent(jobs))  # the temporary file made
    assert wakes == [] and early == [""]  # the burst began: the executor may prime
    d.on_any_event(FileMovedEvent(f"{jobs}/.a.tmp", f"{jobs}/a.hcl"))
    assert len(wakes) == 1 and early == [""]
    d.on_any_event(DirModifiedEvent(jobs))  # the rename's echo
    d.on_any_event(FileDeletedEvent(f"{jobs}/b.hcl"))  # a removal is whole too
    assert len(wakes) == 2 and early == ["", ""]
    assert d._first is None and d._thread is not None  # nothing left waiting for quiet
    d.stop()


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
        d.on_any_event(FileModifiedEvent(f"{jobs}/a{i}.hcl"))  # each waits for quiet
        assert woke.acquire(timeout=5)
    assert threading.active_count() <= before + 1  # not a timer thread per event
    d.stop()
    assert d._thread is not None
    d._thread.join(5)
    assert not d._thread.is_alive()


def test_a_file_written_in_place_wakes_once_it_is_closed(tmp_path: Path) -> None:
    """After a plain modification (a write may go on) the burst ends only after `quiet`, or
    when the file is closed after writing; jobs/ itself modified changes neither."""
    jobs = str(tmp_path)
    woke = threading.Event()
    d = _Debounce(tmp_path, lambda t: woke.set(), lambda _p: None, 60.0, 120.0)
    d.on_any_event(FileCreatedEvent(f"{jobs}/b.hcl"))
    d.on_any_event(DirModifiedEvent(jobs))
    d.on_any_event(FileModifiedEvent(f"{jobs}/b.hcl"))
    assert not woke.wait(0.2)
    d.on_any_event(FileClosedEvent(f"{jobs}/b.hcl"))  # closed after writing: whole
    assert woke.is_set()
    woke.clear()
    d.on_any_event(FileModifiedEvent(f"{jobs}/c.hcl"))
    d.on_any_event(FileMovedEvent(f"{jobs}/.d.tmp", f"{jobs}/d.hcl"))  # c.hcl still open
    assert not woke.wait(0.2)
    d.stop()


def test_reading_a_job_file_wakes_nothing(tmp_path: Path) -> None:
    """The watches do not ask for opens and reads: a scan's own reads cost the watch thread
    nothing. A write after the reads is seen, and nothing of the reads before it."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "a.hcl").write_text("job")
    w = Watcher(jobs, lambda _t: None)
    seen: list[str] = []
    real = w.handler.on_any_event

    def record(event: FileSystemEvent) -> None:
        seen.append(f"{event.event_type} {os.path.basename(os.fsdecode(event.src_path))}")
        real(event)

    w.handler.on_any_event = record  # type: ignore[method-assign]
    w.start()
    try:
        for _ in range(3):
            (jobs / "a.hcl").read_bytes()
        (jobs / "b.hcl").write_text("job")
        deadline = time.monotonic() + 20
        while "closed b.hcl" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "closed b.hcl" in seen
        assert not [e for e in seen if e.endswith("a.hcl")]
    finally:
        w.stop()
