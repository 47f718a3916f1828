"""Canary deployments (`update { canary = N }`) on one node. Pure.

A job edit that changes what a group's tasks run (not only its templates or count), in a
group whose `update` asks for canaries, first starts N instances of the new version beside
the old ones, at indexes past both versions' counts (an instance's directories are named by
its index, so the two cannot share one), and changes nothing else. Once they are promoted
(every canary healthy with `auto_promote`, else `reconciler promote JOB`), instances
0..count-1 are updated in place by `max_parallel`, and the canaries stop when that update
is healthy. A canary that fails, or is not healthy within `healthy_deadline`, fails the
version (rolled back with `auto_revert`: the canaries stop, the old instances were never
touched). Everything this needs is in the store: the applied version, the attempted one and
whether it was promoted, and the slots themselves; a restarted service carries on.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.db.snapshot import CheckRecord, JobRecord, SlotKey, SlotRecord
from reconciler.plan import versions
from reconciler.plan.digest import task_digest, templates_only
from reconciler.plan.model import Builder
from reconciler.spec.load import JobSpec
from reconciler.spec.models import Job, effective_update


@dataclass(frozen=True)
class Deployment:
    """A new version rolling out with canaries."""

    old: JobSpec  # the applied version: what instances 0..count-1 run until promotion
    groups: Mapping[str, range]  # group -> its canaries' indexes
    promoted: bool

    def is_canary(self, key: SlotKey) -> bool:
        span = self.groups.get(key.group)
        return span is not None and key.idx in span


@functools.lru_cache(maxsize=64)
def _model(canonical: str) -> Job:
    return Job.model_validate_json(canonical)


def destructive(old: Job, new: Job, group: str) -> bool:
    """Whether a group's instances must be restarted to run the new version (Nomad's
    destructive update): a task added, removed or changed beyond what its templates render."""
    a, b = old.group[group], new.group[group]
    if set(a.task) != set(b.task):
        return True
    return any(
        not templates_only(task_digest(old, group, t), task_digest(new, group, t))
        for t in b.task
    )


def deployment(spec: JobSpec, record: JobRecord | None) -> Deployment | None:
    """The canary deployment of `spec`, when it is one: a service job with an applied
    version to keep running, and a group that asks for canaries and changes destructively."""
    if (
        record is None or spec.job.type != "service" or not record.applied_canonical
        or record.applied_digest in (None, spec.digest) or spec.digest in record.rejected
    ):  # fmt: skip
        return None
    old = _model(record.applied_canonical)
    groups: dict[str, range] = {}
    for gname, group in spec.job.group.items():
        n = effective_update(spec.job, group).canary
        if n and gname in old.group and destructive(old, spec.job, gname):
            base = max(group.count, old.group[gname].count)
            groups[gname] = range(base, base + n)
    if not groups:
        return None
    old_spec = JobSpec(spec.id, old, spec.file, record.applied_digest or "",
                       record.applied_canonical)  # fmt: skip
    promoted = record.promoted and record.attempted_digest == spec.digest
    return Deployment(old_spec, groups, promoted)


def _allocs(wanted: Mapping[SlotKey, str]) -> dict[str, list[SlotKey]]:
    out: dict[str, list[SlotKey]] = {}
    for k in sorted(wanted):
        out.setdefault(k.alloc, []).append(k)
    return out


def tally(
    spec: JobSpec, current: Mapping[SlotKey, SlotRecord], wanted: Mapping[SlotKey, str],
    now: float, checks: Mapping[str, tuple[CheckRecord, ...]],
) -> tuple[int, int, versions.Health]:  # fmt: skip
    """(healthy canaries, canaries, the gauge that judged them): a canary (a group
    instance) is healthy when each of its tasks is."""
    gauge = versions.Health(spec, current, wanted, now, checks)
    allocs = _allocs(wanted)
    healthy = sum(all([gauge.healthy(k) for k in keys]) for keys in allocs.values())
    return healthy, len(allocs), gauge


def judge(
    b: Builder, spec: JobSpec, record: JobRecord | None, current: Mapping[SlotKey, SlotRecord],
    wanted: Mapping[SlotKey, str], now: float, checks: Mapping[str, tuple[CheckRecord, ...]],
) -> None:  # fmt: skip
    """Before promotion: the canaries (`wanted`) alone decide. All healthy: promoted with
    auto_promote, else waiting for `reconciler promote` (without a deadline, as Nomad's
    deployment waiting for promotion). A failed or overdue canary fails the version."""
    update = effective_update(spec.job, next(iter(spec.job.group.values())))
    auto = all(effective_update(spec.job, spec.job.group[k.group]).auto_promote for k in wanted)
    manual = update.health_check == "manual"
    failed = [s for k in wanted if (s := current.get(k)) is not None and s.state == "failed"
              and s.spec_digest == wanted[k]]  # fmt: skip
    restarted = any((s := current.get(k)) is not None and s.restarts > 0
                    and s.version_digest == spec.digest for k in wanted)  # fmt: skip
    healthy, total, _gauge = tally(spec, current, wanted, now, checks)
    if not failed and not restarted and healthy == total:
        if auto and not manual:
            b.canaries.append(spec.id)
            b.status[spec.id] = ("reconciling", f"{total}/{total} canaries healthy: promoted")
        else:
            b.status[spec.id] = (
                "reconciling", f"waiting for promotion ({healthy}/{total} canaries healthy):"
                f" `reconciler promote {spec.id}`",
            )  # fmt: skip
        return
    versions.judge(b, spec, record, current, wanted, failed, "", now, checks)
    b.promote[:] = [j for j in b.promote if j != spec.id]  # (never: not every canary is healthy)
    status, reason = b.status.get(spec.id, ("reconciling", ""))
    if status == "reconciling":
        b.status[spec.id] = (status, f"{healthy}/{total} canaries healthy"
                                     + (f"; {reason}" if reason else ""))  # fmt: skip


def awaiting(
    spec: JobSpec, record: JobRecord | None, slots: Mapping[SlotKey, SlotRecord], now: float,
    checks: Mapping[str, tuple[CheckRecord, ...]],
) -> tuple[int, int] | None:
    """For `reconciler promote`: (healthy canaries, canaries) of a deployment waiting for
    promotion, None when there is none. Each canary is judged on the task spec it runs."""
    d = deployment(spec, record)
    if d is None or d.promoted:
        return None
    wanted = {k: s.spec_digest for k, s in slots.items()
              if d.is_canary(k) and s.version_digest == spec.digest}  # fmt: skip
    for gname, span in d.groups.items():  # a canary not started yet counts as unhealthy
        for idx in span:
            for tname in spec.job.group[gname].task:
                wanted.setdefault(SlotKey(spec.id, gname, idx, tname), "")
    healthy, total, _gauge = tally(spec, slots, wanted, now, checks)
    return healthy, total
