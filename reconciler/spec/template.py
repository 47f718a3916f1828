"""Template blocks: Go text/template with consul-template's functions (spec/gotemplate).

Functions that need a cluster (Consul, Vault) are refused at validation with the template's
line and column, never rendered blank. Nomad Variables and Nomad services are read locally; what
a template reads is found here, before it runs, so that only their changes re-render it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from reconciler.spec import gotemplate, memo
from reconciler.spec.gotemplate import (
    Host,
    Iface,
    Registration,
    ServiceSource,
    TemplateError,
    VariableSource,
    Workload,
)
from reconciler.spec.models import Job
from reconciler.spec.taskblocks import Template

__all__ = [
    "Iface",
    "Registration",
    "ServiceSource",
    "TemplateError",
    "VariableSource",
    "Workload",
    "change_wait",
    "check_template",
    "job_reads_services",
    "reads_services",
    "reads_variables",
    "render",
]


def check_template(
    t: Template, text: str | None = None, workload: Workload | None = None
) -> str | None:
    """Why this template cannot be rendered (by that task), or None."""
    text = t.data if text is None else text
    if text is None:
        return None
    try:
        gotemplate.check(text, t.left_delimiter, t.right_delimiter, workload)
    except TemplateError as e:
        return f"template {e}"
    return None


def render(
    t: Template,
    text: str,
    env: Mapping[str, str],
    now: Callable[[], dt.datetime] | None = None,
    interfaces: Callable[[], list[Iface]] | None = None,
    variables: VariableSource | None = None,
    workload: Workload | None = None,
    services: ServiceSource | None = None,
) -> str:
    """Raises TemplateError (line and column of the template) when rendering fails."""
    host = Host(env=env, now=now or (lambda: dt.datetime.now(dt.UTC)),
                interfaces=interfaces or list, variables=variables, workload=workload,
                services=services)  # fmt: skip
    return gotemplate.render(text, host, left=t.left_delimiter, right=t.right_delimiter,
                             missing_key_error=t.error_on_missing_key)  # fmt: skip


def reads_variables(t: Template) -> bool:
    """Whether the template may read Nomad Variables (then their changes re-render it)."""
    return "nomadVar" in (t.data or "")


def reads_services(t: Template) -> frozenset[str]:
    """The Nomad service names the template reads ("*": any; "@list": the names and tags of
    all, for nomadServices): a change in their registrations re-renders it."""
    return gotemplate.services_read(t.data or "", t.left_delimiter, t.right_delimiter)


@memo.per_job(limit=100_000)
def job_reads_services(job: Job) -> frozenset[str]:
    """The service names any template of the job reads (see reads_services). Memoised per
    (frozen) job object, as the loader hands the same object back until its file changes."""
    return frozenset(
        name
        for group in job.group.values()
        for task in group.task.values()
        for t in task.template
        for name in reads_services(t)
    )


def change_wait(job: Job, reads: Callable[[Template], bool]) -> tuple[float, float] | None:
    """How long a change of data read by the job's templates waits before they render again
    (consul-template's quiescence: `min` of quiet, at most `max`). A task's templates render
    together, so the job waits only when every template reading the changed data sets `wait`,
    and then for the longest of them; None: render at once."""
    bounds = [
        t.wait.bounds() if t.wait else None
        for group in job.group.values()
        for task in group.task.values()
        for t in task.template
        if reads(t)
    ]
    if not bounds or any(b is None for b in bounds):
        return None
    return max(b[0] for b in bounds if b), max(b[1] for b in bounds if b)
