"""The node configuration file, in the style of Nomad's agent config:

plugin "exec" { config { no_pivot_root = false  default_pid_mode = "private"
                         default_ipc_mode = "private"  allow_caps = [...] } }
plugin "raw_exec" { config { enabled = false } }
client { chroot_env { "/usr" = "/usr" }  meta { rack = "r1" }
         host_volume "pgdata" { path = "/srv/pgdata"  read_only = false }
         artifact { http_read_timeout = "30m"  http_max_size = "100GB"
                    decompression_size_limit = "100GB"  decompression_file_count_limit = 4096 }
         cpu_total_compute = 4000  memory_total_mb = 2048
         reserved { cpu = 500  memory = 512  cores = "0-1"  reserved_ports = "22,80" } }
reconciler { allow_root = false  cgroup_version = 1  pids_max = 4096
             bridge_name = "reconciler0"  bridge_cidr = "172.26.64.0/20"
             job_gc_threshold = "4h" }
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from reconciler.spec.fieldtypes import Duration, Scalar, Strict
from reconciler.spec.ports import parse_ranges
from reconciler.spec.problems import Problem
from reconciler.spec.units import CAPABILITIES, normalize_cap


class ExecPluginConfig(Strict):
    no_pivot_root: bool = False
    default_pid_mode: Literal["private", "host"] = "private"
    default_ipc_mode: Literal["private", "host"] = "private"
    allow_caps: list[str] | None = None
    denied_host_uids: str = ""
    denied_host_gids: str = ""

    @field_validator("allow_caps")
    @classmethod
    def _caps(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        caps = [normalize_cap(c) for c in v]
        if bad := [c for c in caps if c != "all" and c not in CAPABILITIES]:
            raise PydanticCustomError("capability", "unknown capability {c}", {"c": ", ".join(bad)})
        return caps


class RawExecConfig(Strict):
    enabled: bool = False


class ReconcilerSettings(Strict):
    allow_root: bool = False
    cgroup_version: Literal[1, 2] | None = None
    pids_max: int = Field(4096, ge=16)
    bridge_name: str = Field("reconciler0", max_length=15)
    bridge_cidr: str = "172.26.64.0/20"
    http_token: str = ""  # required as X-Nomad-Token by the HTTP API when set
    template_dirs: list[str] = []  # host dirs whose files a template `source` may name
    job_gc_threshold: Duration = 4 * 3600.0  # Nomad's server default

    @field_validator("template_dirs")
    @classmethod
    def _absolute_dirs(cls, v: list[str]) -> list[str]:
        for d in v:
            if not d.startswith("/") or not os.path.isdir(d):
                raise PydanticCustomError("template_dirs", "{d} is not an absolute directory",
                                          {"d": d})  # fmt: skip
        return v


def parse_cpuset(text: str) -> tuple[int, ...]:
    """A Linux cpuset list ("0-1,3") -> its core ids, sorted."""
    ids: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())) or (sep and int(hi) < int(lo)):
            raise ValueError(f'"{part}" is not a core id or range like "0-3"')
        ids.update(range(int(lo), int(hi if sep else lo) + 1))
    return tuple(sorted(ids))


class Reserved(Strict):
    """Nomad's `client { reserved }`: what tasks may not have of the node."""

    cpu: int = Field(0, ge=0)  # MHz
    memory: int = Field(0, ge=0)  # MB
    cores: str = ""  # a cpuset list, as Nomad: "0-1,3"
    disk: int = Field(0, ge=0)  # accepted; ephemeral disk is not reserved on one node
    reserved_ports: str = ""  # host ports no task is given, as Nomad: "22,80,8000-8100"

    @field_validator("cores")
    @classmethod
    def _cpuset(cls, v: str) -> str:
        try:
            parse_cpuset(v)
        except ValueError as e:
            raise PydanticCustomError("cores", str(e)) from None
        return v

    @field_validator("reserved_ports")
    @classmethod
    def _port_ranges(cls, v: str) -> str:
        try:
            parse_ranges(v)
        except ValueError as e:
            raise PydanticCustomError("reserved_ports", str(e)) from None
        return v


class HostVolume(Strict):
    """`client { host_volume "NAME" { path read_only } }`: a host directory jobs may mount."""

    path: str = ""
    read_only: bool = False

    @field_validator("path")
    @classmethod
    def _existing_dir(cls, v: str) -> str:
        if not v:
            raise PydanticCustomError("host_volume", "Missing path in host_volume config")
        if not v.startswith("/"):
            raise PydanticCustomError("host_volume", "path must be absolute")
        if not os.path.isdir(v):
            raise PydanticCustomError("host_volume", "failed to validate volume: {p} is not a "
                                      "directory", {"p": v})  # fmt: skip
        return v


