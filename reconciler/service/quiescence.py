"""A template's `wait` (consul-template's quiescence), per job: after a change of the data
its templates read (a service instance, a variable), the job keeps planning with the data it
rendered until the change has been quiet for `min`, or `max` has passed since the first one.
Then it is planned with what is current and renders once, whatever came meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field

from reconciler.spec.gotemplate.nomadservices import ANY
from reconciler.spec.load import JobSpec
from reconciler.spec.models import Job
from reconciler.spec.taskblocks import Template
from reconciler.spec.template import (
    change_wait,
    job_reads_services,
    reads_services,
    reads_variables,
)

Snapshot = tuple[Mapping[str, int], Mapping[str, str]]  # variable versions, service digests


@dataclass
class Hold:
    fire_at: float
    deadline: float
    seen: Snapshot  # what the job's running tasks were rendered with


@dataclass
class Quiescence:
    holds: dict[str, Hold] = field(default_factory=dict)

    def changed(self, job: str, bounds: tuple[float, float], before: Snapshot, now: float) -> None:
        """The data `job` reads changed at `now` (consul-template's quiescence.tick)."""
        low, high = bounds
        hold = self.holds.get(job)
        if hold is None:
            self.holds[job] = Hold(now + low, now + high, before)
        else:  # snoozed for min again, never past the deadline set by the first change
            hold.fire_at = min(now + low, hold.deadline)

    def release(self, now: float) -> set[str]:
        """The jobs whose wait is over: they are planned with current data again."""
        done = {job for job, hold in self.holds.items() if hold.fire_at <= now}
        for job in done:
            del self.holds[job]
        return done

    def seen(self) -> dict[str, Snapshot]:
        return {job: hold.seen for job, hold in self.holds.items()}

    def fire_times(self) -> dict[str, float]:
        return {job: hold.fire_at for job, hold in self.holds.items()}


def readers(specs: Mapping[str, JobSpec], reads: Callable[[Job], bool]) -> set[str]:
    return {job_id for job_id, spec in specs.items() if reads(spec.job)}


def service_readers(specs: Mapping[str, JobSpec], changed: Set[str]) -> set[str]:
    """The jobs whose templates read one of the changed service names (or any name)."""

    def reads(job: Job) -> bool:
        names = job_reads_services(job)
        return bool(names) and (ANY in names or bool(names & changed))

    return readers(specs, reads)


def variable_readers(specs: Mapping[str, JobSpec]) -> set[str]:
    return readers(specs, lambda job: any(
        reads_variables(t) for g in job.group.values() for task in g.task.values()
        for t in task.template
    ))  # fmt: skip


def render_now(
    q: Quiescence, jobs: Set[str], specs: Mapping[str, JobSpec],
    reads: Callable[[Template], bool], before: Snapshot, now: float,
) -> set[str]:  # fmt: skip
    """Of the jobs whose templates read changed data, those to plan at once; the others are
    held by their `wait` with the data they rendered (`before`)."""
    at_once: set[str] = set()
    for job in jobs:
        bounds = change_wait(specs[job].job, reads)
        if bounds is None or bounds[1] <= 0:
            at_once.add(job)
            q.holds.pop(job, None)  # it renders now: with everything current
        else:
            q.changed(job, bounds, before, now)
    return at_once


def reads_any_service(t: Template) -> bool:
    return bool(reads_services(t))
