"""Periodic jobs, Nomad's way (nomad/periodic.go): when the next child is launched, what it is
named, what is skipped, and the one catch-up launch after downtime. Pure.

The next launch is computed from the parent's anchor: the time it was registered or changed
(Nomad computes from "now" on register and update), then each launch's scheduled time. A due
launch is named `PARENT/periodic-<unix seconds of its scheduled time>`. A launch that fell
while the service was down (before `started_at`), or more than one due at once, gives one
catch-up launch named with the current time, and the other missed launches are dropped
(Nomad's leader does the same when it is established). `prohibit_overlap` skips (and records)
a launch while an earlier child has not finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.db.snapshot import ChildRecord, JobRecord
from reconciler.plan.children import child_spec, running
from reconciler.spec import cron
from reconciler.spec.load import JobSpec


@dataclass(frozen=True)
class Launch:
    parent: str
    child: str
    at: float  # the time in the child's name
    kind: str  # periodic | catch-up
    event: tuple[str, str]
    spec: JobSpec  # the child: a copy of the parent without `periodic`


@dataclass(frozen=True)
class Anchor:
    """The parent's next launch is computed from `at` (for version `digest`)."""

    parent: str
    at: float
    digest: str
    event: tuple[str, str] | None = None


@dataclass(frozen=True)
class Decision:
    launch: Launch | None
    anchor: Anchor | None
    next_at: float | None
    reason: str  # the parent's status reason


def child_id(parent: str, at: float) -> str:
    return f"{parent}/periodic-{int(at)}"


def shown(t: float | None, tz_name: str) -> str:
    if t is None:
        return "no launch left"
    try:
        tz = cron.zone(tz_name)
    except cron.CronError:
        tz = None
    when = datetime.fromtimestamp(t, tz) if tz is not None else datetime.fromtimestamp(t).astimezone()
    return "next launch " + when.strftime("%Y-%m-%d %H:%M:%S %Z")


def decide(
    spec: JobSpec, record: JobRecord | None, children: tuple[ChildRecord, ...], now: float,
    started_at: float,
) -> Decision:  # fmt: skip
    p = spec.job.periodic
    if p is None or not p.enabled:
        return Decision(None, None, None, "periodic launches disabled")
    exprs, tz = p.specs, p.time_zone
    if record is None or record.periodic_from is None or record.periodic_digest != spec.digest:
        nxt = cron.next_after(exprs, tz, now)
        return Decision(None, Anchor(spec.id, now, spec.digest), nxt, shown(nxt, tz))
    due = cron.next_after(exprs, tz, record.periodic_from)
    if due is None or due > now:
        return Decision(None, None, due, shown(due, tz))
    after = cron.next_after(exprs, tz, due)
    missed = due < started_at or (after is not None and after <= now)
    at, kind = (now, "catch-up") if missed else (due, "periodic")
    nxt = cron.next_after(exprs, tz, at)
    name = child_id(spec.id, at)
    busy = running(children)
    if p.prohibit_overlap and busy:
        why = f"{name} skipped: {busy[0].id} is still running (prohibit_overlap)"
        return Decision(None, Anchor(spec.id, at, spec.digest, ("Periodic Launch Skipped", why)),
                        nxt, shown(nxt, tz))  # fmt: skip
    what = "catch-up launch after downtime" if missed else "periodic launch"
    event = ("Periodic Launch", f"{name}: {what}")
    child = child_spec(spec, name, periodic=True)
    return Decision(Launch(spec.id, name, at, kind, event, child), None, nxt, shown(nxt, tz))