class ArtifactSettings(Strict):
    """Nomad's `client { artifact {} }` (nomad/structs/config/artifact.go); 0 means no limit."""

    http_read_timeout: Duration = 1800.0
    http_max_size: str = "100GB"
    git_timeout: Duration = 1800.0
    decompression_size_limit: str = "100GB"
    decompression_file_count_limit: int = Field(4096, ge=0)
    # accepted and without effect: reconciler has no getter for these
    gcs_timeout: Duration = 1800.0
    hg_timeout: Duration = 1800.0
    s3_timeout: Duration = 1800.0
    disable_filesystem_isolation: bool = False
    filesystem_isolation_extra_paths: list[str] = []
    set_environment_variables: str = ""

    @field_validator("http_max_size", "decompression_size_limit")
    @classmethod
    def _size(cls, v: str) -> str:
        try:
            parse_bytes(v)
        except ValueError as e:
            raise PydanticCustomError("size", str(e)) from None
        return v


def parse_bytes(text: str) -> int:
    """Nomad's humanized sizes: "100GB", "1.5MiB", "512" (bytes); "0" is no limit."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?i?B?)?\s*", text, re.I)
    if not m:
        raise ValueError(f'"{text}" is not a size like "100GB" or "512MiB"')
    unit = (m.group(2) or "").upper().rstrip("B")
    power = "KMGTP".find(unit[:1]) + 1 if unit else 0
    base = 1024 if unit.endswith("I") else 1000
    return int(float(m.group(1)) * base**power)


class NodeSettings(Strict):
    exec: ExecPluginConfig = ExecPluginConfig()
    raw_exec: RawExecConfig = RawExecConfig()
    chroot_env: dict[str, str] | None = None
    meta: dict[str, Scalar] = {}
    reserved: Reserved = Reserved()
    cpu_total_compute: int = Field(0, ge=0)
    memory_total_mb: int = Field(0, ge=0)
    host_volume: dict[str, HostVolume] = {}
    reconciler: ReconcilerSettings = ReconcilerSettings()
    artifact: ArtifactSettings = ArtifactSettings()


class NodeConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _one(val: Any) -> dict[str, Any]:
    if isinstance(val, list):
        return val[0] if val else {}
    return val if isinstance(val, dict) else {}


def load_node_config(path: Path | None) -> NodeSettings:
    if path is None:
        return NodeSettings()
    from reconciler.spec import hcl  # the parser (lark, ~12 MB) only when there is a file

    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise NodeConfigError(
            [Problem(name, None, "", f"cannot read: {e.strerror or e}")]
        ) from None
    try:
        parsed = hcl.parse(text)
    except hcl.HclSyntaxError as e:
        raise NodeConfigError(
            [Problem(name, e.line, "", e.message, column=e.column, excerpt=e.excerpt)]
        ) from None
    body = parsed.body
    shaped: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, val in body.items():
        if key == "plugin":
            for item in val:
                for plugin, inner in item.items():
                    if plugin not in ("exec", "raw_exec"):
                        problems.append(
                            Problem(
                                name,
                                parsed.line_of(("plugin", plugin)),
                                f"plugin.{plugin}",
                                'only the "exec" and "raw_exec" plugins are configurable',
                            )
                        )
                        continue
                    shaped[plugin] = _one(_one(inner).get("config", {}))
        elif key == "client":
            client = _one(val)
            for k, v in client.items():
                if k in ("chroot_env", "meta", "reserved", "artifact"):
                    shaped[k] = _one(v)
                elif k in ("cpu_total_compute", "memory_total_mb"):
                    shaped[k] = v
                elif k == "host_volume":
                    for item in v if isinstance(v, list) else [v]:
                        for vname, inner in item.items():
                            shaped.setdefault(k, {})[vname] = _one(inner)
                else:
                    problems.append(
                        Problem(
                            name,
                            parsed.line_of(("client", 0, k)),
                            f"client.{k}",
                            "ignored: reconciler reads chroot_env, meta, reserved, host_volume, artifact,"
                            " cpu_total_compute and memory_total_mb only",
                            "warning",
                        )
                    )
        elif key == "reconciler":
            shaped["reconciler"] = _one(val)
        else:
            problems.append(
                Problem(
                    name,
                    parsed.line_of((key,)),
                    key,
                    f'unknown block "{key}" (plugin, client or reconciler)',
                )
            )
    try:
        settings = NodeSettings.model_validate(shaped)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            loc = ".".join(str(x) for x in err["loc"])
            problems.append(
                Problem(name, None, loc, str(err["msg"]).replace("Input should be", "must be"))
            )
        settings = NodeSettings()
    if any(p.severity == "error" for p in problems):
        raise NodeConfigError(problems)
    return settings
