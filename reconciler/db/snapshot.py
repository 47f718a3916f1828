"""Frozen snapshots of what the store knows: the planner's `observed` input. No ORM objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class SlotKey(NamedTuple):
    job: str
    group: str
    idx: int
    task: str

    def __str__(self) -> str:
        return f"{self.job}/{self.group}/{self.idx}/{self.task}"

    @property
    def alloc(self) -> str:
        return f"{self.job}/{self.group}/{self.idx}"


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class InstanceRecord:
    id: int
    pid: int
    shim_pid: int
    shim_start_ticks: int
    boot_id: str
    cgroup: str
    task_dir: str
    started_at: float
    spec_digest: str
    version_digest: str


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class SlotRecord:
    key: SlotKey
    # pending | running | stopping | complete | failed | dead
    state: str
    spec_digest: str
    version_digest: str
    restarts: int = 0
    window_start: float | None = None
    next_start_at: float | None = None
    reason: str = ""
    instance: InstanceRecord | None = None
    # Why a stop was asked for: "remove" | "update" | "pause" | "restart" | "template" | ""
    # (see apply).
    stop_intent: str = ""
    # What the started task reserves of the node (MHz, MB, cores) while the slot holds it.
    cpu: int = 0
    memory: int = 0
    cores: int = 0
    core_ids: tuple[int, ...] = ()  # which cores, exclusively (empty: none, or started before ids were kept)
    # The group instance's host ports, (label, port), chosen when it was placed (empty: none)
    ports: tuple[tuple[str, int], ...] = ()
    # The group instance's reschedules so far, as stored (reconciler/reschedules.py Tracker)
    reschedule: str = ""


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class JobRecord:
    id: str
    source_file: str
    status: str
    paused: bool
    applied_digest: str | None
    attempted_digest: str | None
    applied_canonical: str | None
    rejected: frozenset[str] = frozenset()
    attempted_at: float | None = None
    reason: str = ""
    parent_id: str = ""  # a periodic or dispatched child's parent
    periodic_from: float | None = None  # a periodic parent: next launch is computed from here
    periodic_digest: str = ""  # ... for this version of it
    finished_at: float | None = None  # a child: when it completed or failed
    promoted: bool = False  # the attempted version's canaries were promoted (plan/canary.py)


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class ChildRecord:
    id: str
    parent: str
    status: str
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class CheckRecord:
    """A registered check's current status (see db/registry.py)."""

    task: str  # "" for a group service's check
    service: str
    name: str
    status: str  # pending | passing | warning | critical
    since: float
    on_update: str
    identity: str  # "i<instance id>" for a task's check, "v<version digest>" for a group's


@dataclass(frozen=True)
class Observed:
    jobs: Mapping[str, JobRecord] = field(default_factory=dict)
    slots: Mapping[SlotKey, SlotRecord] = field(default_factory=dict)
    # Instances this service process has adopted or started; the rest need `recover`.
    live: frozenset[int] = frozenset()
    # (MHz, MB, cores) reserved by every holding slot of every job, also outside a scoped
    # read; None: sum `slots` instead.
    held: tuple[int, int, int] | None = None
    # Every child not yet garbage-collected, by parent, whatever this read's scope.
    children: Mapping[str, tuple[ChildRecord, ...]] = field(default_factory=dict)
    # Check status by group instance (job/group/idx), for health_check = "checks".
    checks: Mapping[str, tuple[CheckRecord, ...]] = field(default_factory=dict)
    # The core ids every holding slot holds (exclusive); None: gather them from `slots`.
    held_cores: frozenset[int] | None = None
    # Every host port a holding slot holds -> its group instance (job/group/idx); None: gather
    # them from `slots`.
    held_ports: Mapping[int, str] | None = None


def core_ids_of(text: str) -> tuple[int, ...]:
    """A slot's stored core ids ("0,2") as a tuple."""
    return tuple(int(c) for c in text.split(",") if c)


def ports_of(text: str) -> tuple[tuple[str, int], ...]:
    """A slot's stored ports ('{"http":20001}') as (label, port) pairs."""
    if not text:
        return ()
    return tuple((str(k), int(v)) for k, v in json.loads(text).items())


def ports_text(ports: tuple[tuple[str, int], ...]) -> str:
    return json.dumps(dict(ports), separators=(",", ":")) if ports else ""
