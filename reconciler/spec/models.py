"""Frozen pydantic models of the Nomad jobspec subset reconciler runs (the `exec` driver).

Defaults are Nomad's (api/tasks.go, nomad/structs/structs.go). Fields that depend on the job
type (restart) stay None here and are resolved by `effective_restart`.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.spec import cron, reschedule
from reconciler.spec.artifact import Artifact
from reconciler.spec.fieldtypes import Duration, Grown, Scalar, Strict, StrMap
from reconciler.spec.reschedule import Reschedule
from reconciler.spec.services import Service
from reconciler.spec.taskblocks import (  # the task's blocks, re-exported with the rest
    DispatchPayload,
    ExecConfig,
    Lifecycle,
    Logs,
    Resources,
    Template,
    TemplateWait,  # noqa: F401 (re-exported)
    VolumeMount,
    signal_name,
)

CONSTRAINT_OPERATORS = frozenset(
    [
        "=",
        "==",
        "is",
        "!=",
        "not",
        ">",
        ">=",
        "<",
        "<=",
        "regexp",
        "set_contains",
        "set_contains_all",
        "set_contains_any",
        "version",
        "semver",
        "is_set",
        "is_not_set",
        "distinct_hosts",
        "distinct_property",
    ]
)


class Constraint(Strict):
    attribute: str = ""
    operator: str = "="
    value: Scalar = ""

    @field_validator("operator")
    @classmethod
    def _known_operator(cls, v: str) -> str:
        if v not in CONSTRAINT_OPERATORS:
            raise PydanticCustomError(
                "operator",
                'unknown operator "{op}" (one of: {ops})',
                {"op": v, "ops": ", ".join(sorted(CONSTRAINT_OPERATORS))},
            )
        return v

    @model_validator(mode="after")
    def _needs_attribute(self) -> Constraint:
        if not self.attribute and self.operator not in {"distinct_hosts"}:
            raise PydanticCustomError("constraint", "a constraint needs an attribute")
        return self


class Update(Strict):
    max_parallel: int = Field(1, ge=0)
    min_healthy_time: Duration = 10.0
    healthy_deadline: Duration = 300.0
    progress_deadline: Duration = 600.0
    auto_revert: bool = False
    auto_promote: bool = False
    canary: int = Field(0, ge=0)
    stagger: Duration = 30.0
    health_check: Literal["checks", "task_states", "manual"] = "checks"

    @model_validator(mode="after")
    def _deadline_covers_healthy_time(self) -> Update:
        if self.healthy_deadline < self.min_healthy_time:
            raise PydanticCustomError(
                "update", "healthy_deadline must be at least min_healthy_time"
            )
        return self


class Restart(Strict):
    attempts: int | None = Field(None, ge=0)
    interval: Duration | None = None
    delay: Duration | None = None
    mode: Literal["fail", "delay"] | None = None
    render_templates: bool = False

    @field_validator("interval")
    @classmethod
    def _min_interval(cls, v: float | None) -> float | None:
        if v is not None and v < 5:
            raise PydanticCustomError("interval", 'must be at least "5s" (Nomad\'s minimum)')
        return v


class Port(Strict):
    static: int | None = Field(None, ge=1, le=65535)
    to: int | None = Field(None, ge=-1, le=65535)
    host_network: str = "default"


class DNS(Strict):
    """`network { dns { } }`: written to the task's /etc/resolv.conf; an empty field keeps the
    host's values."""

    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []

    @field_validator("servers")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for server in v:
            if "${" in server:
                continue  # interpolated at start, checked there
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise PydanticCustomError(
                    "dns", 'bad nameserver address "{s}": must be an IP address', {"s": server}
                ) from None
        return v


class Network(Strict):
    mode: Literal["host", "none", "bridge"] = "host"
    port: dict[str, Port] = {}
    hostname: str = ""
    dns: DNS | None = None


HOST_VOLUME_ACCESS = ("", "single-node-writer", "single-node-reader-only",
                      "single-node-single-writer", "single-node-multi-writer")  # fmt: skip


