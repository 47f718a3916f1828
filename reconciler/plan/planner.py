"""The planner: a pure function from (desired, observed, host, now) to a frozen Plan.

No I/O, no clock, no ORM objects. Every desired task instance lands in exactly one bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType

from reconciler import constraints, lifecycle
from reconciler.db.snapshot import CheckRecord, JobRecord, Observed, SlotKey, SlotRecord
from reconciler.lifecycle import Gate
from reconciler.plan import admission, canary, parents, versions
from reconciler.plan.digest import services_part, task_digest, templates_only, variables_part
from reconciler.plan.model import ACTIVE, Action, Builder, Host, Plan, remove
from reconciler.spec.load import Desired, JobSpec
from reconciler.spec.models import RUNS_TO_COMPLETION, Job, effective_update
from reconciler.spec.ports import Recorded

__all__ = ["ACTIVE", "Action", "Host", "Plan", "leaving", "plan", "task_digest"]


def plan(
    desired: Desired,
    observed: Observed,
    host: Host,
    now: float,
    *,
    allow_empty: bool = False,
    scope: AbstractSet[str] | None = None,
) -> Plan:
    """With a `scope`, only those jobs are planned, and `observed` need hold only theirs: a
    pass costs what changed, not what exists. A scoped plan never stops a job whose file is
    gone; that needs every job in view (the "stop every job" guard), so it waits for a full
    plan, which the loop makes whenever a job leaves the desired state."""
    b = Builder()
    held = (
        admission.Usage(*observed.held) if observed.held is not None
        else admission.total(admission.of_slot(s) for s in observed.slots.values())
    )  # fmt: skip
    held_cores = (
        observed.held_cores if observed.held_cores is not None
        else frozenset(c for s in observed.slots.values() if s.state in admission.HOLDING
                       for c in s.core_ids)
    )  # fmt: skip
    held_ports = (
        observed.held_ports if observed.held_ports is not None
        else {port: s.key.alloc for s in sorted(observed.slots.values(), key=lambda s: s.state == "running")
              if s.state in admission.HOLDING for _label, port in s.ports}
    )  # fmt: skip
    b.room = admission.Room.of(host.capacity, held, held_cores, held_ports, host.reserved_ports)
    by_job: dict[str, list[SlotRecord]] = {}
    for slot in observed.slots.values():
        if scope is None or slot.key.job in scope:
            by_job.setdefault(slot.key.job, []).append(slot)

    # Re-adopt first: nothing else is decided about a slot whose process we do not hold yet.
    pending_adopt: set[SlotKey] = set()
    for slot in (s for slots in by_job.values() for s in slots):
        if slot.state in ACTIVE and slot.instance and slot.instance.id not in observed.live:
            b.adopt.append(Action(slot.key, "re-adopt after service restart"))
            pending_adopt.add(slot.key)

    held_jobs = _held_jobs(desired, observed)
    active_jobs = {j for j, slots in by_job.items() if any(s.state in ACTIVE for s in slots)}
    would_stop = {j for j in active_jobs if j not in desired.jobs and j not in held_jobs}
    guard = scope is None and not allow_empty
    if guard and would_stop and (not desired.directory_ok or would_stop == active_jobs):
        why = (
            f"job directory unreadable ({desired.directory_error})"
            if not desired.directory_ok
            else "this change would stop every job"
        )
        b.warnings.append(f"{why}: nothing is stopped (start with --allow-empty to allow it)")
        held_jobs |= would_stop

    if scope is None:
        every = set(observed.jobs) | set(desired.jobs) | set(by_job)
    else:  # what the scope names, never a walk over every desired job
        every = {j for j in scope if j in observed.jobs or j in desired.jobs or j in by_job}
    # children before parents: a parent's overlap check sees what this plan says of them
    for job_id in sorted(every, key=_children_first):
        slots = by_job.get(job_id, [])
        if any(s.key in pending_adopt for s in slots):
            continue  # decided on the next pass, once its running tasks are adopted
        record = observed.jobs.get(job_id)
        if job_id in held_jobs:
            for s in slots:
                b.keep.append(Action(s.key, "held: " + _held_reason(job_id, desired, record)))
            b.status[job_id] = (
                record.status if record else "failed",
                _held_reason(job_id, desired, record),
            )
            continue
        spec = desired.jobs.get(job_id)
        if spec is None and scope is not None:
            continue  # removed: left to a full plan
        if spec is None:
            remove(b, slots, "job file removed")
            if record and record.status != "removed" and not any(s.state in ACTIVE for s in slots):
                b.status[job_id] = ("removed", "")
            continue
        if record and record.paused:
            remove(b, slots, "job stopped by operator", intent="pause")
            b.status[job_id] = ("stopped", "stopped by operator")
            continue
        if spec.job.launches_children:
            parents.plan_parent(b, spec, record, slots, observed.children.get(job_id, ()), host, now)
            continue
        _plan_job(b, spec, record, slots, host, now, observed.checks)
        if record is not None and record.parent_id:
            parents.collect(b, spec, record, slots, host, now)

    if host.start_budget is not None and len(b.start) > host.start_budget:
        _hold_starts(b, host.start_budget, host.budget_reason)
    return b.freeze()


def _hold_starts(b: Builder, budget: int, reason: str) -> None:
    """The host cannot take more tasks now: starts beyond `budget` are Blocked, and their
    jobs' versions are not judged meanwhile (a deadline must not pass while they wait)."""
    b.start, over = b.start[:budget], b.start[budget:]
    for a in over:
        b.blocked.append(Action(a.key, "blocked: " + reason, a.spec, a.task_digest))
        b.status[a.key.job] = ("blocked", reason)
    held = {a.key.job for a in over}
    b.promote = [j for j in b.promote if j not in held]
    b.revert = [(j, why) for j, why in b.revert if j not in held]
    b.canaries = [j for j in b.canaries if j not in held]
    for job in held:
        b.attempt.pop(job, None)


