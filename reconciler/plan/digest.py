"""What a running task instance depends on: a digest whose change means a restart, or only a
re-render when templates alone changed. Pure.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping

from reconciler.spec import memo
from reconciler.spec.models import Job
from reconciler.spec.template import Workload, reads_services, reads_variables

# Services and checks change in place (registered again), as Nomad updates them.
_RUNTIME_ONLY = {
    "restart", "kill_timeout", "kill_signal", "shutdown_delay", "constraint", "leader", "service",
}  # fmt: skip


@memo.per_job(limit=100_000)
def task_digest(job: Job, group_name: str, task_name: str) -> str:
    """What a running instance depends on: a change here means a restart (or a re-render).
    Memoised per (frozen) job object: the loader hands the same object back until its file
    changes, so a no-change pass hashes nothing."""
    return _task_digest(job, group_name, task_name)


def _task_digest(job: Job, group_name: str, task_name: str) -> str:
    group = job.group[group_name]
    task = group.task[task_name]
    core = task.model_dump(mode="json", exclude=_RUNTIME_ONLY | {"template"})
    body = {
        "type": job.type, "network": group.network.model_dump(mode="json"),
        "meta": [job.meta, group.meta], "task": core,
    }  # fmt: skip
    core_hash = _hash(body)
    tmpl_hash = _hash([t.model_dump(mode="json") for t in task.template])
    return f"{core_hash[:16]}.{tmpl_hash[:16]}"


def variables_part(
    job_id: str, job: Job, group: str, task: str, versions: Mapping[str, int]
) -> str:
    """For a task whose templates read Nomad Variables: the versions of the ones it may read,
    so a changed variable is a template change (re-render, signal or restart per change_mode)."""
    if not any(reads_variables(t) for t in job.group[group].task[task].template):
        return ""
    paths = Workload(job_id, group, task).readable()
    return "." + _hash([versions.get(p, 0) for p in paths])[:16]


def services_part(job: Job, group: str, task: str, registered: Mapping[str, str]) -> str:
    """For a task whose templates read Nomad services: the registrations of the names they
    read, so a service instance coming or going is a template change."""
    templates = job.group[group].task[task].template
    if not templates:
        return ""
    names = frozenset().union(*(reads_services(t) for t in templates))
    if not names:
        return ""
    if "*" in names:
        return _services_hash(tuple(sorted(registered.items())))
    return _services_hash(tuple(registered.get(n, "") for n in sorted(names)))


@functools.lru_cache(maxsize=4096)
def _services_hash(values: tuple[object, ...]) -> str:
    """Every reader of the same names hashes the same values: once per registry change."""
    return "." + _hash(list(values))[:16]


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def templates_only(old: str, new: str) -> bool:
    """Whether only what the task's templates render changed between two digests (their
    definitions, or the variables and services they read): a re-render, after which each
    template whose output changed acts per its change_mode (apply)."""
    return old.split(".")[0] == new.split(".")[0]
