"""Tables. Times are REAL seconds since the epoch (UTC); the views in docs/history.md turn them
into text. A task *slot* is one (job, group, index, task); a task *instance* is one run of it."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    source_file: Mapped[str] = mapped_column(String, default="")
    # ready | reconciling | failed | blocked | stopped | removed
    status: Mapped[str] = mapped_column(String, default="reconciling")
    reason: Mapped[str] = mapped_column(Text, default="")
    paused: Mapped[bool] = mapped_column(default=False)
    applied_version_id: Mapped[int | None] = mapped_column(ForeignKey("job_versions.id"))
    attempted_version_id: Mapped[int | None] = mapped_column(ForeignKey("job_versions.id"))
    attempted_at: Mapped[float | None]
    created_at: Mapped[float]
    updated_at: Mapped[float]
    # children of periodic and parameterized jobs (migration 0003)
    parent_id: Mapped[str | None] = mapped_column(String, index=True)
    launch_kind: Mapped[str] = mapped_column(String, default="", server_default="")
    periodic_from: Mapped[float | None]
    periodic_digest: Mapped[str | None] = mapped_column(String)
    finished_at: Mapped[float | None]
    gc_at: Mapped[float | None]
    dispatch_meta: Mapped[str] = mapped_column(Text, default="", server_default="")
    payload: Mapped[bytes | None]
    idempotency_token: Mapped[str | None] = mapped_column(String)


class JobVersion(Base):
    __tablename__ = "job_versions"
    __table_args__ = (UniqueConstraint("job_id", "digest"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String, index=True)
    digest: Mapped[str] = mapped_column(String)
    canonical: Mapped[str] = mapped_column(Text)
    source_file: Mapped[str] = mapped_column(String)
    git_commit: Mapped[str | None] = mapped_column(String)
    first_seen: Mapped[float]
    # pending | promoted (its canaries, see plan/canary.py) | applied | rejected | superseded
    state: Mapped[str] = mapped_column(String, default="pending")
    error: Mapped[str] = mapped_column(Text, default="")


class TaskSlot(Base):
    __tablename__ = "task_slots"
    __table_args__ = (UniqueConstraint("job_id", "group_name", "idx", "task"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String)
    group_name: Mapped[str] = mapped_column(String)
    idx: Mapped[int]
    task: Mapped[str] = mapped_column(String)
    # pending | running | dead | complete | failed
    state: Mapped[str] = mapped_column(String, default="pending")
    reason: Mapped[str] = mapped_column(Text, default="")
    version_id: Mapped[int | None] = mapped_column(ForeignKey("job_versions.id"))
    spec_digest: Mapped[str] = mapped_column(String, default="")
    restarts: Mapped[int] = mapped_column(default=0)
    window_start: Mapped[float | None]
    next_start_at: Mapped[float | None]
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("task_instances.id"))
    # Why a stop was asked for: remove | update | pause | restart (what to do on exit).
    stop_intent: Mapped[str] = mapped_column(String, default="")
    # What the started task reserves of the node while the slot holds its place (admission).
    cpu: Mapped[int] = mapped_column(default=0, server_default="0")
    memory: Mapped[int] = mapped_column(default=0, server_default="0")
    cores: Mapped[int] = mapped_column(default=0, server_default="0")
    core_ids: Mapped[str] = mapped_column(Text, default="", server_default="")  # "0,2"
    # The group instance's host ports, chosen when it was placed: '{"http":20001}'
    ports: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The group instance's reschedules so far (reconciler/reschedules.py Tracker), "" for none
    reschedule: Mapped[str] = mapped_column(Text, default="", server_default="")
    updated_at: Mapped[float]


class TaskInstance(Base):
    __tablename__ = "task_instances"
    __table_args__ = (Index("ix_task_instances_slot", "job_id", "group_name", "idx", "task"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String)
    group_name: Mapped[str] = mapped_column(String)
    idx: Mapped[int]
    task: Mapped[str] = mapped_column(String)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("job_versions.id"))
    spec_digest: Mapped[str] = mapped_column(String, default="")
    # The handle: enough to re-adopt after a crash without trusting a pid alone.
    pid: Mapped[int | None]
    shim_pid: Mapped[int | None]
    shim_start_ticks: Mapped[int | None]
    boot_id: Mapped[str | None] = mapped_column(String)
    cgroup: Mapped[str] = mapped_column(Text, default="")
    task_dir: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[float]
    finished_at: Mapped[float | None] = mapped_column(index=True)
    exit_code: Mapped[int | None]
    signal: Mapped[int | None]
    oom_killed: Mapped[bool] = mapped_column(default=False)
    # running | exited | failed | killed | lost | start_failed
    outcome: Mapped[str] = mapped_column(String, default="running")
    error: Mapped[str] = mapped_column(Text, default="")


class TaskEvent(Base):
    __tablename__ = "task_events"
    __table_args__ = (Index("ix_task_events_slot", "job_id", "group_name", "idx", "task"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[float] = mapped_column(index=True)
    job_id: Mapped[str] = mapped_column(String)
    group_name: Mapped[str] = mapped_column(String, default="")
    idx: Mapped[int | None]
    task: Mapped[str] = mapped_column(String, default="")
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("task_instances.id"))
    # Nomad's vocabulary: Received, Task Setup, Started, Terminated, Restarting, ...
    type: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text, default="")


class SpecError(Base):
    __tablename__ = "spec_errors"
    id: Mapped[int] = mapped_column(primary_key=True)
    file: Mapped[str] = mapped_column(String, index=True)
    line: Mapped[int | None]
    col: Mapped[int | None]
    path: Mapped[str] = mapped_column(String, default="")
    message: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String, default="error")
    first_seen: Mapped[float]
    last_seen: Mapped[float]
    cleared_at: Mapped[float | None]


class ParseCacheRow(Base):
    """A job file's parse result, kept across restarts (spec/parsecache.py, db/parsecache.py)."""

    __tablename__ = "parse_cache"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String)


