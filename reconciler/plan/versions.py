"""Rolling out a job version: updates in flight (max_parallel), promotion of a healthy
version, roll-back of a failing one (auto_revert), with health_check = "checks" gated on the
checks of reconciler.plan.health. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.db.snapshot import CheckRecord, JobRecord, SlotKey, SlotRecord
from reconciler.lifecycle import phase
from reconciler.plan import health
from reconciler.plan.model import Builder
from reconciler.spec.load import JobSpec
from reconciler.spec.models import effective_update


def in_flight(
    current: Mapping[SlotKey, SlotRecord], wanted: Mapping[SlotKey, str], spec: JobSpec,
    min_healthy: float, now: float, checks: Mapping[str, tuple[CheckRecord, ...]] | None,
) -> int:  # fmt: skip
    """Instances being updated: stopping or starting for it, or on the new version and not yet
    healthy (up for min_healthy_time, and with `checks` their checks good for as long)."""
    n = 0
    for key, s in current.items():
        if (s.state == "stopping" and s.stop_intent == "update") or (
            s.state == "pending" and s.reason == "update"
        ):
            n += 1
        elif (
            s.state == "running" and key in wanted and s.spec_digest == wanted[key]
            and s.version_digest == spec.digest and s.instance is not None
        ):  # fmt: skip
            if now - s.instance.started_at < min_healthy:
                n += 1
            elif checks is not None and (want := health.expected(spec.id, spec.job, key.group,
                                                                  key.task)):  # fmt: skip
                since, _ = health.slot_gate(want, checks.get(key.alloc, ()), s.instance.id,
                                            spec.digest)  # fmt: skip
                n += since is None or now - since < min_healthy
    return n


class Health:
    """Whether each task instance of a version is healthy: up for min_healthy_time, and with
    health_check = "checks" every check that gates it good for as long. What holds one back
    is collected for `status`."""

    def __init__(
        self, spec: JobSpec, current: Mapping[SlotKey, SlotRecord], wanted: Mapping[SlotKey, str],
        now: float, checks: Mapping[str, tuple[CheckRecord, ...]],
    ) -> None:  # fmt: skip
        job = spec.job
        self.spec, self.current, self.wanted, self.now, self.checks = spec, current, wanted, now, checks
        self.update = effective_update(job, next(iter(job.group.values())))
        self.phases = {k: phase(job.group[k.group].task[k.task]) for k in wanted}
        self.holders: list[str] = []  # checks that hold the version back, for `status`
        self.young: list[str] = []  # good checks, not yet for min_healthy_time

    def healthy(self, k: SlotKey) -> bool:
        if not self.tasks_healthy(k):
            return False
        s, spec, update = self.current.get(k), self.spec, self.update
        if update.health_check != "checks" or s is None or s.instance is None:
            return True
        want = health.expected(spec.id, spec.job, k.group, k.task)
        if not want:
            return True
        since, holder = health.slot_gate(want, self.checks.get(k.alloc, ()), s.instance.id,
                                         spec.digest)  # fmt: skip
        if since is None:
            assert holder is not None
            self.holders.append(f"{health.describe(holder)} ({k.alloc})")
            return False
        if self.now - since < update.min_healthy_time:
            self.young.append(f"checks of {k.alloc} passing for less than min_healthy_time")
            return False
        return True

    def tasks_healthy(self, k: SlotKey) -> bool:
        s, ph = self.current.get(k), self.phases[k]
        if s is None or s.spec_digest != self.wanted[k] or ph == "poststop":
            return ph == "poststop"
        if s.state == "complete":
            return True
        if s.state != "running" or s.instance is None:
            return False
        if ph == "prestart":
            return False
        return self.now - s.instance.started_at >= self.update.min_healthy_time


def judge(
    b: Builder, spec: JobSpec, record: JobRecord | None, current: Mapping[SlotKey, SlotRecord],
    wanted: Mapping[SlotKey, str], failed: list[SlotRecord], reverted: str, now: float,
    checks: Mapping[str, tuple[CheckRecord, ...]],
) -> None:  # fmt: skip
    """Promote a healthy attempted version, roll back a failing one (auto_revert). With
    health_check = "checks" a task is healthy once it and every check that gates it have
    been good for min_healthy_time; "manual" waits for `reconciler promote`."""
    gauge = Health(spec, current, wanted, now, checks)
    update, holders, young = gauge.update, gauge.holders, gauge.young
    healthy, _tasks_healthy = gauge.healthy, gauge.tasks_healthy

    unhealthy = [
        s for s in current.values()
        if s.key in wanted and s.spec_digest == wanted[s.key] and s.version_digest == spec.digest
        and (s.restarts > 0 or (s.state == "pending" and s.reschedule))  # failed, placed again
    ]  # fmt: skip
    applied = record.applied_digest if record else None
    if failed:
        names = ", ".join(str(s.key) for s in failed[:3])
        b.status[spec.id] = ("failed", reverted or f"task failed: {names}: {failed[0].reason}")
    elif reverted:
        b.status[spec.id] = ("failed", reverted)
    if spec.digest == applied:
        if not failed and not reverted:
            ready = all(_tasks_healthy(k) for k in wanted)
            for k in wanted:  # a running version stays ready; a failing check is named
                healthy(k)
            b.status[spec.id] = ("ready" if ready else "reconciling",
                                 "; ".join(dict.fromkeys(holders)))  # fmt: skip
        return
    attempted_at = record.attempted_at if record and record.attempted_digest == spec.digest else now
    overdue = attempted_at is not None and now - attempted_at > update.healthy_deadline
    manual = update.health_check == "manual"
    all_healthy = bool(wanted) and all([healthy(k) for k in wanted])
    if failed or unhealthy or (overdue and not manual):
        held = f": {holders[0]}" if holders else ""
        why = (
            f"task {failed[0].key} failed" if failed
            else f"task {unhealthy[0].key} failed; {unhealthy[0].reason}"
            if unhealthy and unhealthy[0].state == "pending" and unhealthy[0].reschedule
            else f"task {unhealthy[0].key} did not stay up for min_healthy_time" if unhealthy
            else f"not healthy within healthy_deadline{held}"
        )  # fmt: skip
        if update.auto_revert and applied:
            b.revert.append((spec.id, why))
            b.status[spec.id] = ("failed", f"version {spec.digest[:12]} {why}; rolling back")
        elif b.status.get(spec.id, ("",))[0] != "failed":
            b.status[spec.id] = ("failed", why)
        return
    if all_healthy and not manual:
        b.promote.append(spec.id)
        b.status[spec.id] = ("ready", "")
    elif manual and all_healthy:
        b.status.setdefault(spec.id, ("reconciling", "health_check is manual: waiting for "
                                      f"`reconciler promote {spec.id}`"))  # fmt: skip
    else:
        pending = holders + young
        waiting = "waiting for " + "; ".join(dict.fromkeys(pending)) if pending else ""
        b.status.setdefault(spec.id, ("reconciling", waiting))
