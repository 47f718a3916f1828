"""What wakes a follower (the event stream, `events -f`, `logs -f`): a commit does; a reader of
the store does not (its own reads woke every event stream, forever, and kept dropped streams
alive with their threads)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler.db import reads
from reconciler.db.store import Store
from reconciler.service.follow import store_files, wakes


class _Record(FileSystemEventHandler):
    def __init__(self) -> None:
        self.events: list[FileSystemEvent] = []
        self.lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        with self.lock:
            self.events.append(event)

    def until(self, name: str) -> list[FileSystemEvent]:
        """Every event up to the creation of `name` (inotify keeps their order)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.lock:
                for n, e in enumerate(self.events):
                    if e.event_type == "created" and Path(str(e.src_path)).name == name:
                        seen, self.events = self.events[:n], self.events[n + 1 :]
                        return seen
            time.sleep(0.02)
        raise AssertionError(f"no event for {name} in 30 s")


def test_a_reader_of_the_store_does_not_wake_a_follower_and_a_commit_does(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    writer = Store(db)
    reader = Store(db, readonly=True)
    names = store_files(db)
    recorder = _Record()
    observer = Observer()
    observer.schedule(recorder, str(tmp_path), recursive=False)
    observer.start()
    try:
        for _ in range(3):
            reads.last_event_id(reader)  # a read-only connection opened and closed
        (tmp_path / "barrier-1").touch()
        read_events = recorder.until("barrier-1")
        assert read_events, "a read of a WAL store is seen by inotify"
        assert not [e for e in read_events if wakes(e, names) or wakes(e)]
        with writer.engine.begin() as c:
            c.exec_driver_sql("CREATE TABLE scratch (x)")
        (tmp_path / "barrier-2").touch()
        assert [e for e in recorder.until("barrier-2") if wakes(e, names)]
        (tmp_path / "other").write_text("x")  # written, but not the store
        (tmp_path / "barrier-3").touch()
        other = recorder.until("barrier-3")
        assert [e for e in other if wakes(e)] and not [e for e in other if wakes(e, names)]
    finally:
        observer.stop()
        observer.join(10)
        reader.close()
        writer.close()