def _children_first(job_id: str) -> tuple[bool, str]:
    return "/" not in job_id, job_id


def leaving(desired: Desired, observed: Observed) -> set[str]:
    """Jobs whose file is gone that a full plan still has work for (stop, forget, mark
    removed), unless they are held."""
    held = _held_jobs(desired, observed)
    with_slots = {k.job for k in observed.slots}
    return {
        j for j in set(observed.jobs) | with_slots
        if j not in desired.jobs and j not in held
        and (j in with_slots or observed.jobs[j].status != "removed")
    }  # fmt: skip


def _held_jobs(desired: Desired, observed: Observed) -> set[str]:
    held = set(desired.held)
    for job_id, rec in observed.jobs.items():
        if job_id not in desired.jobs and rec.source_file in desired.broken_files:
            held.add(job_id)
    return held


def _held_reason(job_id: str, desired: Desired, record: JobRecord | None) -> str:
    if job_id in desired.held:
        return "defined in more than one file; last good version kept"
    if record and record.source_file in desired.broken_files:
        return f"{record.source_file} has errors; last good version kept"
    return "nothing is stopped while the job directory is unusable"


def _effective_spec(spec: JobSpec, record: JobRecord | None) -> tuple[JobSpec, str]:
    """A version that was rolled back stays rolled back until the file changes again."""
    if record and spec.digest in record.rejected and record.applied_canonical:
        job = Job.model_validate_json(record.applied_canonical)
        reverted = JobSpec(
            spec.id, job, spec.file, record.applied_digest or "", record.applied_canonical
        )
        return reverted, f"version {spec.digest[:12]} was rolled back; running last good version"
    return spec, ""


