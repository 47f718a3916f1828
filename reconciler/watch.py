"""Watch the job directory with watchdog as a wake-up only: debounce, then the loop rescans.

The parent directory is watched too, so a replaced or re-created `jobs/` is noticed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler.spec.load import is_job_file


class _Debounce(FileSystemEventHandler):
    def __init__(self, jobs: Path, wake: Callable[[float], None], quiet: float, cap: float) -> None:
        self.jobs = str(jobs)
        self.wake, self.quiet, self.cap = wake, quiet, cap
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._first: float | None = None

    def _relevant(self, ev: FileSystemEvent) -> bool:
        if ev.event_type in ("opened", "closed_no_write"):
            return False  # our own reads
        for raw in (ev.src_path, getattr(ev, "dest_path", "")):
            path = os.fsdecode(raw) if raw else ""
            if not path:
                continue
            if path == self.jobs or (ev.is_directory and os.path.dirname(path) != self.jobs):
                return True
            if os.path.dirname(path) == self.jobs and is_job_file(os.path.basename(path)):
                return True
        return False

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not self._relevant(event):
            return
        with self._lock:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            if self._timer is not None:
                self._timer.cancel()
            delay = max(0.0, min(self.quiet, self._first + self.cap - now))
            self._timer = threading.Timer(delay, self._fire, args=(self._first,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, first: float) -> None:
        with self._lock:
            self._first = self._timer = None
        self.wake(first)


class Watcher:
    """Calls `wake(first_event_monotonic)` after a burst of changes settles."""

    def __init__(
        self, jobs: Path, wake: Callable[[float], None], quiet: float = 0.004, cap: float = 0.5
    ) -> None:
        self.jobs = jobs.resolve()
        self.handler = _Debounce(self.jobs, wake, quiet, cap)
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
        self._watches.append(self.observer.schedule(self.handler, str(self.jobs.parent)))
        try:
            self._inode = os.stat(self.jobs).st_ino
            self._watches.append(self.observer.schedule(self.handler, str(self.jobs)))
        except OSError:
            self._inode = None

    def check(self) -> None:
        """On each rescan: a replaced or re-created directory needs a new watch."""
        try:
            inode: int | None = os.stat(self.jobs).st_ino
        except OSError:
            inode = None
        if inode != self._inode:
            self._schedule()

    def stop(self) -> None:
        self.observer.stop()
