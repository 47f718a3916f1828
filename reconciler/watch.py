"""Watch the job directory with watchdog as a wake-up only: debounce, then the loop rescans.

The parent directory is watched too, so a replaced or re-created `jobs/` is noticed. The start
of a burst is also reported at once (`early`), so work that does not need the burst to be over
(priming the executor, parsing the first changed file) overlaps the debounce.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from reconciler import trace
from reconciler.spec.jobdir import Journal, is_watched_file

# Events after which a job file is whole: renamed into place (or away), closed after writing,
# removed. A burst whose every file is whole wakes the loop at once; a write may still be under
# way after any other event, and then the burst ends only after `quiet`.
WHOLE = frozenset({"moved", "closed", "deleted"})
# What the watches ask the kernel for: not opens or closes without a write (every scan's own
# reads, and any reader's), which only cost the watch thread time while the loop parses
EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent, FileMovedEvent,
    DirMovedEvent, FileModifiedEvent, DirModifiedEvent, FileClosedEvent,
]  # fmt: skip


class _Debounce(FileSystemEventHandler):
    def __init__(
        self,
        jobs: Path,
        wake: Callable[[float], None],
        early: Callable[[str], None],
        quiet: float,
        cap: float,
        journal: Journal | None = None,
    ) -> None:
        self.jobs = str(jobs)
        self.journal = journal
        self.wake, self.early, self.quiet, self.cap = wake, early, quiet, cap
        # the burst's files whose latest event may leave them mid-write ("": the directory
        # itself made, moved or replaced)
        self._open: set[str] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._first: float | None = None  # the burst's first event, None between bursts
        self._last = 0.0  # its latest
        self._early_file = False  # `early` has had this burst's first job file
        self._ended = -1.0  # when the last burst ended at once

    def _relevant(self, ev: FileSystemEvent) -> str | None:
        """The path that makes this event matter ("" for the directory itself), or None."""
        if ev.event_type in ("opened", "closed_no_write"):
            return None  # our own reads
        for raw in (getattr(ev, "dest_path", ""), ev.src_path):
            path = os.fsdecode(raw) if raw else ""
            if not path:
                continue
            if path == self.jobs or (ev.is_directory and os.path.dirname(path) != self.jobs):
                return ""
            if os.path.dirname(path) == self.jobs and is_watched_file(os.path.basename(path)):
                return path
            if os.path.dirname(path) == self.jobs and os.path.basename(path).startswith(".."):
                return ""  # a ConfigMap mount's `..data` link re-pointed: its job links change
        return None

    def _note(self, ev: FileSystemEvent) -> None:
        """Tell the loader's journal which entries changed (or that it cannot know)."""
        if self.journal is None or ev.event_type in ("opened", "closed_no_write"):
            return
        for raw in (getattr(ev, "dest_path", ""), ev.src_path):
            path = os.fsdecode(raw) if raw else ""
            if path == self.jobs:
                if ev.event_type in ("created", "deleted", "moved"):
                    self.journal.note_all()  # the directory itself replaced
            elif path and os.path.dirname(path) == self.jobs:
                self.journal.note(os.path.basename(path))

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._note(event)
        path = self._relevant(event)
        if path is None:
            return
        dir_modified = not path and event.is_directory and event.event_type == "modified"
        now_first: float | None = None  # set: this event ends its burst, wake the loop now
        with self._cond:
            now = time.monotonic()
            if dir_modified and self._first is None and now - self._ended < self.quiet:
                return  # jobs/ modified by the rename that just woke the loop: its echo
            trace.mark("event")
            starts = self._first is None
            early = starts or (path != "" and not self._early_file)
            self._last = now
            if self._first is None:
                self._first = now
            if path:
                if event.event_type in WHOLE:
                    self._open.discard(path)
                    self._open.discard(os.fsdecode(event.src_path))  # renamed: gone from there
                else:
                    self._open.add(path)
            elif not dir_modified:
                # (jobs/ itself modified: one of its entries changed, which its own event tells)
                self._open.add("")
            if path and not self._open:  # every file of the burst is whole: no quiet period
                now_first, self._first = self._first, None
                self._early_file = False
                self._ended = now
            else:
                self._early_file |= path != ""
                self._cond.notify()  # the thread takes the burst's deadline from here
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(target=self._run, name="debounce", daemon=True)
                    self._thread.start()
        if now_first is not None:
            # the scan that follows at once parses the file itself: no early parse of it
            if starts:
                self.early("")
            trace.mark("wake")
            self.wake(now_first)
        elif early:
            self.early(path)

    def _run(self) -> None:
        """One thread for every burst that is not over at once (a timer per event cost a
        thread start each): it wakes the loop once a burst has been quiet for `quiet`, or
        `cap` after it began."""
        while True:
            with self._cond:
                while self._first is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                first = self._first
                assert first is not None
                due = min(self._last + self.quiet, first + self.cap)
                left = due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._first = None
                self._early_file = False
                self._open.clear()
            trace.mark("wake")
            self.wake(first)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()


class Watcher:
    """Calls `wake(first_event_monotonic)` after a burst of changes settles, and `early(path)`
    at its first event ("": the directory) and at its first job file event."""

    def __init__(
        self,
        jobs: Path,
        wake: Callable[[float], None],
        early: Callable[[str], None] = lambda _path: None,
        quiet: float = 0.004,
        cap: float = 0.5,
        journal: Journal | None = None,
    ) -> None:
        self.jobs = jobs.resolve()
        self.journal = journal
        self.handler = _Debounce(self.jobs, wake, early, quiet, cap, journal)
        self.observer: Any = Observer()
        self._inode: int | None = None
        self._watches: list[Any] = []

    def start(self) -> None:
        self._schedule()
        self.observer.daemon = True
        self.observer.start()

    def _schedule(self) -> None:
        for w in self._watches:
            with contextlib.suppress(KeyError, ValueError):
                self.observer.unschedule(w)
        self._watches = []
        watch = self.observer.schedule
        self._watches.append(watch(self.handler, str(self.jobs.parent), event_filter=EVENTS))
        try:
            self._inode = os.stat(self.jobs).st_ino
            self._watches.append(watch(self.handler, str(self.jobs), event_filter=EVENTS))
        except OSError:
            self._inode = None
        if self.journal is not None:  # a new watch may have missed events: list once in full
            self.journal.attach() if self._inode is not None else self.journal.note_all()

    def check(self) -> None:
        """On each rescan: a replaced or re-created directory needs a new watch."""
        try:
            inode: int | None = os.stat(self.jobs).st_ino
        except OSError:
            inode = None
        if inode != self._inode:
            self._schedule()

    def stop(self) -> None:
        if self.journal is not None:
            self.journal.attached = False
        # watchdog's emitter may still be reading when it is stopped and logs that as an
        # error ("queue_events() called when the thread is inactive"): not one at shutdown.
        logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
        self.handler.stop()
        self.observer.stop()
        with contextlib.suppress(RuntimeError):
            self.observer.join(timeout=2)
