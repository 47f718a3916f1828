"""Template blocks: Go text/template with consul-template's functions (spec/gotemplate).

Functions that need a cluster (Consul, Vault, Nomad variables and services) are refused at
validation with the template's line and column, never rendered blank."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from reconciler.spec import gotemplate
from reconciler.spec.gotemplate import Host, Iface, TemplateError, VariableSource, Workload
from reconciler.spec.models import Template

__all__ = [
    "Iface",
    "TemplateError",
    "VariableSource",
    "Workload",
    "check_template",
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
) -> str:
    """Raises TemplateError (line and column of the template) when rendering fails."""
    host = Host(env=env, now=now or (lambda: dt.datetime.now(dt.UTC)),
                interfaces=interfaces or list, variables=variables, workload=workload)  # fmt: skip
    return gotemplate.render(text, host, left=t.left_delimiter, right=t.right_delimiter,
                             missing_key_error=t.error_on_missing_key)  # fmt: skip


def reads_variables(t: Template) -> bool:
    """Whether the template may read Nomad Variables (then their changes re-render it)."""
    return "nomadVar" in (t.data or "")
