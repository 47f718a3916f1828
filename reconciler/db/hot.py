"""The store's hot paths in plain SQL: each pass and each task start or exit goes through
these, so they skip the ORM (a start costs one short transaction, a batch of starts one too)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.db.snapshot import SlotKey, ports_text

log = logging.getLogger("reconciler")


@dataclass(frozen=True)
class Event:
    type: str
    message: str = ""


@dataclass(frozen=True)
class ProblemRow:
    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    severity: str


@dataclass(frozen=True)
class VersionRow:
    job_id: str
    digest: str
    canonical: str
    source_file: str


class HandleLike(Protocol):
    """The executor's TaskHandle, as the store sees it (db does not import executor)."""

    @property
    def pid(self) -> int: ...
    @property
    def shim_pid(self) -> int: ...
    @property
    def shim_start_ticks(self) -> int: ...
    @property
    def boot_id(self) -> str: ...
    @property
    def cgroup(self) -> str: ...
    @property
    def task_dir(self) -> str: ...
    @property
    def started_at(self) -> float: ...


@dataclass(frozen=True)
class Started:
    key: SlotKey
    spec_digest: str
    version_digest: str
    handle: HandleLike
    events: Sequence[Event]
    new_spec: bool  # a changed spec starts a fresh restart window
    reserve: tuple[int, int, int] = (0, 0, 0)  # MHz, MB, cores held while the slot holds
    core_ids: tuple[int, ...] = ()  # which cores, exclusively
    ports: tuple[tuple[str, int], ...] = ()  # the group instance's host ports, by label


@dataclass(frozen=True)
class ScanRecord:
    """What `record_scan` writes, kept for the next transaction of the thread that scanned."""

    versions: Sequence[VersionRow]
    problems: Sequence[ProblemRow]
    now: float
    commit_of: Callable[[str], str | None]
    thread: int
    written: Callable[[], None] | None = None  # called once the record is committed


@dataclass(frozen=True)
class ExitRecord:
    """What `finished` writes, kept for the next transaction of the thread that deferred it."""

    instance_id: int
    args: dict[str, Any]
    thread: int


