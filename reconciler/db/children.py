"""Child jobs in the store: launches of periodic jobs and dispatches of parameterized ones.

A child is a row in `jobs` with a `parent_id` and one version (the parent's spec as launched);
it is a job like any other until it is garbage-collected (`gc_at`), and its runs and events stay
in history after that.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from reconciler.db.hot import HotPaths


@dataclass(frozen=True)
class Launched:
    id: str
    parent: str
    kind: str  # periodic | catch-up | forced | dispatch
    digest: str
    canonical: str
    source_file: str
    meta: str = ""  # JSON of the dispatch meta
    payload: bytes | None = None
    token: str | None = None


@dataclass(frozen=True)
class ChildRow:
    id: str
    canonical: str
    digest: str
    source_file: str


class ChildJobs(HotPaths):
    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._connection() as db:
            yield db

    def launch(
        self, child: Launched, now: float, event: tuple[str, str],
        anchor: tuple[float, str] | None = None,
    ) -> bool:  # fmt: skip
        """Record a child and its version, and the parent's event (and, for a periodic launch,
        the time its next launch is computed from). False when the id is taken already."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (child.id,)).fetchone():
                return False
            db.execute(
                "INSERT INTO jobs (id, source_file, status, reason, paused, created_at, updated_at,"
                " parent_id, launch_kind, dispatch_meta, payload, idempotency_token)"
                " VALUES (?, ?, 'reconciling', '', 0, ?, ?, ?, ?, ?, ?, ?)",
                (child.id, child.source_file, now, now, child.parent, child.kind, child.meta,
                 child.payload, child.token),
            )  # fmt: skip
            db.execute(
                "INSERT INTO job_versions (job_id, digest, canonical, source_file, git_commit,"
                " first_seen, state, error) VALUES (?, ?, ?, ?, NULL, ?, 'pending', '')",
                (child.id, child.digest, child.canonical, child.source_file, now),
            )
            if anchor is not None:
                self._anchor(db, child.parent, anchor, now)
            self._job_event(db, child.parent, event, now)
        return True

    def anchor(
        self, parent: str, at: float, digest: str, now: float,
        event: tuple[str, str] | None = None,
    ) -> None:  # fmt: skip
        """A periodic parent's next launch is computed from `at` (for version `digest`)."""
        with self._tx() as db:
            self._anchor(db, parent, (at, digest), now)
            if event is not None:
                self._job_event(db, parent, event, now)

    @staticmethod
    def _anchor(db: sqlite3.Connection, parent: str, anchor: tuple[float, str], now: float) -> None:
        db.execute(
            "UPDATE jobs SET periodic_from = ?, periodic_digest = ?, updated_at = ? WHERE id = ?",
            (anchor[0], anchor[1], now, parent),
        )

    @staticmethod
    def _job_event(db: sqlite3.Connection, job: str, event: tuple[str, str], now: float) -> None:
        db.execute(
            "INSERT INTO task_events (at, job_id, group_name, idx, task, type, message)"
            " VALUES (?, ?, '', NULL, '', ?, ?)",
            (now, job, event[0], event[1]),
        )

    def collect(self, ids: Iterable[str], now: float) -> None:
        """Garbage-collect children: they leave the desired state; their history stays."""
        with self._tx() as db:
            db.executemany(
                "UPDATE jobs SET gc_at = ?, updated_at = ? WHERE id = ?",
                [(now, now, i) for i in ids],
            )

    def child_rows(self) -> list[ChildRow]:
        """Every child not yet garbage-collected, with the version it runs."""
        with self._read() as db:
            return [
                ChildRow(*row)
                for row in db.execute(
                    "SELECT j.id, v.canonical, v.digest, j.source_file FROM jobs j"
                    " JOIN job_versions v ON v.job_id = j.id"
                    " WHERE j.parent_id IS NOT NULL AND j.gc_at IS NULL ORDER BY j.id"
                )
            ]

    def dispatched(self, parent: str, token: str) -> str | None:
        """The child a dispatch with this idempotency token made, while it is kept."""
        with self._read() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE parent_id = ? AND idempotency_token = ?"
                " AND gc_at IS NULL",
                (parent, token),
            ).fetchone()
        return str(row[0]) if row else None

    def payload(self, child: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT payload FROM jobs WHERE id = ?", (child,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def has_run(self, job: str, group: str, idx: int, task: str) -> bool:
        """Whether a run of this task instance got as far as its process (its task directory
        was built): Nomad's dispatch hook writes the payload once per task, not per restart."""
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM task_instances WHERE job_id = ? AND group_name = ? AND idx = ?"
                " AND task = ? AND outcome != 'start_failed' LIMIT 1", (job, group, idx, task),
            ).fetchone()  # fmt: skip
        return row is not None
