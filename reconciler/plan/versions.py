"""Rolling out a job version: updates in flight (max_parallel), promotion of a healthy
version, roll-back of a failing one (auto_revert). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.db.snapshot import JobRecord, SlotKey, SlotRecord
from reconciler.lifecycle import phase
from reconciler.plan.model import Builder
from reconciler.spec.load import JobSpec
from reconciler.spec.models import effective_update


def in_flight(
    current: Mapping[SlotKey, SlotRecord], wanted: Mapping[SlotKey, str], spec: JobSpec,
    min_healthy: float, now: float,
) -> int:  # fmt: skip
    n = 0
    for key, s in current.items():
        if (s.state == "stopping" and s.stop_intent == "update") or (
            s.state == "pending" and s.reason == "update"
        ):
            n += 1
        elif (
            s.state == "running" and key in wanted and s.spec_digest == wanted[key]
            and s.version_digest == spec.digest and s.instance is not None
            and now - s.instance.started_at < min_healthy
        ):  # fmt: skip
            n += 1
    return n


def judge(
    b: Builder, spec: JobSpec, record: JobRecord | None, current: Mapping[SlotKey, SlotRecord],
    wanted: Mapping[SlotKey, str], failed: list[SlotRecord], reverted: str, now: float,
) -> None:  # fmt: skip
    """Promote a healthy attempted version, roll back a failing one (auto_revert)."""
    job = spec.job
    update = effective_update(job, next(iter(job.group.values())))
    phases = {k: phase(job.group[k.group].task[k.task]) for k in wanted}

    def healthy(k: SlotKey) -> bool:
        s = current.get(k)
        if s is None or s.spec_digest != wanted[k] or phases[k] == "poststop":
            return phases[k] == "poststop"
        if s.state == "complete":
            return True
        if s.state != "running" or s.instance is None:
            return False
        if phases[k] == "prestart":
            return False
        return now - s.instance.started_at >= update.min_healthy_time

    unhealthy = [
        s for s in current.values()
        if s.key in wanted and s.spec_digest == wanted[s.key] and s.restarts > 0
        and s.version_digest == spec.digest
    ]  # fmt: skip
    applied = record.applied_digest if record else None
    if failed:
        names = ", ".join(str(s.key) for s in failed[:3])
        b.status[spec.id] = ("failed", reverted or f"task failed: {names}: {failed[0].reason}")
    elif reverted:
        b.status[spec.id] = ("failed", reverted)
    if spec.digest == applied:
        if not failed and not reverted:
            ready = all(healthy(k) for k in wanted)
            b.status[spec.id] = ("ready", "") if ready else ("reconciling", "")
        return
    attempted_at = record.attempted_at if record and record.attempted_digest == spec.digest else now
    overdue = attempted_at is not None and now - attempted_at > update.healthy_deadline
    if failed or unhealthy or overdue:
        why = (
            f"task {failed[0].key} failed" if failed
            else f"task {unhealthy[0].key} did not stay up for min_healthy_time" if unhealthy
            else "not healthy within healthy_deadline"
        )  # fmt: skip
        if update.auto_revert and applied:
            b.revert.append((spec.id, why))
            b.status[spec.id] = ("failed", f"version {spec.digest[:12]} {why}; rolling back")
        elif b.status.get(spec.id, ("",))[0] != "failed":
            b.status[spec.id] = ("failed", why)
        return
    if wanted and all(healthy(k) for k in wanted):
        b.promote.append(spec.id)
        b.status[spec.id] = ("ready", "")
    else:
        b.status.setdefault(spec.id, ("reconciling", ""))
