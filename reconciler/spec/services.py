"""`service`, `check` and `check_restart` blocks, and the rules that span them.

Nomad's native provider (`provider = "nomad"`) and Consul's (`"consul"`, Nomad's default) mean
the same thing on one node: a local registry and checks run by reconciler. Consul's check
fields (`success_before_passing`, `failures_before_*`, `script` checks, warnings) are accepted
under either provider. Validation follows nomad/structs/services.go.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from reconciler.spec import interpolate
from reconciler.spec.fieldtypes import Duration, Grown, Strict

Path = tuple[str | int, ...]
OnUpdate = Literal["require_healthy", "ignore_warnings", "ignore"]
HTTP_METHODS = frozenset(
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"]
)
_RFC1123 = re.compile(r"(?i:[a-z0-9]|[a-z0-9][a-z0-9\-]{0,61}[a-z0-9])")
NAME_VARS = ("JOB", "TASKGROUP", "TASK", "BASE")


def _port(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("port", "must be a port label or number")
    return str(value) if isinstance(value, int) else value


PortRef = Annotated[str, BeforeValidator(_port)]


class CheckRestart(Strict):
    """Unset fields take the service's block, then Nomad's defaults (limit 0, grace 1s)."""

    limit: int | None = Field(None, ge=0)
    grace: Duration | None = None
    ignore_warnings: bool | None = None


class Check(Strict):
    type: Literal["http", "tcp", "script"]
    interval: Duration
    timeout: Duration
    name: str = ""
    port: PortRef = ""
    path: str = ""
    method: str = "GET"
    header: dict[str, list[str]] = {}
    body: str = ""
    protocol: Literal["http", "https"] = "http"
    tls_skip_verify: bool = False
    address_mode: Literal["", "host", "alloc"] = ""
    command: str = ""
    args: list[str] = []
    task: str = ""
    success_before_passing: int = Field(0, ge=0)
    failures_before_critical: int = Field(0, ge=0)
    failures_before_warning: int = Field(0, ge=0)
    on_update: OnUpdate | None = None
    check_restart: CheckRestart | None = None

    @field_validator("interval", "timeout")
    @classmethod
    def _at_least_a_second(cls, v: float) -> float:
        if v < 1:
            raise PydanticCustomError("duration", 'must be at least "1s"')
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v.upper() not in HTTP_METHODS:
            raise PydanticCustomError("method", 'unknown HTTP method "{m}"', {"m": v})
        return v.upper()


class Service(Grown):
    ADDED_LATER = ("canary_tags",)

    name: str = ""
    provider: Literal["consul", "nomad"] = "consul"
    port: PortRef = ""
    tags: list[str] = []
    canary_tags: list[str] = []  # instead of `tags` while its instance is an unpromoted canary
    address: str = ""
    address_mode: Literal["auto", "host", "alloc"] = "auto"
    on_update: OnUpdate = "require_healthy"
    task: str = ""
    check: list[Check] = []
    check_restart: CheckRestart | None = None


# ---- resolved views (defaults filled in, service-level values merged into checks) ----


class EffectiveCheck(BaseModel):
    model_config = {"frozen": True}
    name: str
    check: Check
    on_update: OnUpdate
    restart_limit: int
    restart_grace: float
    ignore_warnings: bool


def service_name(svc: Service, job: str, group: str, task: str) -> str:
    """Nomad's default names and its ${JOB} ${TASKGROUP} ${TASK} ${BASE} substitution."""
    base = f"{job}-{group}-{task}" if task else f"{job}-{group}"
    name = svc.name or ("${BASE}" if task else f"{job}-{group}")
    values = {"JOB": job, "TASKGROUP": group, "TASK": task or "group", "BASE": base}
    return re.sub(r"\$\{(JOB|TASKGROUP|TASK|BASE)\}", lambda m: values[m.group(1)], name)


def effective_checks(svc: Service, name: str) -> list[EffectiveCheck]:
    out = []
    for c in svc.check:
        restart = [b for b in (c.check_restart, svc.check_restart) if b is not None]
        limit = next((b.limit for b in restart if b.limit is not None), 0)
        grace = next((b.grace for b in restart if b.grace is not None), 1.0)
        ignore = next((b.ignore_warnings for b in restart if b.ignore_warnings is not None), False)
        out.append(EffectiveCheck(
            name=c.name or f'service: "{name}" check', check=c,
            on_update=c.on_update or svc.on_update, restart_limit=limit, restart_grace=grace,
            ignore_warnings=ignore,
        ))  # fmt: skip
    return out


# ---- rules that span fields ----


def problems(job_id: str, group_name: str, group: Any, base: Path) -> Iterable[tuple[Path, str]]:
    """Every service of one group (group- and task-level): names, ports, checks."""
    ports = list(group.network.port)
    bridge = group.network.mode == "bridge"
    providers: set[str] = set()
    owners: list[tuple[Path, str, Service]] = [
        ((*base, "service", i), "", s) for i, s in enumerate(group.service)
    ]
    for tname, task in group.task.items():
        owners += [
            ((*base, "task", tname, "service", i), tname, s) for i, s in enumerate(task.service)
        ]
    seen: dict[tuple[str, str, str], Path] = {}
    for path, tname, svc in owners:
        providers.add(svc.provider)
        name = service_name(svc, job_id, group_name, tname)
        yield from _service(path, svc, name, tname, group, ports, bridge)
        key = (tname, name, svc.port)
        if key in seen:
            yield path, f'service "{name}" is duplicate'
        seen[key] = path
    if len(providers) > 1:
        yield base, "services of one group must use one provider (consul or nomad)"


