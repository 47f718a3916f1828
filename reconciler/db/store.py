"""The store: one transaction per method, so a state change and the history that explains it
are written together or not at all. Plain sqlite3 throughout: the running service never loads
SQLAlchemy (see db/engine.py); `engine` and `session` make one on demand for the CLI's
history queries and for tests."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from reconciler.db import engine as db_engine
from reconciler.db import held
from reconciler.db.children import ChildJobs
from reconciler.db.hot import Event, ProblemRow, Started, VersionRow
from reconciler.db.registry import Registry, read_checks
from reconciler.db.snapshot import (
    ChildRecord,
    InstanceRecord,
    JobRecord,
    Observed,
    SlotKey,
    SlotRecord,
    core_ids_of,
    ports_of,
    ports_text,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

__all__ = ["Event", "ProblemRow", "Started", "Store", "VersionRow"]

SLOT_WHERE = "job_id = ? AND group_name = ? AND idx = ? AND task = ?"
# What `set_slot` may change (the column names are put into SQL text: never a caller's string)
SLOT_FIELDS = frozenset({
    "state", "reason", "version_id", "spec_digest", "restarts", "window_start", "next_start_at",
    "instance_id", "stop_intent", "cpu", "memory", "cores", "reschedule",
})  # fmt: skip


def _intern(text: Any) -> Any:
    """A string read from the store as the one held already (None stays None)."""
    return sys.intern(text) if type(text) is str else text


class Store(ChildJobs, Registry):
    def __init__(self, path: Path, *, readonly: bool = False, migrate_apart: bool = False) -> None:
        """`migrate_apart`: a store that needs migrating is migrated by a child process (the
        service: SQLAlchemy and Alembic stay out of its memory)."""
        self.path = path
        self.readonly = readonly
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise FileNotFoundError(
                f"no state store at {path} (has `reconciler run` been started?)"
            )
        self.pool = db_engine.Pool(path, readonly=readonly)
        self._engine: Engine | None = None
        self._paths = {}
        if not readonly:
            db_engine.check(self.pool, path)
            db_engine.upgrade(self.pool, apart=migrate_apart)
            with self.pool.connection() as conn:
                held.install(conn)  # a running total for admission: no sum of every slot

    @property
    def engine(self) -> Engine:
        """An SQLAlchemy engine on this store, made on first use (the CLI, tests)."""
        if self._engine is None:
            self._engine = db_engine.make_engine(self.path, readonly=self.readonly)
        return self._engine

    def close(self) -> None:
        self.pool.close()
        if self._engine is not None:
            self._engine.dispose()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self.pool.connection() as conn:
            yield conn

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """One read: each row as a dict by column name (`:name` parameters)."""
        with self._connection() as db:
            cur = db.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur]

    def manual_checkpoints(self) -> None:
        """From now on no commit checkpoints the WAL inline: the caller does (`checkpoint`)."""
        self.pool.manual_checkpoints = True
        self.pool.close()  # (idle connections were made without it)

    def checkpoint(self) -> tuple[int, int]:
        """A passive checkpoint (never waits for readers): (pages in the WAL, pages copied
        into the database). Fewer copied than present: a reader holds the rest back."""
        with self._connection() as raw:
            _busy, pages, done = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(pages), int(done)

    def session(self) -> Session:
        from sqlalchemy.orm import Session

        return Session(self.engine, expire_on_commit=False)

    # ---- reading ----

    def observed(self, live: Iterable[int] = (), jobs: Collection[str] | None = None) -> Observed:
        """One read transaction of plain tuples: this runs every pass, so it skips the ORM.
        With `jobs`, only those jobs' rows are read (a scoped pass), after this thread's
        deferred exits are written."""
        self.flush_exits()
        if jobs is not None and len(jobs) > 500:
            jobs = None  # more is harmless to a scoped plan; SQLite limits bound parameters
        where, args = db_engine.among(jobs or ())
        with self._connection() as raw:

            def q(sql: str, column: str) -> Any:
                if jobs is None:
                    return raw.execute(sql)
                return raw.execute(f"{sql} {'AND' if ' WHERE ' in sql else 'WHERE'} {column}{where}", args)

            rejected: dict[str, set[str]] = {}
            for job_id, digest in q(
                "SELECT job_id, digest FROM job_versions WHERE state = 'rejected'", "job_id"
            ):
                rejected.setdefault(job_id, set()).add(digest)
            records: dict[str, JobRecord] = {}
            for (jid, src, status, paused, applied, attempted, attempted_at, reason, canon,
                 parent, p_from, p_digest, finished, t_state) in q(
                "SELECT j.id, j.source_file, j.status, j.paused, va.digest, vt.digest,"
                " j.attempted_at, j.reason, va.canonical, j.parent_id, j.periodic_from,"
                " j.periodic_digest, j.finished_at, vt.state FROM jobs j"
                " LEFT JOIN job_versions va ON va.id = j.applied_version_id"
                " LEFT JOIN job_versions vt ON vt.id = j.attempted_version_id", "j.id"
            ):  # fmt: skip
                records[jid] = JobRecord(
                    _intern(jid), src, _intern(status), bool(paused), _intern(applied),
                    _intern(attempted), canon,
                    frozenset(rejected.get(jid, ())), attempted_at, reason, parent or "",
                    p_from, p_digest or "", finished, t_state == "promoted",
                )  # fmt: skip
            # Strings many records repeat (names, states, digests, the boot id) are interned:
            # the running tasks' handles and the pass's records then hold one of each. A
            # task's cgroup and directory are its handle's own strings (`_paths`).
            known = self._paths
            paths: dict[int, tuple[str, str]] = {}
            instances: dict[int, InstanceRecord] = {}
            for row in q(
                "SELECT i.id, i.pid, i.shim_pid, i.shim_start_ticks, i.boot_id, i.cgroup,"
                " i.task_dir, i.started_at, i.spec_digest, v.digest FROM task_instances i"
                " LEFT JOIN job_versions v ON v.id = i.version_id"
                " WHERE i.finished_at IS NULL", "i.job_id"
            ):  # fmt: skip
                pair = known.get(row[0])
                if pair is None or pair != (row[5], row[6]):
                    pair = (row[5], row[6])
                paths[row[0]] = pair
                instances[row[0]] = InstanceRecord(
                    row[0], row[1] or 0, row[2] or 0, row[3] or 0, _intern(row[4] or ""),
                    *pair, row[7], _intern(row[8]), _intern(row[9] or ""),
                )  # fmt: skip
            if jobs is None:  # every running instance: those of no other one go
                self._paths = paths
            else:
                known.update(paths)
            slots: dict[SlotKey, SlotRecord] = {}
            for (job, group, idx, task, state, spec_digest, version, restarts, window,
                 next_at, reason, instance_id, intent, cpu, memory, cores, core_ids, ports,
                 resched) in q(
                "SELECT s.job_id, s.group_name, s.idx, s.task, s.state, s.spec_digest, v.digest,"
                " s.restarts, s.window_start, s.next_start_at, s.reason, s.instance_id,"
                " s.stop_intent, s.cpu, s.memory, s.cores, s.core_ids, s.ports, s.reschedule"
                " FROM task_slots s LEFT JOIN job_versions v ON v.id = s.version_id",
                "s.job_id",
            ):  # fmt: skip
                key = SlotKey(_intern(job), _intern(group), idx, _intern(task))
                slots[key] = SlotRecord(
                    key, _intern(state), _intern(spec_digest), _intern(version or ""), restarts,
                    window, next_at, reason,
                    instances.get(instance_id), intent, cpu, memory, cores,
                    core_ids_of(core_ids), ports_of(ports), resched,
                )  # fmt: skip
            # what every job holds of the node, whatever this read's scope (admission)
            cpu, memory, cores = held.read(raw)  # kept by triggers: no sum of every slot
            held_cores = frozenset(c for (ids,) in raw.execute(
                f"SELECT core_ids FROM task_slots WHERE core_ids != '' AND state IN {held.HOLDING}"
            ) for c in core_ids_of(ids))  # fmt: skip
            held_ports = self._held_ports(raw)
            children: dict[str, list[ChildRecord]] = {}
            for cid, parent, status, finished in raw.execute(
                "SELECT id, parent_id, status, finished_at FROM jobs"
                " WHERE parent_id > '' AND gc_at IS NULL"  # (its index: not a scan of every job)
            ):
                children.setdefault(parent, []).append(ChildRecord(cid, parent, status, finished))
            checks = read_checks(raw, jobs)
        return Observed(records, slots, frozenset(live), (cpu, memory, cores),
                        {p: tuple(c) for p, c in children.items()}, checks, held_cores,
                        held_ports)  # fmt: skip

    # (ports_version, every held host port -> its group instance), as last read
    _ports_cache: tuple[int, Mapping[int, str]] | None = None

    def _held_ports(self, raw: sqlite3.Connection) -> Mapping[int, str]:
        """Every host port a holding slot holds, read again only when the triggers say one
        changed (a pass beside 1,000 instances with ports would read them all otherwise)."""
        version = held.ports_version(raw)
        cache = self._ports_cache
        if version is not None and cache is not None and cache[0] == version:
            return cache[1]
        ports = MappingProxyType({port: f"{job}/{group}/{idx}" for job, group, idx, text in raw.execute(
            "SELECT job_id, group_name, idx, ports FROM task_slots"
            f" WHERE ports != '' AND state IN {held.HOLDING}"
            " ORDER BY state = 'running'"  # two holders (recorded before ports were
            # checked): the running one keeps it, the other moves at its next start
        ) for _label, port in ports_of(text)})  # fmt: skip
        if version is not None:
            self._ports_cache = (version, ports)
        return ports

    def promote(self, job_ids: Iterable[str], now: float) -> None:
        with self._tx() as db:
            for job_id in job_ids:
                self._promote(db, job_id, now)

    @staticmethod
    def _promote(db: sqlite3.Connection, job_id: str, now: float) -> None:
        row = db.execute(
            "SELECT applied_version_id, attempted_version_id FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None or row[1] is None:
            return
        applied, attempted = row
        if applied and applied != attempted:
            db.execute(
                "UPDATE job_versions SET state = 'superseded' WHERE id = ? AND state = 'applied'",
                (applied,),
            )
        db.execute(
            "UPDATE jobs SET applied_version_id = ?, updated_at = ? WHERE id = ?",
            (attempted, now, job_id),
        )
        db.execute("UPDATE job_versions SET state = 'applied' WHERE id = ?", (attempted,))

    def promote_canaries(self, job_id: str, now: float, how: str) -> None:
        """The attempted version's canaries are promoted: the rest of its instances may be
        updated now. Its healthy_deadline counts again from here."""
        with self._tx() as db:
            if (attempted := _attempted_version(db, job_id)) is None:
                return
            db.execute(
                "UPDATE job_versions SET state = 'promoted' WHERE id = ? AND state = 'pending'",
                (attempted,),
            )
            db.execute("UPDATE jobs SET attempted_at = ?, updated_at = ? WHERE id = ?",
                       (now, now, job_id))  # fmt: skip
            self._job_event(db, job_id, ("Canaries Promoted", how), now)

    def reject(self, job_id: str, reason: str, now: float) -> None:
        """The attempted version failed: never retried until the file changes again."""
        with self._tx() as db:
            if (attempted := _attempted_version(db, job_id)) is None:
                return
            db.execute(
                "UPDATE job_versions SET state = 'rejected', error = ? WHERE id = ?",
                (reason, attempted),
            )
            self._job_event(db, job_id, ("Rolled Back", reason), now)

    def set_paused(self, job_id: str, paused: bool, now: float) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET paused = ?, updated_at = ? WHERE id = ?", (paused, now, job_id)
            )
            if cur.rowcount == 0:
                return False
            event = ("Job Stopped" if paused else "Job Started", "by operator")
            self._job_event(db, job_id, event, now)
            return True

    # ---- task slots and instances ----

    @staticmethod
    def _slot_id(db: sqlite3.Connection, key: SlotKey, now: float) -> int:
        """The slot's row id; a pending slot is made when there is none."""
        row = db.execute(f"SELECT id FROM task_slots WHERE {SLOT_WHERE}", tuple(key)).fetchone()
        if row is not None:
            return int(row[0])
        cur = db.execute(
            "INSERT INTO task_slots (job_id, group_name, idx, task, state, reason, spec_digest,"
            " restarts, stop_intent, cpu, memory, cores, updated_at)"
            " VALUES (?, ?, ?, ?, 'pending', '', '', 0, '', 0, 0, 0, ?)",
            (*key, now),
        )
        return int(cur.lastrowid or 0)

    def start_failed(
        self, key: SlotKey, spec_digest: str, version_digest: str, error: str, now: float,
        state: str, next_start_at: float | None, restarts: int, window_start: float | None,
        events: Sequence[Event], ports: tuple[tuple[str, int], ...] = (),
    ) -> None:  # fmt: skip
        """`ports`: the group instance's host ports; a pending slot holds them for its retry."""
        with self._tx() as db:
            vid = self._vid(db, key.job, version_digest)
            cur = db.execute(
                "INSERT INTO task_instances (job_id, group_name, idx, task, version_id,"
                " spec_digest, started_at, finished_at, outcome, error, cgroup, task_dir,"
                " oom_killed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'start_failed', ?, '', '', 0)",
                (*key, vid, spec_digest, now, now, error),
            )
            iid = int(cur.lastrowid or 0)
            slot = self._slot_id(db, key, now)
            db.execute(
                "UPDATE task_slots SET state = ?, reason = ?, spec_digest = ?, version_id = ?,"
                " next_start_at = ?, restarts = ?, window_start = ?, instance_id = NULL,"
                " stop_intent = '', updated_at = ? WHERE id = ?",
                (state, error, spec_digest, vid, next_start_at, restarts, window_start, now, slot),
            )
            if ports:
                db.execute("UPDATE task_slots SET ports = ? WHERE id = ?", (ports_text(ports), slot))
            self._insert_events(db, key, iid, events, now)

    def defer_start(
        self, key: SlotKey, spec_digest: str, version_digest: str, next_start_at: float,
        events: Sequence[Event], now: float, ports: tuple[tuple[str, int], ...] = (),
    ) -> None:  # fmt: skip
        """A start that waits (for its artifacts): the slot is pending with this spec until
        `next_start_at`, or until `hurry` brings that forward, holding the group instance's
        host `ports` meanwhile."""
        with self._tx() as db:
            slot = self._slot_id(db, key, now)
            old_digest, reason = db.execute(
                "SELECT spec_digest, reason FROM task_slots WHERE id = ?", (slot,)
            ).fetchone()
            if old_digest != spec_digest:  # a new spec starts a fresh restart window
                db.execute(
                    "UPDATE task_slots SET restarts = 0, window_start = NULL WHERE id = ?", (slot,)
                )
                reason = "downloading artifacts" if reason != "update" else "update"
            elif not reason:
                reason = "downloading artifacts"
            db.execute(
                "UPDATE task_slots SET state = 'pending', reason = ?, spec_digest = ?,"
                " version_id = ?, next_start_at = ?, instance_id = NULL, stop_intent = '',"
                " updated_at = ? WHERE id = ?",
                (reason, spec_digest, self._vid(db, key.job, version_digest), next_start_at, now,
                 slot),
            )  # fmt: skip
            if ports:
                db.execute("UPDATE task_slots SET ports = ? WHERE id = ?", (ports_text(ports), slot))
            self._insert_events(db, key, None, events, now)

    def hurry(self, key: SlotKey, now: float) -> bool:
        """A pending slot may start now (what it waited for is there); False if it is gone."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE task_slots SET next_start_at = ?, updated_at = ?"
                f" WHERE {SLOT_WHERE} AND state = 'pending'",
                (now, now, *key),
            )
            return cur.rowcount > 0

    def set_slot(self, key: SlotKey, now: float, **fields: object) -> None:
        unknown = fields.keys() - SLOT_FIELDS
        if unknown:
            raise ValueError(f"not a task slot field: {', '.join(sorted(unknown))}")
        with self._tx() as db:
            slot = self._slot_id(db, key, now)
            sets = "".join(f"{name} = ?, " for name in fields)
            db.execute(
                f"UPDATE task_slots SET {sets}updated_at = ? WHERE id = ?",
                (*fields.values(), now, slot),
            )

    def rescheduled(
        self, key: SlotKey, at: float, reason: str, tracker: str, events: Sequence[Event],
        now: float,
    ) -> None:  # fmt: skip
        """A task of a group instance that failed for good: placed again with the instance at
        `at`, with fresh restart counters. A running one is stopping meanwhile (its exit
        leaves it pending until `at`); any other is pending at once."""
        with self._tx() as db:
            db.execute(
                "UPDATE task_slots SET next_start_at = ?, reason = ?, reschedule = ?,"
                " restarts = 0, window_start = NULL, updated_at = ?,"
                " state = CASE WHEN state IN ('running', 'stopping') THEN state ELSE 'pending' END,"
                " stop_intent = CASE WHEN state = 'running' THEN 'reschedule' ELSE stop_intent END"
                f" WHERE {SLOT_WHERE}",
                (at, reason, tracker, now, *key),
            )
            self._insert_events(db, key, None, events, now)

    def forget_reschedules(self, key: SlotKey, now: float) -> None:
        """`reconciler restart`: a rescheduled instance starts again now, its count reset (as
        a new job version's instances are)."""
        with self._tx() as db:
            db.execute(
                "UPDATE task_slots SET reschedule = '', updated_at = ?, next_start_at ="
                " CASE WHEN state = 'pending' THEN ? ELSE next_start_at END"
                f" WHERE {SLOT_WHERE}",
                (now, now, *key),
            )

    def forget(self, keys: Iterable[SlotKey]) -> None:
        with self._tx() as db:
            db.executemany(f"DELETE FROM task_slots WHERE {SLOT_WHERE}", [tuple(k) for k in keys])

    def event(
        self, key: SlotKey, type: str, message: str, now: float, instance_id: int | None = None
    ) -> None:
        with self._tx() as db:
            self._insert_events(db, key, instance_id, [Event(type, message)], now)


def _attempted_version(db: sqlite3.Connection, job_id: str) -> int | None:
    """The id of the version a job is trying (None: no such job, or none attempted)."""
    row = db.execute("SELECT attempted_version_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])
