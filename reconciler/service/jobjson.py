"""A job in Nomad's JSON (api.Job, as `nomad job plan` and `nomad job run` send it) -> the HCL
job file reconciler reads. The file is then parsed like any other, so the JSON meets exactly the
rules (and gives the same file:line errors) a job file does; nothing is trusted on the way.

Fields Nomad's server sets (IDs, indexes, status, region) are dropped. A field reconciler's
model knows is kept even when zero (`Count = 0` means zero); an unknown field is dropped when it
is empty or zero (Nomad's JSON carries every field) and otherwise written out, where the job
language accepts it with a warning or refuses it by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from reconciler.spec import models, services
from reconciler.spec.units import format_duration

_SERVER_SET = {
    "ID", "Name", "Region", "Namespace", "Datacenters", "NodePool", "Status",
    "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex", "ModifyIndex",
    "JobModifyIndex", "ParentID", "Dispatched", "Stop", "ConsulNamespace", "VaultNamespace",
    "NomadTokenID", "VersionTag", "Payload", "DispatchIdempotencyToken", "Priority",
    "AllAtOnce", "reconciler",
}  # fmt: skip
_RENAMED = {
    "TaskGroups": "group", "Tasks": "task", "RestartPolicy": "restart",
    "ReschedulePolicy": "reschedule",
    "Constraints": "constraint", "Templates": "template", "LogConfig": "logs",
    "Networks": "network", "MemoryMB": "memory", "MemoryMaxMB": "memory_max", "CPU": "cpu",
    "SecretsMB": "secrets",
    "MaxFileSizeMB": "max_file_size", "EmbeddedTmpl": "data", "SourcePath": "source",
    "DestPath": "destination", "Envvars": "env", "LeftDelim": "left_delimiter",
    "RightDelim": "right_delimiter", "ErrMissingKey": "error_on_missing_key",
    "LTarget": "attribute", "RTarget": "value", "Operand": "operator",
    "Volumes": "volume", "VolumeMounts": "volume_mount", "DNS": "dns",
    "Services": "service", "Checks": "check", "PortLabel": "port", "CheckRestart": "check_restart",
}  # fmt: skip
_LABELLED = {"group", "task"}
_OPAQUE = {"config", "env", "meta", "header"}  # maps whose keys are the user's
_DURATIONS = {
    "min_healthy_time", "healthy_deadline", "progress_deadline", "stagger", "interval",
    "delay", "kill_timeout", "shutdown_delay", "splay", "min", "max", "timeout", "grace",
    "max_delay",
}  # fmt: skip


def _known() -> set[str]:
    """Every field name of the job model: these are written even when zero."""
    names: set[str] = set()
    for obj in [*vars(models).values(), *vars(services).values()]:
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            names |= set(obj.model_fields)
    return names


_KNOWN = _known()


def snake(name: str) -> str:
    if name in _RENAMED:
        return _RENAMED[name]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _empty(v: Any) -> bool:
    return v is None or v is False or v == 0 or v == "" or v == [] or v == {}


def _quote(s: str) -> str:
    # JSON's string escapes are HCL's. A JSON string is literal text (Nomad interpolates
    # ${NOMAD_...} when the task starts), so HCL's template sequences are escaped.
    return json.dumps(s).replace("${", "$${").replace("%{", "%%{")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_quote(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    return _quote(str(v))


def _ports(net: Mapping[str, Any]) -> Iterator[str]:
    for kind in ("ReservedPorts", "DynamicPorts"):
        for p in net.get(kind) or []:
            lines = []
            if kind == "ReservedPorts" and p.get("Value"):
                lines.append(f"static = {int(p['Value'])}")
            if p.get("To"):
                lines.append(f"to = {int(p['To'])}")
            if p.get("HostNetwork") not in (None, "", "default"):
                lines.append(f"host_network = {_quote(p['HostNetwork'])}")
            yield f"port {_quote(p.get('Label', ''))} {{\n" + _indent(lines) + "}"


def _indent(lines: list[str]) -> str:
    return "".join("  " + line + "\n" for part in lines for line in part.splitlines())


def _body(obj: Mapping[str, Any], top: bool = False, named: bool = False) -> list[str]:
    """`named`: a block whose `name` is a field (service, check), not its label."""
    out: list[str] = []
    for key, v in obj.items():
        if (top and key in _SERVER_SET) or v is None:
            continue
        name = snake(key)
        if name == "name" and not top and not named:
            continue  # a label, written on the block
        if name not in _KNOWN and _empty(v):
            continue
        if name in _DURATIONS and isinstance(v, int | float) and not isinstance(v, bool):
            out.append(f"{name} = {_quote(format_duration(v / 1e9))}")
        elif name == "network" and isinstance(v, list):
            for net in v:
                inner = [f"mode = {_quote(net.get('Mode') or 'host')}"]
                if net.get("Hostname"):
                    inner.append(f"hostname = {_quote(net['Hostname'])}")
                if dns := net.get("DNS"):
                    inner.append("dns {\n" + _indent(_body(dns)) + "}")
                out.append("network {\n" + _indent(inner + list(_ports(net))) + "}")
        elif name in _OPAQUE and isinstance(v, dict):
            out.append(f"{name} {{\n" + _indent([f"{_key(k)} = {_value(x)}" for k, x in v.items()]) + "}")
        elif name == "volume" and isinstance(v, dict):
            for alias, vol in v.items():  # Nomad's Volumes: a map keyed by the alias
                out.append(f"volume {_quote(str(alias))} {{\n" + _indent(_body(vol)) + "}")
        elif name in _LABELLED and isinstance(v, list):
            for item in v:
                out.append(f"{name} {_quote(str(item.get('Name', '')))} {{\n" + _indent(_body(item)) + "}")
        elif isinstance(v, dict):
            out.append(f"{name} {{\n" + _indent(_body(v)) + "}")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            named = name in ("service", "check")
            out += [f"{name} {{\n" + _indent(_body(x, named=named)) + "}" for x in v]
        else:
            out.append(f"{name} = {_value(v)}")
    return out


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", k) else _quote(k)


def to_hcl(job: Mapping[str, Any]) -> str:
    """The job file for a Nomad JSON job. Raises ValueError when it names no job."""
    job_id = job.get("ID") or job.get("Name")
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("the job has no ID")
    return f"job {_quote(job_id)} {{\n" + _indent(_body(job, top=True)) + "}\n"
