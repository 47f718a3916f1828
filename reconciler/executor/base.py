"""The executor contract, shaped like Nomad's driver plugin API.

The executor takes its own plain `TaskConfig`, never the HCL model: `apply` translates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from reconciler.errors import PermanentError, TemporaryError

PidMode = Literal["private", "host"]
NetMode = Literal["host", "none", "bridge"]


class StartError(PermanentError):
    """The task could not be started as configured (bad command, caps not allowed, ...)."""


class ExecutorUnavailable(TemporaryError):
    """The host cannot run the task right now (cgroup or namespace set-up failed)."""


class ArtifactError(TemporaryError):
    """An artifact could not be fetched: recoverable, so the restart policy decides (Nomad)."""


@dataclass(frozen=True)
class Template:
    destination: str
    text: str
    perms: int = 0o644
    env: bool = False


@dataclass(frozen=True)
class VolumeBind:
    """A host volume's directory, bind-mounted at `destination` inside the task."""

    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True)
class DnsConfig:
    """The task's /etc/resolv.conf; an empty field keeps the host's values."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Artifact:
    """One `artifact` block, interpolated: what to fetch and where to put it."""

    source: str  # go-getter style: "https://...", "git::https://...", with ?query options
    destination: str  # relative to the task dir (local/..., alloc/..., tmp/...)
    mode: Literal["any", "file", "dir"] = "any"
    headers: tuple[tuple[str, str], ...] = ()
    chown: bool = False
    insecure: bool = False
    key: str = ""  # stable digest of all the above: a fetched artifact is remembered by it
    # The source as spec.artifact.parse_source reads it (taskconfig.fetchable fills these in):
    getter: str = ""  # http, https, git, or one that is refused at fetch (file, ...)
    url: str = ""  # without go-getter's own query parameters
    checksum: tuple[str, bytes] | None = None  # ("sha256", digest)
    archive: str = ""  # go-getter's `archive` parameter ("false": do not unpack)
    filename: str = ""  # go-getter's `filename` parameter
    path: str = ""  # the URL's path: names the file and its archive type
    problem: str = ""  # why it cannot be fetched, known before fetching (a bad checksum)


FetchState = Literal["ready", "started", "fetching"]


@dataclass(frozen=True)
class PortMap:
    label: str
    host_port: int
    task_port: int


@dataclass(frozen=True)
class TaskConfig:
    """Everything needed to start one task, in executor terms."""

    id: str  # job/group/index/task; stable for a slot
    alloc_id: str  # job/group/index: tasks of one group instance share /alloc and the netns
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = "nobody"
    work_dir: str = ""
    pid_mode: PidMode = "private"
    ipc_mode: PidMode = "private"
    net_mode: NetMode = "host"
    ports: tuple[PortMap, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    memory_mb: int = 300
    memory_max_mb: int = 0
    secrets_mb: int = 1  # the size of the task's /secrets tmpfs
    cpu_shares: int = 100
    cores: int = 0
    core_ids: tuple[int, ...] = ()  # the cpuset to pin the task to; empty: the first `cores`
    pids_max: int = 4096
    log_max_files: int = 10
    log_max_file_mb: int = 10
    logs_disabled: bool = False
    templates: tuple[Template, ...] = ()
    volumes: tuple[VolumeBind, ...] = ()
    dns: DnsConfig | None = None
    raw_exec: bool = False
    hostname: str = ""
    artifacts: tuple[Artifact, ...] = ()
    # a dispatched job's payload, written to local/<payload_file> before the templates
    payload: bytes = b""
    payload_file: str = ""


@dataclass(frozen=True)
class NodeConfig:
    """The node's own settings (Nomad's agent config, `plugin "exec"` and `client` blocks)."""

    no_pivot_root: bool = False
    default_pid_mode: PidMode = "private"
    default_ipc_mode: PidMode = "private"
    allow_caps: frozenset[str] | None = None  # None: Nomad's default list
    chroot_env: Mapping[str, str] | None = None  # None: Nomad's default map
    allow_raw_exec: bool = False
    allow_root: bool = False
    cgroup_version: int | None = None  # None: detect
    pids_max: int = 4096
    bridge_name: str = "reconciler0"
    bridge_cidr: str = "172.26.64.0/20"
    host_volumes: Mapping[str, tuple[str, bool]] = field(default_factory=dict)  # name: (path, ro)
    template_dirs: tuple[str, ...] = ()  # host dirs a template `source` may name
    meta: Mapping[str, str] = field(default_factory=dict)
    # Nomad's `client` fingerprint overrides and `reserved` block (0: fingerprint / none)
    cpu_total_compute: int = 0  # MHz
    memory_total_mb: int = 0
    reserved_cpu: int = 0  # MHz
    reserved_memory_mb: int = 0
    reserved_cores: tuple[int, ...] = ()
    reserved_ports: frozenset[int] = frozenset()  # host ports no task is given
    # Nomad's `client { artifact {} }` (0: no limit)
    artifact_read_timeout: float = 1800.0  # http_read_timeout
    artifact_max_size: int = 100_000_000_000  # http_max_size "100GB", bytes
    artifact_git_timeout: float = 1800.0  # git_timeout
    artifact_decompression_size_limit: int = 100_000_000_000  # bytes
    artifact_decompression_file_count_limit: int = 4096
    job_gc_threshold: float = 4 * 3600.0  # finished child jobs are collected after (seconds)


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class TaskHandle:
    """What must be persisted to re-adopt a task: never a pid alone."""

    id: str
    pid: int
    shim_pid: int
    shim_start_ticks: int
    boot_id: str
    cgroup: str
    task_dir: str
    started_at: float


@dataclass(frozen=True, slots=True)  # one or more per task: no __dict__
class ExitResult:
    exit_code: int
    signal: int = 0
    oom_killed: bool = False
    error: str = ""
    finished_at: float = 0.0
    dropped_log_lines: int = 0  # output lost because the log could not be written (disk full)

    @property
    def successful(self) -> bool:
        return self.exit_code == 0 and self.signal == 0 and not self.oom_killed and not self.error


@dataclass(frozen=True)
class TaskStats:
    cpu_user_s: float
    cpu_system_s: float
    memory_rss: int
    memory_cache: int
    memory_swap: int
    memory_max_usage: int
    pids: int
    throttled_periods: int
    throttled_time_s: float


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes


@dataclass(frozen=True)
class Fingerprint:
    healthy: bool
    description: str
    attributes: Mapping[str, str]


class Executor(Protocol):
    """Nomad's driver verbs. `poll_exits` replaces a blocking `wait` so one thread serves all."""

    fds_per_task: int  # descriptors the service holds for each running task
    # start_all may run on another thread while the caller goes on (it touches no state of
    # the caller's, and its results are only read once it returns)
    background_starts: bool

    def fingerprint(self) -> Fingerprint: ...

    def prime(self) -> None:
        """A start may follow soon: begin slow kernel preparation now. Returns at once."""
        ...

    def start(self, config: TaskConfig) -> TaskHandle: ...

    def start_all(self, configs: Sequence[TaskConfig]) -> list[TaskHandle | Exception]:
        """Start many tasks at once; each result is a handle or the error of that task."""
        ...

    def recover(self, handle: TaskHandle) -> bool:
        """Re-adopt a task started by an earlier run of the service; False if it is gone."""
        ...

    def wait(self, handle: TaskHandle, timeout: float | None = None) -> ExitResult | None: ...

    def poll_exits(self, timeout: float) -> list[tuple[TaskHandle, ExitResult]]:
        """Exits of adopted or started tasks since the last call (waits up to `timeout`)."""
        ...

    def stop(self, handle: TaskHandle, signal: str, timeout: float, delay: float = 0.0) -> None:
        """After `delay` (shutdown_delay) send `signal`; kill everything after `timeout`.
        Returns at once: the exit arrives through poll_exits."""
        ...

    def destroy(self, handle: TaskHandle, force: bool = False) -> None: ...

    def inspect(self, handle: TaskHandle) -> Literal["running", "exited", "unknown"]: ...

    def stats(self, handle: TaskHandle) -> TaskStats: ...

    def signal(self, handle: TaskHandle, signal: str) -> None: ...

    def exec(self, handle: TaskHandle, cmd: list[str], timeout: float) -> ExecResult: ...

    def render_templates(self, config: TaskConfig, handle: TaskHandle) -> frozenset[str]:
        """Write a running task's templates again where their output changed (`secrets/`
        ones into the task's own /secrets too); the destinations written (their change_mode
        says what follows)."""
        ...

    def fetch_artifacts(self, config: TaskConfig, done: Callable[[str], None]) -> FetchState:
        """Make sure the task's artifacts are in its directories, without blocking: "ready"
        (there, fetched by this or an earlier run of its group instance), "started" (a
        download began in the background) or "fetching" (one still runs). When a download
        ends, `done(config.id)` is called from another thread; the next call then answers
        "ready" or raises the failure once as ArtifactError."""
        ...

    def release(self, alloc_id: str) -> None:
        """Forget a group instance for good (its directories, its network namespace)."""
        ...

    def alloc_address(self, alloc_id: str) -> str:
        """The address of a bridge-mode group instance inside the bridge network."""
        ...