class Volume(Strict):
    """A group's `volume "alias"`: a host volume of the node config (`client { host_volume }`)."""

    type: str = ""
    source: str = ""
    read_only: bool = False
    per_alloc: bool = False
    access_mode: str = ""
    attachment_mode: str = ""
    sticky: bool = False
    mount_options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _host_only(self) -> Volume:
        if self.type != "host":
            msg = ('volume has unrecognized type {t}' if self.type != "csi" else
                   'volume type "csi" is not supported: reconciler mounts host volumes only')  # fmt: skip
            raise PydanticCustomError("volume", msg, {"t": self.type})
        if not self.source:
            raise PydanticCustomError("volume", "volume has an empty source")
        if self.access_mode not in HOST_VOLUME_ACCESS:
            raise PydanticCustomError("volume", "host volumes cannot be mounted with {m} access mode",
                                      {"m": self.access_mode})  # fmt: skip
        if self.access_mode == "single-node-reader-only" and not self.read_only:
            raise PydanticCustomError(
                "volume", 'access_mode "single-node-reader-only" needs read_only = true'
            )
        if self.mount_options is not None:
            raise PydanticCustomError("volume", "host volumes cannot have mount options")
        if self.attachment_mode not in ("", "file-system"):
            raise PydanticCustomError("volume", "host volumes are attached as file-system")
        if self.sticky:
            raise PydanticCustomError("volume", "sticky applies to dynamic volumes only")
        return self


# Where a volume may not be mounted: the task's own directories (written by the task, so the
# shim would make mount points through paths the task controls) and the kernel's.
class Task(Grown):
    ADDED_LATER = ("artifact", "dispatch_payload", "service")

    driver: str
    config: ExecConfig
    user: str = ""
    env: StrMap = {}
    resources: Resources = Resources()
    kill_timeout: Duration = 5.0
    kill_signal: str = ""
    shutdown_delay: Duration = 0.0
    lifecycle: Lifecycle | None = None
    leader: bool = False
    template: list[Template] = []
    artifact: list[Artifact] = []
    logs: Logs = Logs()
    restart: Restart | None = None
    meta: StrMap = {}
    constraint: list[Constraint] = []
    volume_mount: list[VolumeMount] = []
    dispatch_payload: DispatchPayload | None = None
    service: list[Service] = []

    @field_validator("driver")
    @classmethod
    def _driver(cls, v: str) -> str:
        if v not in ("exec", "raw_exec"):
            raise PydanticCustomError(
                "driver",
                'driver "{d}" is not supported: reconciler runs "exec" tasks '
                '(and "raw_exec" where the node allows it)',
                {"d": v},
            )
        return v

    @field_validator("kill_signal")
    @classmethod
    def _kill_signal(cls, v: str) -> str:
        return signal_name(v) if v else v

    @field_validator("kill_timeout")
    @classmethod
    def _kill_timeout(cls, v: float) -> float:
        if v < 0:
            raise PydanticCustomError("kill_timeout", "must not be negative")
        return v


class Group(Grown):
    ADDED_LATER = ("service", "reschedule")

    count: int = Field(1, ge=0)
    restart: Restart | None = None
    reschedule: Reschedule | None = None
    network: Network = Network()
    meta: StrMap = {}
    constraint: list[Constraint] = []
    update: Update | None = None
    shutdown_delay: Duration = 0.0
    volume: dict[str, Volume] = {}
    service: list[Service] = []
    task: dict[str, Task] = Field(min_length=1)

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> Group:
        for tname, task in self.task.items():
            for i, m in enumerate(task.volume_mount):
                if m.volume not in self.volume:
                    raise PydanticCustomError(
                        "volume_mount",
                        "task {t}: Volume Mount ({i}) references undefined volume {v}",
                        {"t": tname, "i": i, "v": m.volume},
                    )
        return self

    @model_validator(mode="after")
    def _one_leader(self) -> Group:
        leaders = [n for n, t in self.task.items() if t.leader]
        if len(leaders) > 1:
            raise PydanticCustomError(
                "leader",
                "only one task may be leader (found {names})",
                {"names": ", ".join(leaders)},
            )
        if all(t.lifecycle is not None and not t.lifecycle.sidecar for t in self.task.values()):
            raise PydanticCustomError("task", "a group needs at least one main task")
        return self


class Periodic(Strict):
    """Nomad's `periodic` (nomad/structs PeriodicConfig). As in Nomad, a disabled block is
    not validated."""

    cron: str | None = None  # deprecated in Nomad 1.6.2 for `crons`
    crons: list[str] | None = None
    prohibit_overlap: bool = False
    time_zone: str = "UTC"
    enabled: bool = True

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(self.crons) if self.crons else ((self.cron,) if self.cron else ())

    @model_validator(mode="after")
    def _valid(self) -> Periodic:
        if not self.enabled:
            return self
        if self.cron is not None and self.crons is not None:
            raise PydanticCustomError("periodic", "Only cron or crons may be used")
        if not self.specs:
            raise PydanticCustomError("periodic", "Must specify a spec")
        for expr in self.specs:
            try:
                cron.normalize(expr)
            except cron.CronError as e:
                raise PydanticCustomError(
                    "periodic", "Invalid cron spec {s}: {e}", {"s": json.dumps(expr), "e": str(e)}
                ) from None
        try:
            cron.zone(self.time_zone)
        except cron.CronError as e:
            raise PydanticCustomError("periodic", str(e)) from None
        return self


