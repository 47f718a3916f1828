"""The store: the only module with a Session. Each method is one transaction, so a state
change and the history that explains it are written together or not at all."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from reconciler.db import engine as db_engine
from reconciler.db.children import ChildJobs
from reconciler.db.hot import Event, ProblemRow, Started, VersionRow
from reconciler.db.models import JobRow, JobVersion, TaskEvent, TaskInstance, TaskSlot
from reconciler.db.registry import Registry, read_checks
from reconciler.db.snapshot import (
    ChildRecord,
    InstanceRecord,
    JobRecord,
    Observed,
    SlotKey,
    SlotRecord,
    core_ids_of,
)

__all__ = ["Event", "ProblemRow", "Started", "Store", "VersionRow"]


def _slot_where(key: SlotKey) -> tuple[ColumnElement[bool], ...]:
    return (
        TaskSlot.job_id == key.job, TaskSlot.group_name == key.group,
        TaskSlot.idx == key.idx, TaskSlot.task == key.task,
    )  # fmt: skip


class Store(ChildJobs, Registry):
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise FileNotFoundError(
                f"no state store at {path} (has `reconciler run` been started?)"
            )
        self.engine = db_engine.make_engine(path, readonly=readonly)
        if not readonly:
            db_engine.check(self.engine, path)
            db_engine.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def checkpoint(self) -> tuple[int, int]:
        """A passive checkpoint (never waits for readers): (pages in the WAL, pages copied
        into the database). Fewer copied than present: a reader holds the rest back."""
        with self.engine.connect() as c:
            raw: Any = c.connection.driver_connection
            _busy, pages, done = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(pages), int(done)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ---- reading ----

    def observed(self, live: Iterable[int] = (), jobs: Collection[str] | None = None) -> Observed:
        """One read transaction of plain tuples: this runs every pass, so it skips the ORM.
        With `jobs`, only those jobs' rows are read (a scoped pass)."""
        if jobs is not None and len(jobs) > 500:
            jobs = None  # more is harmless to a scoped plan; SQLite limits bound parameters
        args = tuple(jobs or ())
        where = f" IN ({','.join('?' * len(args))})"
        with self.engine.connect() as c:
            raw = c.connection.driver_connection
            assert raw is not None

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
                 parent, p_from, p_digest, finished) in q(
                "SELECT j.id, j.source_file, j.status, j.paused, va.digest, vt.digest,"
                " j.attempted_at, j.reason, va.canonical, j.parent_id, j.periodic_from,"
                " j.periodic_digest, j.finished_at FROM jobs j"
                " LEFT JOIN job_versions va ON va.id = j.applied_version_id"
                " LEFT JOIN job_versions vt ON vt.id = j.attempted_version_id", "j.id"
            ):  # fmt: skip
                records[jid] = JobRecord(
                    jid, src, status, bool(paused), applied, attempted, canon,
                    frozenset(rejected.get(jid, ())), attempted_at, reason, parent or "",
                    p_from, p_digest or "", finished,
                )  # fmt: skip
            instances = {
                row[0]: InstanceRecord(
                    row[0], row[1] or 0, row[2] or 0, row[3] or 0, row[4] or "", row[5],
                    row[6], row[7], row[8], row[9] or "",
                )  # fmt: skip
                for row in q(
                    "SELECT i.id, i.pid, i.shim_pid, i.shim_start_ticks, i.boot_id, i.cgroup,"
                    " i.task_dir, i.started_at, i.spec_digest, v.digest FROM task_instances i"
                    " LEFT JOIN job_versions v ON v.id = i.version_id"
                    " WHERE i.finished_at IS NULL", "i.job_id"
                )
            }
            slots: dict[SlotKey, SlotRecord] = {}
            for (job, group, idx, task, state, spec_digest, version, restarts, window,
                 next_at, reason, instance_id, intent, cpu, memory, cores, core_ids) in q(
                "SELECT s.job_id, s.group_name, s.idx, s.task, s.state, s.spec_digest, v.digest,"
                " s.restarts, s.window_start, s.next_start_at, s.reason, s.instance_id,"
                " s.stop_intent, s.cpu, s.memory, s.cores, s.core_ids"
                " FROM task_slots s LEFT JOIN job_versions v ON v.id = s.version_id",
                "s.job_id",
            ):  # fmt: skip
                key = SlotKey(job, group, idx, task)
                slots[key] = SlotRecord(
                    key, state, spec_digest, version or "", restarts, window, next_at, reason,
                    instances.get(instance_id), intent, cpu, memory, cores,
                    core_ids_of(core_ids),
                )  # fmt: skip
            # what every job holds of the node, whatever this read's scope (admission)
            cpu, memory, cores = raw.execute(
                "SELECT coalesce(sum(cpu), 0), coalesce(sum(memory), 0), coalesce(sum(cores), 0)"
                " FROM task_slots WHERE state IN ('running', 'stopping', 'pending')"
            ).fetchone()
            held_cores = frozenset(c for (ids,) in raw.execute(
                "SELECT core_ids FROM task_slots WHERE core_ids != ''"
                " AND state IN ('running', 'stopping', 'pending')"
            ) for c in core_ids_of(ids))  # fmt: skip
            children: dict[str, list[ChildRecord]] = {}
            for cid, parent, status, finished in raw.execute(
                "SELECT id, parent_id, status, finished_at FROM jobs"
                " WHERE parent_id IS NOT NULL AND gc_at IS NULL"
            ):
                children.setdefault(parent, []).append(ChildRecord(cid, parent, status, finished))
            checks = read_checks(raw, jobs)
        return Observed(records, slots, frozenset(live), (cpu, memory, cores),
                        {p: tuple(c) for p, c in children.items()}, checks, held_cores)  # fmt: skip

    def promote(self, job_ids: Iterable[str], now: float) -> None:
        with self.session() as s, s.begin():
            for job_id in job_ids:
                self._promote(s, job_id, now)

    def _promote(self, s: Session, job_id: str, now: float) -> None:
        job = s.get(JobRow, job_id)
        if job is None or job.attempted_version_id is None:
            return
        if job.applied_version_id and job.applied_version_id != job.attempted_version_id:
            old = s.get(JobVersion, job.applied_version_id)
            if old is not None and old.state == "applied":
                old.state = "superseded"
        job.applied_version_id = job.attempted_version_id
        v = s.get(JobVersion, job.attempted_version_id)
        if v is not None:
            v.state = "applied"
        job.updated_at = now

    def reject(self, job_id: str, reason: str, now: float) -> None:
        """The attempted version failed: never retried until the file changes again."""
        with self.session() as s, s.begin():
            job = s.get(JobRow, job_id)
            if job is None or job.attempted_version_id is None:
                return
            v = s.get(JobVersion, job.attempted_version_id)
            if v is not None:
                v.state, v.error = "rejected", reason
            s.add(TaskEvent(at=now, job_id=job_id, group_name="", idx=None, task="",
                            type="Rolled Back", message=reason))  # fmt: skip

    def set_paused(self, job_id: str, paused: bool, now: float) -> bool:
        with self.session() as s, s.begin():
            job = s.get(JobRow, job_id)
            if job is None:
                return False
            job.paused, job.updated_at = paused, now
            s.add(TaskEvent(at=now, job_id=job_id, group_name="", idx=None, task="",
                            type="Job Stopped" if paused else "Job Started",
                            message="by operator"))  # fmt: skip
            return True

    # ---- task slots and instances ----

    def _slot(self, s: Session, key: SlotKey, now: float) -> TaskSlot:
        row = s.scalars(select(TaskSlot).where(*_slot_where(key))).first()
        if row is None:
            row = TaskSlot(job_id=key.job, group_name=key.group, idx=key.idx, task=key.task,
                           state="pending", reason="", spec_digest="", restarts=0,
                           stop_intent="", updated_at=now)  # fmt: skip
            s.add(row)
        return row

    def _version_id(self, s: Session, job_id: str, digest: str) -> int | None:
        return s.scalars(
            select(JobVersion.id).where(JobVersion.job_id == job_id, JobVersion.digest == digest)
        ).first()

    def start_failed(
        self, key: SlotKey, spec_digest: str, version_digest: str, error: str, now: float,
        state: str, next_start_at: float | None, restarts: int, window_start: float | None,
        events: Sequence[Event],
    ) -> None:  # fmt: skip
        with self.session() as s, s.begin():
            vid = self._version_id(s, key.job, version_digest)
            inst = TaskInstance(
                job_id=key.job, group_name=key.group, idx=key.idx, task=key.task, version_id=vid,
                spec_digest=spec_digest, started_at=now, finished_at=now, outcome="start_failed",
                error=error, cgroup="", task_dir="", oom_killed=False,
            )  # fmt: skip
            s.add(inst)
            s.flush()
            slot = self._slot(s, key, now)
            slot.state, slot.reason, slot.spec_digest, slot.version_id = (
                state,
                error,
                spec_digest,
                vid,
            )
            slot.next_start_at, slot.restarts, slot.window_start = (
                next_start_at,
                restarts,
                window_start,
            )
            slot.instance_id, slot.stop_intent, slot.updated_at = None, "", now
            self._events(s, key, inst.id, events, now)

    def defer_start(
        self, key: SlotKey, spec_digest: str, version_digest: str, next_start_at: float,
        events: Sequence[Event], now: float,
    ) -> None:  # fmt: skip
        """A start that waits (for its artifacts): the slot is pending with this spec until
        `next_start_at`, or until `hurry` brings that forward."""
        with self.session() as s, s.begin():
            slot = self._slot(s, key, now)
            if slot.spec_digest != spec_digest:  # a new spec starts a fresh restart window
                slot.restarts, slot.window_start = 0, None
                slot.reason = "downloading artifacts" if slot.reason != "update" else "update"
            elif not slot.reason:
                slot.reason = "downloading artifacts"
            slot.state, slot.spec_digest = "pending", spec_digest
            slot.version_id = self._version_id(s, key.job, version_digest)
            slot.next_start_at, slot.instance_id, slot.stop_intent = next_start_at, None, ""
            slot.updated_at = now
            self._events(s, key, None, events, now)

    def hurry(self, key: SlotKey, now: float) -> bool:
        """A pending slot may start now (what it waited for is there); False if it is gone."""
        with self.session() as s, s.begin():
            slot = s.scalars(select(TaskSlot).where(*_slot_where(key))).first()
            if slot is None or slot.state != "pending":
                return False
            slot.next_start_at, slot.updated_at = now, now
            return True

    def set_slot(self, key: SlotKey, now: float, **fields: object) -> None:
        with self.session() as s, s.begin():
            slot = self._slot(s, key, now)
            for k, v in fields.items():
                setattr(slot, k, v)
            slot.updated_at = now

    def forget(self, keys: Iterable[SlotKey]) -> None:
        with self.session() as s, s.begin():
            for key in keys:
                s.execute(delete(TaskSlot).where(*_slot_where(key)))

    def event(
        self, key: SlotKey, type: str, message: str, now: float, instance_id: int | None = None
    ) -> None:
        with self.session() as s, s.begin():
            self._events(s, key, instance_id, [Event(type, message)], now)

    def _events(
        self, s: Session, key: SlotKey, instance_id: int | None, events: Iterable[Event], now: float
    ) -> None:
        for e in events:
            s.add(TaskEvent(at=now, job_id=key.job, group_name=key.group, idx=key.idx,
                            task=key.task, instance_id=instance_id, type=e.type,
                            message=e.message))  # fmt: skip


def _instance(i: TaskInstance, versions: dict[int, JobVersion]) -> InstanceRecord:
    v = versions.get(i.version_id) if i.version_id else None
    return InstanceRecord(
        i.id,
        i.pid or 0,
        i.shim_pid or 0,
        i.shim_start_ticks or 0,
        i.boot_id or "",
        i.cgroup,
        i.task_dir,
        i.started_at,
        i.spec_digest,
        v.digest if v else "",
    )
