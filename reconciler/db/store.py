"""The store: the only module with a Session. Each method is one transaction, so a state
change and the history that explains it are written together or not at all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from reconciler.db import engine as db_engine
from reconciler.db.models import JobRow, JobVersion, SpecError, TaskEvent, TaskInstance, TaskSlot
from reconciler.db.snapshot import InstanceRecord, JobRecord, Observed, SlotKey, SlotRecord


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


def _slot_where(key: SlotKey) -> tuple[ColumnElement[bool], ...]:
    return (
        TaskSlot.job_id == key.job, TaskSlot.group_name == key.group,
        TaskSlot.idx == key.idx, TaskSlot.task == key.task,
    )  # fmt: skip


class Store:
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
            db_engine.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ---- reading ----

    def observed(self, live: Iterable[int] = ()) -> Observed:
        """One read transaction of plain tuples: this runs every pass, so it skips the ORM."""
        with self.engine.connect() as c:
            raw = c.connection.driver_connection
            assert raw is not None
            q = raw.execute
            versions = {vid: digest for vid, digest in q("SELECT id, digest FROM job_versions")}
            rejected: dict[str, set[str]] = {}
            for job_id, digest in q(
                "SELECT job_id, digest FROM job_versions WHERE state = 'rejected'"
            ):
                rejected.setdefault(job_id, set()).add(digest)
            jobs: dict[str, JobRecord] = {}
            for jid, src, status, paused, applied, attempted, attempted_at, reason, canon in q(
                "SELECT j.id, j.source_file, j.status, j.paused, j.applied_version_id,"
                " j.attempted_version_id, j.attempted_at, j.reason, v.canonical"
                " FROM jobs j LEFT JOIN job_versions v ON v.id = j.applied_version_id"
            ):
                jobs[jid] = JobRecord(
                    jid, src, status, bool(paused), versions.get(applied), versions.get(attempted),
                    canon, frozenset(rejected.get(jid, ())), attempted_at, reason,
                )  # fmt: skip
            instances = {
                row[0]: InstanceRecord(
                    row[0],
                    row[1] or 0,
                    row[2] or 0,
                    row[3] or 0,
                    row[4] or "",
                    row[5],
                    row[6],
                    row[7],
                    row[8],
                    versions.get(row[9], ""),
                )  # fmt: skip
                for row in q(
                    "SELECT id, pid, shim_pid, shim_start_ticks, boot_id, cgroup, task_dir,"
                    " started_at, spec_digest, version_id FROM task_instances"
                    " WHERE finished_at IS NULL"
                )
            }
            slots: dict[SlotKey, SlotRecord] = {}
            for (job, group, idx, task, state, spec_digest, version_id, restarts, window,
                 next_at, reason, instance_id, intent) in q(
                "SELECT job_id, group_name, idx, task, state, spec_digest, version_id, restarts,"
                " window_start, next_start_at, reason, instance_id, stop_intent FROM task_slots"
            ):  # fmt: skip
                key = SlotKey(job, group, idx, task)
                slots[key] = SlotRecord(
                    key, state, spec_digest, versions.get(version_id, ""), restarts, window,
                    next_at, reason, instances.get(instance_id), intent,
                )  # fmt: skip
        return Observed(jobs, slots, frozenset(live))

    def instance(self, instance_id: int) -> InstanceRecord | None:
        with self.session() as s, s.begin():
            i = s.get(TaskInstance, instance_id)
            if i is None:
                return None
            versions = {
                v.id: v for v in s.scalars(select(JobVersion).where(JobVersion.id == i.version_id))
            }
            return _instance(i, versions)

    def slot(self, key: SlotKey) -> SlotRecord | None:
        return self.observed().slots.get(key)

    # ---- job files ----

    def record_scan(
        self,
        versions: Sequence[VersionRow],
        problems: Sequence[ProblemRow],
        files: Iterable[str],
        now: float,
        commit_of: Callable[[str], str | None] = lambda _f: None,
    ) -> None:
        """Remember every distinct spec ever seen and the current problems of each file."""
        scanned = set(files)
        with self.session() as s, s.begin():
            for v in versions:
                job = s.get(JobRow, v.job_id)
                if job is None:
                    s.add(JobRow(id=v.job_id, source_file=v.source_file, status="reconciling",
                                 reason="", paused=False, created_at=now, updated_at=now))  # fmt: skip
                elif job.source_file != v.source_file or job.status == "removed":
                    job.source_file = v.source_file
                    job.updated_at = now
                    if job.status == "removed":
                        job.status = "reconciling"
                found = s.scalars(
                    select(JobVersion).where(
                        JobVersion.job_id == v.job_id, JobVersion.digest == v.digest
                    )
                ).first()
                if found is None:
                    s.add(JobVersion(job_id=v.job_id, digest=v.digest, canonical=v.canonical,
                                     source_file=v.source_file, git_commit=commit_of(v.source_file),
                                     first_seen=now, state="pending", error=""))  # fmt: skip
            open_rows = {
                (e.file, e.line, e.path, e.message): e
                for e in s.scalars(select(SpecError).where(SpecError.cleared_at.is_(None)))
            }
            seen = set()
            for p in problems:
                k = (p.file, p.line, p.path, p.message)
                seen.add(k)
                if (row := open_rows.get(k)) is not None:
                    row.last_seen = now
                else:
                    s.add(SpecError(file=p.file, line=p.line, col=p.column, path=p.path,
                                    message=p.message, severity=p.severity, first_seen=now,
                                    last_seen=now))  # fmt: skip
            for k, row in open_rows.items():
                if k not in seen and (row.file in scanned or not Path(row.file).exists()):
                    row.cleared_at = now

    def attempt(self, attempts: dict[str, str], now: float) -> None:
        """Record the version each job is now trying to run (job id -> digest)."""
        with self.session() as s, s.begin():
            for job_id, digest in attempts.items():
                vid = self._version_id(s, job_id, digest)
                job = s.get(JobRow, job_id)
                if vid is not None and job is not None:
                    job.attempted_version_id, job.attempted_at, job.updated_at = vid, now, now

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

    def set_status(self, statuses: dict[str, tuple[str, str]], now: float) -> None:
        with self.session() as s, s.begin():
            for job_id, (status, reason) in statuses.items():
                job = s.get(JobRow, job_id)
                if job is not None and (job.status, job.reason) != (status, reason):
                    job.status, job.reason, job.updated_at = status, reason, now

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

    def started(
        self, key: SlotKey, spec_digest: str, version_digest: str, handle: HandleLike, now: float,
        events: Sequence[Event], reset_restarts: bool,
    ) -> int:  # fmt: skip
        """The handle is committed before the task is reported running."""
        with self.session() as s, s.begin():
            vid = self._version_id(s, key.job, version_digest)
            inst = TaskInstance(
                job_id=key.job, group_name=key.group, idx=key.idx, task=key.task, version_id=vid,
                spec_digest=spec_digest, pid=handle.pid,
                shim_pid=handle.shim_pid,
                shim_start_ticks=handle.shim_start_ticks,
                boot_id=handle.boot_id, cgroup=handle.cgroup,
                task_dir=handle.task_dir, started_at=handle.started_at,
                outcome="running", error="", oom_killed=False,
            )  # fmt: skip
            s.add(inst)
            s.flush()
            slot = self._slot(s, key, now)
            if reset_restarts:
                slot.restarts, slot.window_start = 0, None
            slot.state, slot.instance_id, slot.spec_digest, slot.version_id = (
                "running",
                inst.id,
                spec_digest,
                vid,
            )
            slot.next_start_at, slot.stop_intent, slot.updated_at = None, "", now
            slot.reason = ""
            self._events(s, key, inst.id, events, now)
            return inst.id

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

    def finished(
        self, instance_id: int, *, exit_code: int, signal: int, oom: bool, error: str,
        finished_at: float, outcome: str, now: float, slot_state: str | None,
        next_start_at: float | None = None, restarts: int | None = None,
        window_start: float | None = None, reason: str = "", events: Sequence[Event] = (),
    ) -> SlotKey | None:  # fmt: skip
        """Close a run; move its slot on (or delete it when slot_state is None)."""
        with self.session() as s, s.begin():
            inst = s.get(TaskInstance, instance_id)
            if inst is None or inst.finished_at is not None:
                return None
            inst.finished_at, inst.exit_code, inst.signal = finished_at, exit_code, signal or None
            inst.oom_killed, inst.error, inst.outcome = oom, error, outcome
            key = SlotKey(inst.job_id, inst.group_name, inst.idx, inst.task)
            self._events(s, key, inst.id, events, now)
            slot = s.scalars(select(TaskSlot).where(*_slot_where(key))).first()
            if slot is None or slot.instance_id != instance_id:
                return key
            if slot_state is None:
                s.delete(slot)
                return key
            slot.state, slot.reason, slot.next_start_at = slot_state, reason, next_start_at
            if restarts is not None:
                slot.restarts, slot.window_start = restarts, window_start
            slot.instance_id, slot.stop_intent, slot.updated_at = None, "", now
            return key

    def stopping(self, key: SlotKey, intent: str, now: float, events: Sequence[Event]) -> None:
        with self.session() as s, s.begin():
            slot = s.scalars(select(TaskSlot).where(*_slot_where(key))).first()
            if slot is None:
                return
            slot.state, slot.stop_intent, slot.updated_at = "stopping", intent, now
            self._events(s, key, slot.instance_id, events, now)

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

    def close_lost(self, instance_id: int, now: float, reason: str) -> None:
        with self.session() as s, s.begin():
            s.execute(
                update(TaskInstance)
                .where(TaskInstance.id == instance_id, TaskInstance.finished_at.is_(None))
                .values(finished_at=now, outcome="lost", error=reason)
            )


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
