"""The blocks inside a task: its driver config, resources, templates, logs, volume mounts and
dispatch payload. Part of the jobspec models: `spec/models.py` re-exports every one."""

from __future__ import annotations

import os
import re
import signal as _signal
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.spec.fieldtypes import Duration, Grown, Strict
from reconciler.spec.units import CAPABILITIES, format_duration, normalize_cap

_RESERVED_MOUNTS = ("/local", "/alloc", "/secrets", "/tmp", "/dev", "/proc", "/sys")


class VolumeMount(Strict):
    volume: str = Field(min_length=1)
    destination: str = Field(min_length=1)
    read_only: bool = False
    propagation_mode: Literal["private", "host-to-task", "bidirectional"] = "private"
    selinux_label: Literal["", "z", "Z"] = ""

    @field_validator("destination")
    @classmethod
    def _inside_root(cls, v: str) -> str:
        if "${" in v:
            return v
        path = os.path.normpath("/" + v.lstrip("/"))
        if path == "/" or any(path == r or path.startswith(r + "/") for r in _RESERVED_MOUNTS):
            raise PydanticCustomError(
                "destination",
                "cannot mount a volume at {p}: use a path outside /local, /alloc, /secrets, "
                "/tmp, /dev, /proc and /sys",
                {"p": path},
            )
        return v

    @field_validator("propagation_mode")
    @classmethod
    def _private_only(cls, v: str) -> str:
        if v != "private":
            raise PydanticCustomError(
                "propagation_mode",
                'propagation_mode "{m}" is not supported: task mounts are private',
                {"m": v},
            )
        return v


class ExecConfig(Strict):
    command: str = Field(min_length=1)
    args: list[str] = []
    pid_mode: Literal["", "private", "host"] = ""
    ipc_mode: Literal["", "private", "host"] = ""
    cap_add: list[str] = []
    cap_drop: list[str] = []
    work_dir: str = ""

    @field_validator("cap_add", "cap_drop")
    @classmethod
    def _known_caps(cls, v: list[str]) -> list[str]:
        caps = [normalize_cap(c) for c in v]
        if bad := [c for c, n in zip(v, caps, strict=True) if n != "all" and n not in CAPABILITIES]:
            raise PydanticCustomError(
                "capability", "unknown capability {caps}", {"caps": ", ".join(bad)}
            )
        return caps

    @field_validator("work_dir")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if v and not v.startswith("/"):
            raise PydanticCustomError("work_dir", "must be an absolute path inside the task")
        return v


class Resources(Grown):
    ADDED_LATER = ("secrets",)

    cpu: int = Field(100, ge=1)
    memory: int = Field(300, ge=10)
    memory_max: int = Field(0, ge=-1)
    cores: int = Field(0, ge=0)
    secrets: int | None = Field(None, ge=0)  # MB of the /secrets tmpfs, counted as memory

    @property
    def secrets_mb(self) -> int:
        return self.secrets or 0

    @model_validator(mode="after")
    def _consistent(self) -> Resources:
        if 0 < self.memory_max < self.memory:
            raise PydanticCustomError("memory_max", "memory_max must be at least memory")
        if self.cores and "cpu" in self.model_fields_set:
            raise PydanticCustomError("cores", "cpu and cores cannot both be set")
        return self


class Lifecycle(Strict):
    hook: Literal["prestart", "poststart", "poststop"]
    sidecar: bool = False


def signal_name(v: str) -> str:
    name = v.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if not hasattr(_signal.Signals, name) or name in {"SIG_DFL", "SIG_IGN"}:
        raise PydanticCustomError("signal", 'unknown signal "{s}"', {"s": v})
    return name


class TemplateWait(Strict):
    """consul-template's quiescence: render again once the data read has been quiet for
    `min`, and at most `max` after the first change (unset: 0 and 4 x min, as its defaults)."""

    min: Duration | None = None
    max: Duration | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TemplateWait:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError(
                "wait",
                "wait min {min} is greater than max {max}",
                {"min": format_duration(self.min), "max": format_duration(self.max)},
            )
        return self

    def bounds(self) -> tuple[float, float]:
        low = self.min or 0.0
        return low, self.max if self.max is not None else 4 * low


class Template(Grown):
    ADDED_LATER = ("wait", "once")

    data: str | None = None
    source: str | None = None
    destination: str = Field(min_length=1)
    perms: str = "0644"
    change_mode: Literal["restart", "noop", "signal", "script"] = "restart"
    change_signal: str = ""
    env: bool = False
    left_delimiter: str = "{{"
    right_delimiter: str = "}}"
    splay: Duration = 5.0
    error_on_missing_key: bool = False
    once: bool = False  # rendered when the task starts, never again while it runs
    uid: int | None = None
    gid: int | None = None
    wait: TemplateWait | None = None

    @model_validator(mode="before")
    @classmethod
    def _sighup(cls, v: Any) -> Any:
        """Nomad's default for change_mode "signal" without change_signal (api Canonicalize)."""
        if isinstance(v, dict) and v.get("change_mode") == "signal" and not v.get("change_signal"):
            return {**v, "change_signal": "SIGHUP"}
        return v

    @field_validator("perms")
    @classmethod
    def _octal(cls, v: str) -> str:
        if not re.fullmatch(r"0?[0-7]{3}", v):
            raise PydanticCustomError("perms", 'must be an octal mode like "0644"')
        return v

    @field_validator("destination")
    @classmethod
    def _inside_task(cls, v: str) -> str:
        parts = [p for p in v.split("/") if p not in ("", ".")]
        depth = 0
        for p in parts:
            depth += -1 if p == ".." else 1
            if depth < 0:
                raise PydanticCustomError("destination", "must stay inside the task directory")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Template:
        if self.data is None:  # a source was read into data by the loader
            raise PydanticCustomError("template", "set exactly one of data or source")
        if self.change_mode == "signal":
            signal_name(self.change_signal)
        if self.change_mode == "script":
            raise PydanticCustomError(
                "template", 'change_mode "script" is not supported (use restart, signal or noop)'
            )
        return self


class Logs(Strict):
    max_files: int = Field(10, ge=1)
    max_file_size: int = Field(10, ge=1)
    disabled: bool = False
    enabled: bool | None = None


class DispatchPayload(Strict):
    file: str = Field(min_length=1)

    @field_validator("file")
    @classmethod
    def _inside_local(cls, v: str) -> str:
        # Nomad refuses only a path out of the alloc dir; reconciler keeps it inside local/
        if v.startswith("/") or ".." in v.split("/"):
            raise PydanticCustomError(
                "file", "must be a relative path inside the task's local/ directory"
            )
        return v
