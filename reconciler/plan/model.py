"""What the planner takes and gives: the host, actions, the frozen Plan, and the builder
that collects a plan's buckets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.db.snapshot import SlotKey, SlotRecord
from reconciler.plan import admission, periodic
from reconciler.spec.load import JobSpec

ACTIVE = frozenset({"running", "stopping"})


@dataclass(frozen=True)
class Host:
    attributes: Mapping[str, str] = field(default_factory=dict)
    exec_ok: bool = True
    capacity: admission.Capacity | None = None  # None: no admission (nothing fingerprinted)
    variables: Mapping[str, int] = field(default_factory=dict)  # path -> modify index
    services: Mapping[str, str] = field(default_factory=dict)  # service name -> registrations
    # jobs whose templates' `wait` holds a change back: the (variables, services) they rendered
    held: Mapping[str, tuple[Mapping[str, int], Mapping[str, str]]] = field(default_factory=dict)
    start_budget: int | None = None  # how many tasks may start now (descriptors); None: any
    budget_reason: str = ""  # why no more may start
    reserved_ports: frozenset[int] = frozenset()  # the node's `reserved_ports`
    volumes: Mapping[str, bool] = field(default_factory=dict)  # host volume name: read-only
    started_at: float = 0.0  # when this service process started (periodic catch-up)
    gc_after: float = 4 * 3600.0  # finished children are collected this long after (Nomad's)


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class Action:
    key: SlotKey
    reason: str
    spec: JobSpec | None = None  # the job version to run (start, restart, rerender)
    task_digest: str = ""
    intent: str = ""  # stop: remove | update | pause | restart
    cores: tuple[int, ...] = ()  # start: the core ids the task reserves (admission)
    ports: tuple[tuple[str, int], ...] = ()  # start: its group instance's host ports, by label


@dataclass(frozen=True)
class Plan:
    adopt: tuple[Action, ...] = ()
    start: tuple[Action, ...] = ()
    restart: tuple[Action, ...] = ()
    rerender: tuple[Action, ...] = ()
    stop: tuple[Action, ...] = ()
    keep: tuple[Action, ...] = ()
    blocked: tuple[Action, ...] = ()
    forget: tuple[SlotKey, ...] = ()  # slots with nothing running that no longer exist
    promote: tuple[str, ...] = ()  # jobs whose attempted version became healthy
    revert: tuple[tuple[str, str], ...] = ()  # (job, reason): roll back to last applied
    status: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    attempt: Mapping[str, JobSpec] = field(default_factory=dict)  # versions now attempted
    warnings: tuple[str, ...] = ()
    # Jobs with an instance waiting for room: worth planning again when room is freed.
    waiting: frozenset[str] = frozenset()
    launch: tuple[periodic.Launch, ...] = ()  # periodic children to create now
    anchor: tuple[periodic.Anchor, ...] = ()
    collect: tuple[str, ...] = ()  # finished children to garbage-collect
    wake: Mapping[str, float] = field(default_factory=dict)  # job -> when to plan it again
    canaries: tuple[str, ...] = ()  # jobs whose canaries are promoted now (auto_promote)

    @property
    def changes(self) -> int:
        return sum(map(len, (self.adopt, self.start, self.restart, self.rerender, self.stop)))

    def buckets(self) -> dict[str, tuple[Action, ...]]:
        return {
            "adopt": self.adopt, "start": self.start, "restart": self.restart,
            "rerender": self.rerender, "stop": self.stop, "keep": self.keep,
            "blocked": self.blocked,
        }  # fmt: skip


@dataclass
class Builder:
    adopt: list[Action] = field(default_factory=list)
    start: list[Action] = field(default_factory=list)
    restart: list[Action] = field(default_factory=list)
    rerender: list[Action] = field(default_factory=list)
    stop: list[Action] = field(default_factory=list)
    keep: list[Action] = field(default_factory=list)
    blocked: list[Action] = field(default_factory=list)
    forget: list[SlotKey] = field(default_factory=list)
    promote: list[str] = field(default_factory=list)
    revert: list[tuple[str, str]] = field(default_factory=list)
    status: dict[str, tuple[str, str]] = field(default_factory=dict)
    attempt: dict[str, JobSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    room: admission.Room = field(default_factory=lambda: admission.Room(None))
    short_of_room: dict[str, str] = field(default_factory=dict)  # job -> first reason
    launch: list[periodic.Launch] = field(default_factory=list)
    anchor: list[periodic.Anchor] = field(default_factory=list)
    collect: list[str] = field(default_factory=list)
    wake: dict[str, float] = field(default_factory=dict)
    canaries: list[str] = field(default_factory=list)

    def freeze(self) -> Plan:
        return Plan(
            tuple(self.adopt), tuple(self.start), tuple(self.restart), tuple(self.rerender),
            tuple(self.stop), tuple(self.keep), tuple(self.blocked), tuple(self.forget),
            tuple(self.promote), tuple(self.revert), dict(self.status), dict(self.attempt),
            tuple(self.warnings), frozenset(self.short_of_room), tuple(self.launch),
            tuple(self.anchor), tuple(self.collect), dict(self.wake), tuple(self.canaries),
        )  # fmt: skip


def remove(b: Builder, slots: Iterable[SlotRecord], why: str, intent: str = "remove") -> None:
    for s in slots:
        if s.state == "running":
            b.stop.append(Action(s.key, why, intent=intent))
        elif s.state == "stopping":
            b.keep.append(Action(s.key, "stopping"))
        elif intent == "pause":
            b.keep.append(Action(s.key, why))
        else:
            b.forget.append(s.key)