class NodeHeld(Base):
    """One row: what the task slots hold of the node, kept by triggers (db/held.py)."""

    __tablename__ = "node_held"
    id: Mapped[int] = mapped_column(primary_key=True)
    cpu: Mapped[int]
    memory: Mapped[int]
    cores: Mapped[int]


class ServiceRow(Base):
    """The local service registry: one row per registered service instance."""

    __tablename__ = "services"
    __table_args__ = (Index("ix_services_owner", "job_id", "group_name", "idx", "task"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String)
    group_name: Mapped[str] = mapped_column(String)
    idx: Mapped[int]
    task: Mapped[str] = mapped_column(String)  # "" for a group service
    name: Mapped[str] = mapped_column(String, index=True)
    tags: Mapped[str] = mapped_column(Text)  # JSON list
    address: Mapped[str] = mapped_column(String)
    port: Mapped[int]
    port_label: Mapped[str] = mapped_column(String)
    alloc_id: Mapped[str] = mapped_column(String)
    provider: Mapped[str] = mapped_column(String)
    registered_at: Mapped[float]


class CheckRow(Base):
    """Each registered check's current status; `identity` names what it probes (a task
    instance, or a group instance's version) so a new run starts pending."""

    __tablename__ = "checks"
    __table_args__ = (UniqueConstraint("job_id", "group_name", "idx", "task", "service", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String)
    group_name: Mapped[str] = mapped_column(String)
    idx: Mapped[int]
    task: Mapped[str] = mapped_column(String)
    service: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    type: Mapped[str] = mapped_column(String)
    # pending | passing | warning | critical
    status: Mapped[str] = mapped_column(String)
    output: Mapped[str] = mapped_column(Text)
    since: Mapped[float]
    on_update: Mapped[str] = mapped_column(String)
    identity: Mapped[str] = mapped_column(String)
    updated_at: Mapped[float]


class CheckEvent(Base):
    """History: a check's status transitions (not every probe)."""

    __tablename__ = "check_events"
    __table_args__ = (Index("ix_check_events_job", "job_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[float] = mapped_column(index=True)
    job_id: Mapped[str] = mapped_column(String)
    group_name: Mapped[str] = mapped_column(String)
    idx: Mapped[int]
    task: Mapped[str] = mapped_column(String)
    service: Mapped[str] = mapped_column(String)
    check_name: Mapped[str] = mapped_column(String)
    previous: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    output: Mapped[str] = mapped_column(Text)
    instance_id: Mapped[int | None]
