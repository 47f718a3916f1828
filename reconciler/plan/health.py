"""Check state machines, pure: what a probe result does to a check's status (Consul's
success/failure counters), when `check_restart` restarts a task (Nomad's check watcher), and
whether a group instance's checks make it healthy for a deployment (Nomad's health tracker).

No clock and no I/O: every function takes `now`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from reconciler.db.snapshot import CheckRecord
from reconciler.spec import memo
from reconciler.spec.models import Job
from reconciler.spec.services import effective_checks, service_name

Status = Literal["pending", "passing", "warning", "critical"]
Result = Literal["passing", "warning", "critical"]


@dataclass(frozen=True)
class Thresholds:
    """0 means "at once" (Consul's defaults)."""

    success_before_passing: int = 0
    failures_before_critical: int = 0
    failures_before_warning: int = 0


@dataclass(frozen=True)
class CheckState:
    status: Status
    since: float  # when the status last changed
    successes: int
    failures: int
    output: str = ""


def new_check(t: Thresholds, now: float) -> CheckState:
    """A check starts pending. Like Consul's StatusHandler, the counters start at their
    thresholds, so the first result sets the status at once; the thresholds govern every
    change after that."""
    return CheckState("pending", now, t.success_before_passing, t.failures_before_critical)


def observe(
    state: CheckState, result: Result, output: str, t: Thresholds, now: float
) -> CheckState:
    """One probe result -> the new state (Consul agent/checks StatusHandler.updateCheck)."""
    status: Status = state.status
    if result in ("passing", "warning"):
        successes, failures = state.successes + 1, 0
        if successes >= t.success_before_passing:
            status = result
    else:
        successes, failures = 0, state.failures + 1
        warn_at = t.failures_before_warning or t.failures_before_critical
        if failures >= t.failures_before_critical:
            status = "critical"
        elif failures >= warn_at:
            status = "warning"
    since = state.since if status == state.status else now
    return CheckState(status, since, successes, failures, output)


# ---- check_restart (client/serviceregistration/watcher.go) ----


@dataclass(frozen=True)
class RestartWatch:
    limit: int
    interval: float
    ignore_warnings: bool
    grace_until: float
    unhealthy_since: float | None = None

    @property
    def restart_after(self) -> float:
        """Continuous unhealthiness that restarts the task: interval × (limit − 1)."""
        return self.interval * (self.limit - 1)


def watch(
    limit: int, grace: float, interval: float, ignore_warnings: bool, now: float
) -> RestartWatch:
    """Begin watching a check of a task that has just started; grace counts from now."""
    return RestartWatch(limit, interval, ignore_warnings, now + grace)


def poll(w: RestartWatch, status: Status, now: float) -> tuple[RestartWatch, bool]:
    """One poll of the watcher (Nomad polls every second): True means restart the task now.
    Pending and critical count as unhealthy, and warning unless ignore_warnings."""
    unhealthy = status in ("pending", "critical") or (status == "warning" and not w.ignore_warnings)
    if not unhealthy:
        return (replace(w, unhealthy_since=None) if w.unhealthy_since is not None else w), False
    if now < w.grace_until:
        return w, False
    if w.unhealthy_since is None:
        w = replace(w, unhealthy_since=now)
    assert w.unhealthy_since is not None
    return w, now >= w.unhealthy_since + w.restart_after


# ---- deployments (client/allochealth/tracker.go) ----


@dataclass(frozen=True)
class CheckView:
    """What the deployment gate needs to know about one check of a group instance."""

    name: str
    task: str  # "" for a group service's check
    status: Status
    since: float
    on_update: str  # require_healthy | ignore_warnings | ignore


def counts(c: CheckView) -> bool:
    """Readiness checks (on_update = "ignore") never hold a deployment back."""
    return c.on_update != "ignore"


def good(c: CheckView) -> bool:
    return c.status == "passing" or (c.status == "warning" and c.on_update == "ignore_warnings")


def healthy_since(checks: Iterable[CheckView]) -> tuple[float | None, CheckView | None]:
    """Since when every check that counts has been good (None: not now), and the first check
    that holds the instance back."""
    since = 0.0
    for c in checks:
        if not counts(c):
            continue
        if not good(c):
            return None, c
        since = max(since, c.since)
    return since, None


def describe(c: CheckView) -> str:
    where = f" of task {c.task}" if c.task else ""
    return f'check "{c.name}"{where} is {c.status}'


# ---- which checks gate a task slot ----

Expected = tuple[str, str, str, str]  # (task or "" for the group, service, check, on_update)
@memo.per_job(limit=10_000, at=1)
def expected(job_id: str, job: Job, group: str, task: str) -> list[Expected]:
    """Every check that gates this task: its own services' and its group's. Memoised per
    (frozen) job object."""
    g = job.group[group]
    out: list[Expected] = []
    for owner, svcs in (("", g.service), (task, g.task[task].service)):
        for svc in svcs:
            sname = service_name(svc, job_id, group, owner)
            out += [(owner, sname, ec.name, ec.on_update) for ec in effective_checks(svc, sname)]
    return out


def slot_gate(
    want: list[Expected], records: Iterable[CheckRecord], instance_id: int, version: str,
) -> tuple[float | None, CheckView | None]:  # fmt: skip
    """Since when the checks of one running task (and its group) have all been good. A check
    not yet registered for this run (a new instance, a new version) counts as pending."""
    have = {(r.task, r.service, r.name): r for r in records}
    views = []
    for task, service, name, on_update in want:
        r = have.get((task, service, name))
        run = f"i{instance_id}:" if task else f"v{version[:16]}:"
        if r is None or not r.identity.startswith(run):
            views.append(CheckView(name, task, "pending", 0.0, on_update))
        else:
            views.append(CheckView(name, task, r.status, r.since, on_update))  # type: ignore[arg-type]
    return healthy_since(views)
