"""Following files as they grow, woken by inotify (watchdog) instead of polling: a task's log
across rotated files, and the store (its WAL grows on every commit) for new events.

Used by the HTTP API's streams and by `reconciler logs -f` / `reconciler events -f`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

# What a writer does to a file. Not "closed", "attrib" or "opened", nor the directory's own
# events: every read-only SQLite connection causes those on the WAL, so a follower woken by
# them woke itself with its own read, forever (bench/results/api.md).
_WRITES = frozenset({"modified", "created", "moved", "deleted"})


def wakes(event: FileSystemEvent, names: frozenset[str] | None = None) -> bool:
    """Whether a watchdog event is content written to a file (of `names`, if given)."""
    if event.is_directory or event.event_type not in _WRITES:
        return False
    if names is None:
        return True
    paths = (event.src_path, getattr(event, "dest_path", "") or "")
    return any(os.path.basename(os.fsdecode(p)) in names for p in paths if p)


class _Wake(FileSystemEventHandler):
    def __init__(self, flag: threading.Event, names: frozenset[str] | None) -> None:
        self.flag, self.names = flag, names

    def on_any_event(self, event: FileSystemEvent) -> None:
        if wakes(event, self.names):
            self.flag.set()


class Changes:
    """Something was written in a directory (not recursive), or only to the files `names`.
    Use as a context manager:

        with Changes(d) as changes:
            while True:
                read what is new
                changes.wait(10)
    """

    def __init__(self, directory: Path, names: frozenset[str] | None = None) -> None:
        self.directory, self.names = directory, names
        self._flag = threading.Event()
        self._observer: Any = None

    def __enter__(self) -> Changes:
        observer = Observer(timeout=1.0)
        observer.daemon = True
        observer.schedule(_Wake(self._flag, self.names), str(self.directory), recursive=False)
        observer.start()
        self._observer = observer
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._observer is not None:
            self._observer.stop()
            with contextlib.suppress(RuntimeError):
                self._observer.join(2)

    def wait(self, timeout: float) -> bool:
        """Until something changed since the last wait (or the timeout); True if it did."""
        changed = self._flag.wait(timeout)
        self._flag.clear()
        return changed


def store_files(db: Path) -> frozenset[str]:
    """The files a commit writes: the store and its WAL (never the -shm readers touch)."""
    return frozenset({db.name, f"{db.name}-wal"})


def log_dir(data_dir: Path, job: str, group: str, idx: int) -> Path:
    return data_dir / "allocs" / job / group / str(idx) / "alloc" / "logs"


def log_files(directory: Path, task: str, stream: str) -> list[tuple[int, Path]]:
    """A task's log files of one stream, oldest first: TASK.STREAM.N (Nomad's names)."""
    prefix = f"{task}.{stream}."
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            n = entry.name.removeprefix(prefix)
            if entry.name.startswith(prefix) and n.isdigit():
                out.append((int(n), Path(entry.path)))
    return sorted(out)


class LogTail:
    """Reads a task's output from a position on, across rotations: when a newer file appears,
    the rest of the current one is read and then the newer one from its start."""

    def __init__(self, directory: Path, task: str, stream: str, origin: str = "start",
                 offset: int = 0) -> None:  # fmt: skip
        self.directory, self.task, self.stream = directory, task, stream
        files = log_files(directory, task, stream)
        self.index, self.pos = (files[0][0] if files else 0), 0
        if origin == "end" and files:
            self.index = files[-1][0]
            self.pos = max(0, files[-1][1].stat().st_size - offset)
        elif offset:
            self.pos = offset

    @property
    def name(self) -> str:
        return f"alloc/logs/{self.task}.{self.stream}.{self.index}"

    def read(self, limit: int = 1 << 20) -> bytes:
        """What was written since the last read (at most about `limit` bytes)."""
        out = bytearray()
        for n, path in log_files(self.directory, self.task, self.stream):
            if n < self.index:
                continue
            if n > self.index:
                self.index, self.pos = n, 0
            try:
                with open(path, "rb") as f:
                    f.seek(self.pos)
                    chunk = f.read(max(0, limit - len(out)))
            except FileNotFoundError:
                continue
            self.pos += len(chunk)
            out += chunk
            if len(out) >= limit:
                break
        return bytes(out)