class Parameterized(Strict):
    payload: Literal["optional", "required", "forbidden"] = "optional"
    meta_required: list[str] = []
    meta_optional: list[str] = []

    @model_validator(mode="after")
    def _disjoint(self) -> Parameterized:
        if both := sorted(set(self.meta_required) & set(self.meta_optional)):
            raise PydanticCustomError(
                "parameterized", "meta_required and meta_optional share {k}", {"k": ", ".join(both)}
            )
        return self


class Job(Grown):
    ADDED_LATER = ("periodic", "parameterized", "reschedule")

    # system: one instance of each group on this node; sysbatch: batch, to completion
    type: Literal["service", "batch", "system", "sysbatch"] = "service"
    meta: StrMap = {}
    constraint: list[Constraint] = []
    update: Update | None = None
    reschedule: Reschedule | None = None
    periodic: Periodic | None = None
    parameterized: Parameterized | None = None
    group: dict[str, Group] = Field(min_length=1)

    @property
    def launches_children(self) -> bool:
        """A periodic or parameterized job runs nothing itself: its children do."""
        return self.parameterized is not None or self.periodic is not None

    @model_validator(mode="after")
    def _children_are_batch(self) -> Job:
        batch = self.type in ("batch", "sysbatch")
        if self.periodic is not None and self.periodic.enabled and not batch:
            raise PydanticCustomError(
                "periodic", 'Periodic can only be used with "batch" or "sysbatch" scheduler'
            )
        if self.parameterized is not None and not batch:
            raise PydanticCustomError(
                "parameterized",
                'Parameterized job can only be used with "batch" or "sysbatch" scheduler',
            )
        for gname, group in self.group.items():
            if self.type != "service" and effective_update(self, group).canary:
                raise PydanticCustomError(
                    "canary", 'group "{g}": canary deployments are for "service" jobs only',
                    {"g": gname},
                )
            for tname, task in group.task.items():
                if task.dispatch_payload is not None and self.parameterized is None:
                    raise PydanticCustomError(
                        "dispatch_payload",
                        'task "{g}.{t}": dispatch_payload needs a parameterized job',
                        {"g": gname, "t": tname},
                    )
        return self


class JobFile(Strict):
    job: dict[str, Job] = Field(min_length=1, max_length=1)


# Nomad's defaults by job type (nomad/structs/structs.go).
RESTART_DEFAULTS: dict[str, tuple[int, float, float, str]] = {
    "service": (2, 1800.0, 15.0, "fail"),
    "batch": (3, 86400.0, 15.0, "fail"),
    "system": (2, 1800.0, 15.0, "fail"),
    "sysbatch": (3, 86400.0, 15.0, "fail"),
}
RUNS_TO_COMPLETION = frozenset({"batch", "sysbatch"})  # an exit 0 is final


class EffectiveRestart(BaseModel):
    model_config = ConfigDict(frozen=True)
    attempts: int
    interval: float
    delay: float
    mode: str
    render_templates: bool = False


def effective_restart(job: Job, group: Group, task: Task) -> EffectiveRestart:
    """Task restart fields override the group's, which override the job type's defaults."""
    attempts, interval, delay, mode = RESTART_DEFAULTS[job.type]
    render = False
    for block in (group.restart, task.restart):
        if block is None:
            continue
        attempts = block.attempts if block.attempts is not None else attempts
        interval = block.interval if block.interval is not None else interval
        delay = block.delay if block.delay is not None else delay
        mode = block.mode or mode
        render = block.render_templates or render
    return EffectiveRestart(
        attempts=attempts, interval=interval, delay=delay, mode=mode, render_templates=render
    )


_NOMAD_UPDATE = Update()


def effective_reschedule(job: Job, group: Group) -> reschedule.EffectiveReschedule | None:
    """The group's reschedule policy: its fields over the job's over the type's defaults."""
    return reschedule.effective(job.type, job.reschedule, group.reschedule)


def effective_update(job: Job, group: Group) -> Update:
    return group.update or job.update or _NOMAD_UPDATE