def _plan_job(
    b: Builder,
    spec: JobSpec,
    record: JobRecord | None,
    slots: list[SlotRecord],
    host: Host,
    now: float,
    checks: Mapping[str, tuple[CheckRecord, ...]] = MappingProxyType({}),
) -> None:
    spec, reverted = _effective_spec(spec, record)
    job = spec.job
    if record is None or record.attempted_digest != spec.digest:
        b.attempt[spec.id] = spec
    unmet = constraints.unmet(job, host.attributes) + constraints.missing_volumes(job, host.volumes)
    if not host.exec_ok:
        unmet = ["driver.exec is not available on this node", *unmet]
    current = {s.key: s for s in slots}
    if not unmet and (why := b.room.never_fits(admission.of_job(job))):
        _never_fits(b, spec, current, why)
        return
    wanted: dict[SlotKey, str] = {}
    variables, services = host.held.get(spec.id, (host.variables, host.services))

    def want(version: JobSpec, gname: str, indexes: range) -> None:
        vjob = version.job
        for tname in vjob.group[gname].task:  # one digest for every instance of the group
            digest = (task_digest(vjob, gname, tname)
                      + variables_part(spec.id, vjob, gname, tname, variables)
                      + services_part(vjob, gname, tname, services))  # fmt: skip
            for idx in indexes:
                wanted[SlotKey(spec.id, gname, idx, tname)] = digest

    deploy = canary.deployment(spec, record)
    before = deploy if deploy is not None and not deploy.promoted else None
    old_keys: set[SlotKey] = set()  # before promotion: the instances left on the old version
    for gname, group in job.group.items():
        if before is not None and gname in before.groups:
            want(before.old, gname, range(before.old.job.group[gname].count))
            old_keys |= {k for k in wanted if k.group == gname}
            want(spec, gname, before.groups[gname])
        else:
            want(spec, gname, range(group.count))
    lingering: list[SlotRecord] = []  # promoted canaries: they go once the update is done
    for key, s in current.items():
        if key in wanted:
            continue
        if deploy is not None and deploy.promoted and deploy.is_canary(key) and s.state in ACTIVE:
            lingering.append(s)
        else:
            remove(b, [s], "no longer in the job (count or tasks changed)")
    if unmet:
        reason = "blocked: " + "; ".join(unmet)
        for key in wanted:
            found = current.get(key)
            if found and found.state == "running":
                b.stop.append(Action(key, reason, intent="pause"))
            else:
                b.blocked.append(Action(key, reason))
        b.status[spec.id] = ("blocked", "; ".join(unmet))
        return

    update = effective_update(job, next(iter(job.group.values())))
    gated = update.health_check == "checks" and (record is None or record.applied_digest != spec.digest)
    inflight = versions.in_flight(current, wanted, spec, update.min_healthy_time, now,
                                  checks if gated else None)  # fmt: skip
    budget = (update.max_parallel - inflight) if update.max_parallel > 0 else len(wanted)
    by_alloc: dict[tuple[str, int], list[SlotKey]] = {}
    for key in wanted:
        by_alloc.setdefault((key.group, key.idx), []).append(key)
    holding: dict[str, Recorded] = {}  # group instances that hold their place: their ports
    for s in current.values():
        if s.state in admission.HOLDING and (s.ports or s.key.alloc not in holding):
            holding[s.key.alloc] = s.ports
    for (gname, _idx), keys in sorted(by_alloc.items()):
        version = before.old if before is not None and keys[0] in old_keys else spec
        gate = lifecycle.gates(version.job, gname, keys, current, wanted)
        for key in sorted(keys):
            slot = current.get(key)
            if version is not spec and slot is not None and slot.state == "running":
                # an old instance runs whatever it runs until the canaries are promoted
                b.keep.append(Action(key, "running; canaries of the new version first", spec))
            elif before is not None and before.is_canary(key):  # never held by max_parallel
                _plan_slot(b, spec, key, wanted[key], slot, gate, len(wanted), now, holding)
            else:
                budget = _plan_slot(b, version, key, wanted[key], slot, gate, budget, now, holding)
    if spec.id in b.short_of_room:
        b.status[spec.id] = ("blocked", b.short_of_room[spec.id])
        return
    if before is not None:
        canaries = {k: d for k, d in wanted.items() if k not in old_keys}
        canary.judge(b, spec, record, current, canaries, now, checks)
        return
    failed = [s for s in current.values() if s.key in wanted and s.state == "failed"
              and s.spec_digest == wanted[s.key]]  # fmt: skip
    versions.judge(b, spec, record, current, wanted, failed, reverted, now, checks)
    if spec.id in b.promote or spec.id in dict(b.revert):
        remove(b, lingering, "canary: the update it went before is done")
    else:
        for s in lingering:
            b.keep.append(Action(s.key, "canary: stopped once the update is done", spec))
    if job.type in RUNS_TO_COMPLETION and wanted and all(
        (done := current.get(k)) is not None and done.state == "complete"
        and done.spec_digest == d for k, d in wanted.items()
    ):  # fmt: skip
        b.status[spec.id] = ("complete", "")  # a batch job whose every task succeeded


def _never_fits(
    b: Builder, spec: JobSpec, current: Mapping[SlotKey, SlotRecord], why: str
) -> None:
    """A job the empty node could not hold is blocked as a whole, before a single slot is
    built (a `count = 100000` costs one multiplication): nothing of it starts, what already
    runs is left as it is until the file changes."""
    for key, s in sorted(current.items()):
        b.keep.append(Action(key, f"{s.state}; new version blocked: {why}"))
    for gname, group in spec.job.group.items():
        for tname in group.task:
            b.blocked.append(Action(SlotKey(spec.id, gname, 0, tname),
                                    f"{why}; all {group.count} instances"))  # fmt: skip
    b.status[spec.id] = ("blocked", why)