class HotPaths:
    # A scan's record waiting for its thread's next transaction (`defer_scan`)
    _deferred: ScanRecord | None = None
    # Exits waiting likewise (`defer_finished`), in the order they came
    _deferred_exits: tuple[ExitRecord, ...] = ()
    # instance id -> its cgroup record and task dir as the executor's handle holds them: the
    # snapshot (`Store.observed`) holds these strings instead of copies read from the rows
    # (~0.6 kB a task: a cgroup v1 record names six controllers' directories)
    _paths: dict[int, tuple[str, str]]

    def _connection(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    @contextmanager
    def _tx(self, take_scan: bool = True) -> Iterator[sqlite3.Connection]:
        with self._connection() as raw:
            raw.execute("BEGIN IMMEDIATE")
            me = threading.get_ident()
            scan = self._deferred if take_scan else None
            exits = tuple(e for e in self._deferred_exits if e.thread == me)
            try:
                # exits first: a start in this transaction moves their slots on
                if exits:  # (only its thread sets or takes its own)
                    self._deferred_exits = tuple(e for e in self._deferred_exits if e.thread != me)
                    for e in exits:
                        self._write_finished(raw, e.instance_id, **e.args)
                if scan is not None and scan.thread == me:
                    self._deferred = None
                    self._write_scan(raw, scan)
                else:
                    scan = None
                yield raw
                raw.execute("COMMIT")  # (a full disk fails here: what it took is kept)
            except BaseException:
                if scan is not None and self._deferred is None:
                    self._deferred = scan  # not written: the next transaction writes it
                if exits:
                    self._deferred_exits = exits + self._deferred_exits
                with contextlib.suppress(sqlite3.Error):  # (the pool drops the connection)
                    raw.execute("ROLLBACK")
                raise
        if scan is not None and scan.written is not None:
            try:
                scan.written()
            except Exception:  # bookkeeping: never the fault of the write it followed
                log.exception("after recording a scan")

    def defer_scan(
        self,
        versions: Sequence[VersionRow],
        problems: Sequence[ProblemRow],
        now: float,
        commit_of: Callable[[str], str | None] = lambda _f: None,
        written: Callable[[], None] | None = None,
    ) -> None:
        """`record_scan`, written in this thread's next transaction (or `flush_scan`): a
        start waits for no commit of its own, and the version rows it refers to are written
        with it. A later scan replaces an unwritten one only after writing it. `written` is
        called after the commit that wrote it."""
        self.flush_scan()
        self._deferred = ScanRecord(versions, problems, now, commit_of, threading.get_ident(),
                                    written)  # fmt: skip

    def flush_scan(self) -> bool:
        """Write a deferred scan record and deferred exits now, if they are still waiting
        (True: the scan record was)."""
        scan = self._deferred
        if scan is None or scan.thread != threading.get_ident():
            self.flush_exits()
            return False
        with self._tx():
            pass  # (the transaction writes it first)
        return True

    def unwritten_exits(self) -> int:
        """Exits deferred and not written yet (a fault keeps them; read from any thread)."""
        return len(self._deferred_exits)

    def flush_exits(self) -> None:
        """Write this thread's deferred exits now (before a read that must see them)."""
        me = threading.get_ident()
        if any(e.thread == me for e in self._deferred_exits):
            with self._tx(take_scan=False):
                pass

    @staticmethod
    def _insert_events(
        db: sqlite3.Connection, key: SlotKey, instance_id: int | None, events: Iterable[Event],
        now: float,
    ) -> None:  # fmt: skip
        db.executemany(
            "INSERT INTO task_events (at, job_id, group_name, idx, task, instance_id, type, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(now, key.job, key.group, key.idx, key.task, instance_id, e.type, e.message) for e in events],
        )  # fmt: skip

    @staticmethod
    def _vid(db: sqlite3.Connection, job_id: str, digest: str) -> int | None:
        row = db.execute(
            "SELECT id FROM job_versions WHERE job_id = ? AND digest = ?", (job_id, digest)
        ).fetchone()
        return int(row[0]) if row else None

    def record_scan(
        self,
        versions: Sequence[VersionRow],
        problems: Sequence[ProblemRow],
        now: float,
        commit_of: Callable[[str], str | None] = lambda _f: None,
    ) -> None:
        """Remember every distinct spec ever seen and the current problems of each file; a
        problem not seen in this scan (fixed, or its file gone) is cleared."""
        with self._tx() as db:  # (an earlier scan's deferred record first)
            self._write_scan(db, ScanRecord(versions, problems, now, commit_of, 0))

    def _write_scan(self, db: sqlite3.Connection, scan: ScanRecord) -> None:
        versions, problems, now, commit_of = scan.versions, scan.problems, scan.now, scan.commit_of
        for v in versions:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, source_file, status, reason, paused,"
                " created_at, updated_at) VALUES (?, ?, 'reconciling', '', 0, ?, ?)",
                (v.job_id, v.source_file, now, now),
            )
            db.execute(
                "UPDATE jobs SET source_file = ?, updated_at = ?, status = CASE status"
                " WHEN 'removed' THEN 'reconciling' ELSE status END"
                " WHERE id = ? AND (source_file != ? OR status = 'removed')",
                (v.source_file, now, v.job_id, v.source_file),
            )
            commit = commit_of(v.source_file)
            if (vid := self._vid(db, v.job_id, v.digest)) is None:
                db.execute(
                    "INSERT INTO job_versions (job_id, digest, canonical, source_file,"
                    " git_commit, first_seen, state, error) VALUES (?, ?, ?, ?, ?, ?, 'pending', '')",
                    (v.job_id, v.digest, v.canonical, v.source_file, commit, now),
                )  # fmt: skip
            elif commit is not None:  # seen before without its commit (git was moving)
                db.execute("UPDATE job_versions SET git_commit = ? WHERE id = ?"
                           " AND git_commit IS NULL", (commit, vid))  # fmt: skip
        open_rows = {
            (f, line, path, msg): rid
            for rid, f, line, path, msg in db.execute(
                "SELECT id, file, line, path, message FROM spec_errors WHERE cleared_at IS NULL"
            )
        }
        seen = set()
        for p in problems:
            k = (p.file, p.line, p.path, p.message)
            seen.add(k)
            if (rid := open_rows.get(k)) is not None:
                db.execute("UPDATE spec_errors SET last_seen = ? WHERE id = ?", (now, rid))
            else:
                db.execute(
                    "INSERT INTO spec_errors (file, line, col, path, message, severity,"
                    " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (p.file, p.line, p.column, p.path, p.message, p.severity, now, now),
                )
        for k, rid in open_rows.items():
            if k not in seen:
                db.execute("UPDATE spec_errors SET cleared_at = ? WHERE id = ?", (now, rid))

    def fill_commits(self, commits: dict[tuple[str, str], str]) -> None:
        """The commit of versions recorded without one ((job id, digest) -> commit)."""
        with self._tx() as db:
            db.executemany(
                "UPDATE job_versions SET git_commit = ? WHERE job_id = ? AND digest = ?"
                " AND git_commit IS NULL",
                [(c, job, digest) for (job, digest), c in commits.items()],
            )

    def attempt(self, attempts: dict[str, str], now: float) -> None:
        """Record the version each job is now trying to run (job id -> digest)."""
        with self._tx() as db:
            for job_id, digest in attempts.items():
                db.execute(
                    "UPDATE jobs SET attempted_version_id = (SELECT id FROM job_versions"
                    " WHERE job_id = ? AND digest = ?), attempted_at = ?, updated_at = ? WHERE id = ?",
                    (job_id, digest, now, now, job_id),
                )
                db.execute(  # a promotion belongs to one attempt: a version tried again starts over
                    "UPDATE job_versions SET state = 'pending' WHERE job_id = ? AND digest != ?"
                    " AND state = 'promoted'", (job_id, digest),
                )  # fmt: skip

    def set_status(self, statuses: dict[str, tuple[str, str]], now: float) -> None:
        """A job that becomes blocked says why in its history too (Nomad's placement failure)."""
        with self._tx() as db:
            db.executemany(
                "UPDATE jobs SET status = ?, reason = ?, updated_at = ?, finished_at = CASE WHEN"
                " ? IN ('complete', 'failed') THEN coalesce(finished_at, ?) END WHERE id = ?",
                [(status, reason, now, status, now, job_id)
                 for job_id, (status, reason) in statuses.items()],
            )  # fmt: skip
            db.executemany(
                "INSERT INTO task_events (at, job_id, group_name, idx, task, type, message)"
                " VALUES (?, ?, '', NULL, '', 'Placement Failure', ?)",
                [(now, job_id, reason) for job_id, (status, reason) in statuses.items()
                 if status == "blocked"],
            )  # fmt: skip

    def started(self, batch: Sequence[Started], now: float) -> list[int]:
        """Commit the handles of started tasks (before they are reported running)."""
        ids = []
        with self._tx() as db:
            for s in batch:
                k, h = s.key, s.handle
                vid = self._vid(db, k.job, s.version_digest)
                cur = db.execute(
                    "INSERT INTO task_instances (job_id, group_name, idx, task, version_id,"
                    " spec_digest, pid, shim_pid, shim_start_ticks, boot_id, cgroup, task_dir,"
                    " started_at, oom_killed, outcome, error)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'running', '')",
                    (k.job, k.group, k.idx, k.task, vid, s.spec_digest, h.pid, h.shim_pid,
                     h.shim_start_ticks, h.boot_id, h.cgroup, h.task_dir, h.started_at),
                )  # fmt: skip
                iid = int(cur.lastrowid or 0)
                db.execute(
                    "INSERT INTO task_slots (job_id, group_name, idx, task, state, reason,"
                    " version_id, spec_digest, restarts, instance_id, stop_intent, updated_at,"
                    " cpu, memory, cores, core_ids, ports)"
                    " VALUES (?, ?, ?, ?, 'running', '', ?, ?, 0, ?, '', ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (job_id, group_name, idx, task) DO UPDATE SET"
                    " state = 'running', reason = '', version_id = excluded.version_id,"
                    " spec_digest = excluded.spec_digest, instance_id = excluded.instance_id,"
                    " next_start_at = NULL, stop_intent = '', updated_at = excluded.updated_at,"
                    " cpu = excluded.cpu, memory = excluded.memory, cores = excluded.cores,"
                    " core_ids = excluded.core_ids, ports = excluded.ports,"
                    " restarts = CASE WHEN ? THEN 0 ELSE restarts END,"
                    " window_start = CASE WHEN ? THEN NULL ELSE window_start END,"
                    " reschedule = CASE WHEN ? THEN '' ELSE reschedule END",
                    (k.job, k.group, k.idx, k.task, vid, s.spec_digest, iid, now, *s.reserve,
                     ",".join(map(str, s.core_ids)), ports_text(s.ports), s.new_spec, s.new_spec,
                     s.new_spec),
                )  # fmt: skip
                self._insert_events(db, k, iid, s.events, now)
                ids.append(iid)
        for iid, s in zip(ids, batch, strict=True):
            self._paths[iid] = (s.handle.cgroup, s.handle.task_dir)
        return ids

    def finished(
        self, instance_id: int, *, exit_code: int, signal: int, oom: bool, error: str,
        finished_at: float, outcome: str, now: float, slot_state: str | None,
        next_start_at: float | None = None, restarts: int | None = None,
        window_start: float | None = None, reason: str = "", events: Sequence[Event] = (),
        reschedule: str | None = None,
    ) -> SlotKey | None:  # fmt: skip
        """Close a run; move its slot on (or delete it when slot_state is None)."""
        self._paths.pop(instance_id, None)
        with self._tx() as db:
            return self._write_finished(
                db, instance_id, exit_code=exit_code, signal=signal, oom=oom, error=error,
                finished_at=finished_at, outcome=outcome, now=now, slot_state=slot_state,
                next_start_at=next_start_at, restarts=restarts, window_start=window_start,
                reason=reason, events=events, reschedule=reschedule,
            )  # fmt: skip

    def defer_finished(self, key: SlotKey, instance_id: int, **args: Any) -> SlotKey:
        """`finished` for a run the caller knows is open (its slot, as just read, holds it),
        written first in this thread's next transaction, or `flush_exits`, or before its next
        `observed`: a restart's start is launched before the exit it follows is committed, and
        both are committed together. Until then only this thread sees the exit: the task's
        exit-status file keeps it for a service that crashes meanwhile (the executor keeps a
        replaced run's file beside the next run's)."""
        self._paths.pop(instance_id, None)
        self._deferred_exits = (*self._deferred_exits,
                                ExitRecord(instance_id, args, threading.get_ident()))  # fmt: skip
        return key

    @classmethod
    def _write_finished(
        cls, db: sqlite3.Connection, instance_id: int, *, exit_code: int, signal: int, oom: bool,
        error: str, finished_at: float, outcome: str, now: float, slot_state: str | None,
        next_start_at: float | None = None, restarts: int | None = None,
        window_start: float | None = None, reason: str = "", events: Sequence[Event] = (),
        reschedule: str | None = None,
    ) -> SlotKey | None:  # fmt: skip
        row = db.execute(
            "SELECT job_id, group_name, idx, task, finished_at FROM task_instances WHERE id = ?",
            (instance_id,),
        ).fetchone()
        if row is None or row[4] is not None:
            return None
        key = SlotKey(row[0], row[1], row[2], row[3])
        db.execute(
            "UPDATE task_instances SET finished_at = ?, exit_code = ?, signal = ?,"
            " oom_killed = ?, error = ?, outcome = ? WHERE id = ?",
            (finished_at, exit_code, signal or None, oom, error, outcome, instance_id),
        )
        cls._insert_events(db, key, instance_id, events, now)
        where = "WHERE job_id = ? AND group_name = ? AND idx = ? AND task = ? AND instance_id = ?"
        args = (*key, instance_id)
        if slot_state is None:
            db.execute(f"DELETE FROM task_slots {where}", args)
        elif restarts is None:
            db.execute(
                "UPDATE task_slots SET state = ?, reason = ?, next_start_at = ?,"
                f" instance_id = NULL, stop_intent = '', updated_at = ? {where}",
                (slot_state, reason, next_start_at, now, *args),
            )
        else:
            db.execute(
                "UPDATE task_slots SET state = ?, reason = ?, next_start_at = ?, restarts = ?,"
                f" window_start = ?, instance_id = NULL, stop_intent = '', updated_at = ? {where}",
                (slot_state, reason, next_start_at, restarts, window_start, now, *args),
            )
        if reschedule is not None and slot_state is not None:
            db.execute(
                "UPDATE task_slots SET reschedule = ? WHERE job_id = ? AND group_name = ?"
                " AND idx = ? AND task = ?", (reschedule, *key),
            )  # fmt: skip
        return key

    def stopping(self, key: SlotKey, intent: str, now: float, events: Sequence[Event]) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT instance_id FROM task_slots WHERE job_id = ? AND group_name = ? AND idx = ?"
                " AND task = ?",
                tuple(key),
            ).fetchone()
            if row is None:
                return
            db.execute(
                "UPDATE task_slots SET state = 'stopping', stop_intent = ?, updated_at = ?"
                " WHERE job_id = ? AND group_name = ? AND idx = ? AND task = ?",
                (intent, now, *key),
            )
            self._insert_events(db, key, row[0], events, now)
