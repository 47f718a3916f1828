"""Jobs that launch children: a periodic or parameterized job runs nothing itself, and a
finished child is garbage-collected. Pure.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.db.snapshot import ChildRecord, JobRecord, SlotRecord
from reconciler.plan import children, periodic
from reconciler.plan.model import Builder, Host, remove
from reconciler.spec.load import JobSpec


def plan_parent(
    b: Builder, spec: JobSpec, record: JobRecord | None, slots: list[SlotRecord],
    kids: tuple[ChildRecord, ...], host: Host, now: float,
) -> None:  # fmt: skip
    """A periodic or parameterized job runs nothing itself: its children do (Nomad's parent
    stays "running" until it is stopped)."""
    remove(b, slots, "the job launches children and runs nothing itself")
    if record is None or record.attempted_digest != spec.digest:
        b.attempt[spec.id] = spec
    if record is None or record.applied_digest != spec.digest:
        b.promote.append(spec.id)
    if spec.job.periodic is None:
        b.status[spec.id] = ("running", "parameterized: launched by `reconciler dispatch`")
        return
    kids = tuple(replace(c, status=b.status[c.id][0]) if c.id in b.status else c for c in kids)
    d = periodic.decide(spec, record, kids, now, host.started_at)
    if d.launch is not None:
        b.launch.append(d.launch)
    if d.anchor is not None:
        b.anchor.append(d.anchor)
    if d.next_at is not None:
        b.wake[spec.id] = d.next_at
    b.status[spec.id] = ("running", d.reason)


def collect(
    b: Builder, spec: JobSpec, record: JobRecord, slots: list[SlotRecord], host: Host,
    now: float,
) -> None:  # fmt: skip
    status = b.status.get(spec.id, (record.status, ""))[0]
    now_due, later = children.collectable(record, status, slots, now, host.gc_after)
    if now_due:
        b.collect.append(spec.id)
    elif later is not None:
        b.wake[spec.id] = later