def _claim(
    b: Builder, spec: JobSpec, key: SlotKey, s: SlotRecord | None, holding: Mapping[str, Recorded]
) -> str:
    """Room for a start: the task's growth over what its slot holds, or, for a group instance
    that holds nothing yet, every task of the group at once (Nomad places whole allocs). The
    group instance's ports first (Nomad assigns the network before it fits resources): those
    it holds, else new ones."""
    room = b.room
    group = spec.job.group[key.group]
    need = admission.of_task(group.task[key.task])
    network, alloc = group.network, key.alloc
    if s is not None and s.state in admission.HOLDING:
        return (room.pick_ports(alloc, network, s.ports or holding.get(alloc, ()))
                or room.claim(need - admission.of_slot(s))
                or room.pick_cores(key, need.cores, s.core_ids))  # fmt: skip
    if alloc in room.claimed_allocs:
        return ""  # claimed with a sibling task earlier in this plan, cores and ports too
    if alloc in holding:
        return (room.pick_ports(alloc, network, holding[alloc]) or room.claim(need)
                or room.pick_cores(key, need.cores))  # fmt: skip
    why = room.pick_ports(alloc, network, s.ports if s else ())
    if not why and (why := room.claim(admission.of_group(group))):
        room.release_ports(alloc)
    if why:
        return why
    room.claimed_allocs.add(key.alloc)
    for tname, task in group.task.items():
        why = why or room.pick_cores(key._replace(task=tname), task.resources.cores)
    return why


def _plan_slot(
    b: Builder, spec: JobSpec, key: SlotKey, digest: str, s: SlotRecord | None, gate: Gate,
    budget: int, now: float, holding: Mapping[str, Recorded],
) -> int:  # fmt: skip
    ph = gate.phases[key.task]
    may_start = {
        "prestart": True, "sidecar": True, "main": gate.main_ok,
        "poststart": gate.poststart_ok, "poststop": gate.poststop_ok,
    }[ph]  # fmt: skip
    waiting = {
        "main": "waiting for prestart tasks", "poststart": "waiting for main tasks to run",
        "poststop": "waiting for main tasks to finish",
    }.get(ph, "")  # fmt: skip

    def start(reason: str) -> None:
        if not may_start:
            b.keep.append(Action(key, waiting, spec, digest))
        elif why := _claim(b, spec, key, s, holding):
            b.blocked.append(Action(key, why, spec, digest))
            b.short_of_room.setdefault(key.job, why)
        else:
            b.start.append(Action(key, reason, spec, digest, cores=b.room.cores_of.get(key, ()),
                                  ports=b.room.ports_of.get(key.alloc, ())))  # fmt: skip

    if s is None:
        start("new")
        return budget
    if s.state == "stopping":
        b.keep.append(Action(key, "stopping", spec, digest))
        return budget
    if s.state == "running":
        if s.spec_digest == digest:
            b.keep.append(Action(key, "running", spec, digest))
            return budget
        group = spec.job.group[key.group]
        grows = admission.of_task(group.task[key.task]) - admission.of_slot(s)
        if templates_only(s.spec_digest, digest):
            b.rerender.append(Action(key, "template changed", spec, digest))
        elif why := (b.room.ports_collide(key.alloc, group.network, s.ports or holding.get(key.alloc, ()))
                     or b.room.check(grows)):  # fmt: skip
            # Nomad backs out the stop of the old alloc when the new one cannot be placed
            b.keep.append(Action(key, f"running the previous version; {why}", spec, digest))
            b.short_of_room.setdefault(key.job, why)
        elif budget > 0:
            b.restart.append(Action(key, "spec changed", spec, digest, intent="update"))
            budget -= 1
        else:
            b.keep.append(Action(key, "waiting for update (max_parallel)", spec, digest))
        return budget
    changed = s.spec_digest != digest
    if s.state in ("complete", "failed") and not changed:
        b.keep.append(Action(key, s.state + (f": {s.reason}" if s.reason else ""), spec, digest))
        return budget
    if s.state == "pending" and not changed and s.next_start_at and s.next_start_at > now:
        b.keep.append(Action(key, f"restarting in {s.next_start_at - now:.1f}s", spec, digest))
        return budget
    start("restart" if s.state == "pending" and not changed else ("update" if changed else "start"))
    return budget