def _service(
    path: Path, svc: Service, name: str, tname: str, group: Any, ports: list[str], bridge: bool
) -> Iterable[tuple[Path, str]]:
    stripped = re.sub(r"\$\{[^}]*\}", "ENV-VAR", name)
    if not _RFC1123.fullmatch(stripped):
        yield (
            (*path, "name"),
            (f'"{name}": service names use letters, digits and dashes (RFC 1123, at most 63)'),
        )
    for ref in interpolate.references(svc.name):
        if ref not in NAME_VARS:
            yield (
                (*path, "name"),
                (
                    f'"${{{ref}}}": service names may use ${{JOB}}, ${{TASKGROUP}}, ${{TASK}}'
                    " and ${BASE}"
                ),
            )
    yield from _port_ref((*path, "port"), svc.port, ports)
    if svc.address and svc.address_mode != "auto":
        yield (*path, "address"), 'address needs address_mode "auto"'
    if svc.address_mode == "alloc" and not bridge:
        yield (*path, "address_mode"), '"alloc" needs the group\'s network mode "bridge"'
    if svc.task and tname:
        yield (*path, "task"), "only a group-level service names a task"
    if svc.task and svc.task not in group.task:
        yield (*path, "task"), f'no task "{svc.task}" in this group'
    env_names: list[str] = list(group.task[tname].env) if tname else []
    svc_texts: list[tuple[Path, str]] = [((*path, "address"), svc.address)]
    svc_texts += [((*path, "tags", i), t) for i, t in enumerate(svc.tags)]
    svc_texts += [((*path, "canary_tags", i), t) for i, t in enumerate(svc.canary_tags)]
    for where, text in svc_texts:
        for ref in interpolate.references(text):
            if why := interpolate.unresolvable(ref, ports=ports, env=env_names):
                yield where, why
    names: set[str] = set()
    for i, ec in enumerate(effective_checks(svc, name)):
        cp: Path = (*path, "check", i)
        c = ec.check
        if ec.name in names:
            yield cp, f'check "{ec.name}" is duplicate'
        names.add(ec.name)
        if c.type in ("http", "tcp") and not (c.port or svc.port):
            yield (
                cp,
                f'check "{ec.name}" needs a port but neither the check nor the service has one',
            )
        yield from _port_ref((*cp, "port"), c.port, ports)
        if c.address_mode == "alloc" and not bridge:
            yield (*cp, "address_mode"), '"alloc" needs the group\'s network mode "bridge"'
        if c.type == "http":
            if not c.path:
                yield (*cp, "path"), "an http check needs a path"
            elif urlsplit(c.path).scheme:
                yield (*cp, "path"), "must be a relative path like /health, not a URL"
        if c.type == "script":
            if not c.command:
                yield (*cp, "command"), "a script check needs a command"
            if not tname and not (c.task or svc.task):
                yield (*cp, "task"), "a script check of a group service must name its task"
            for f in ("success_before_passing", "failures_before_critical",
                      "failures_before_warning"):  # fmt: skip
                if getattr(c, f):
                    yield (*cp, f), "is not supported for script checks (Consul's rule)"
        elif c.command or c.args:
            yield (*cp, "command"), f"only script checks run a command (this is {c.type})"
        if c.task and c.task not in group.task:
            yield (*cp, "task"), f'no task "{c.task}" in this group'
        if c.task and tname:
            yield (*cp, "task"), "only a check of a group-level service names a task"
        if ec.restart_limit and ec.on_update == "ignore":
            yield (*cp, "on_update"), 'on_update "ignore" is not compatible with check_restart'
        if ec.on_update == "ignore_warnings" and not ec.ignore_warnings:
            yield (
                (*cp, "on_update"),
                ('on_update "ignore_warnings" needs check_restart { ignore_warnings = true }'),
            )
        if ec.restart_grace < 0:
            yield (*cp, "check_restart", "grace"), "must not be negative"
        texts: list[tuple[Path, str]] = [((*cp, "path"), c.path), ((*cp, "command"), c.command),
                                         ((*cp, "body"), c.body)]  # fmt: skip
        texts += [((*cp, "args", j), a) for j, a in enumerate(c.args)]
        for where, text in texts:
            for ref in interpolate.references(text):
                if why := interpolate.unresolvable(ref, ports=ports, env=env_names):
                    yield where, why


def _port_ref(path: Path, port: str, ports: list[str]) -> Iterable[tuple[Path, str]]:
    if not port:
        return
    if port.isdigit():
        if not 1 <= int(port) <= 65535:
            yield path, "a port number is between 1 and 65535"
    elif port not in ports:
        known = ", ".join(ports) or "none"
        yield path, f'no port labelled "{port}" in the group\'s network block (labels: {known})'


def has_checks(group: Any) -> bool:
    return any(s.check for s in group.service) or any(
        s.check for t in group.task.values() for s in t.service
    )


def all_services(group: Any) -> Mapping[str, list[Service]]:
    """task name ("" for the group) -> its services."""
    out: dict[str, list[Service]] = {"": list(group.service)}
    for tname, task in group.task.items():
        out[tname] = list(task.service)
    return out
