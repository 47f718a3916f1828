"""`reconciler run`: from the command line to a running service.

The service process is started without the CLI's framework: `reconciler.entry` hands `run`'s
arguments to `main` here (argparse, from the standard library), so typer, click and rich
(about 8 MB of memory) never enter the service's resident set. `reconciler run --help` and
the other verbs go through the CLI (reconciler.cli), whose `run` calls `serve` too; a unit
test keeps the two option lists the same."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from reconciler import __version__
from reconciler.executor.base import NodeConfig
from reconciler.spec.node import (
    NodeConfigError,
    NodeSettings,
    load_node_config,
    parse_bytes,
    parse_cpuset,
)
from reconciler.spec.ports import parse_ranges

# Exit codes, as the CLI's (reconciler.cli.common)
USAGE = 2
REFUSED = 78  # EX_CONFIG: the service will not start as things are (systemd: no restart loop)
DATA_DIR_ENV = "RECONCILER_DATA_DIR"


class StartRefused(Exception):
    """The service does not start; the message says why (one line or a few), `code` is the
    exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# The most shims the service keeps made ahead of their tasks (executor/linux/pool.py), sized
# within that from recent starts.
WARM_POOL = 8

def data_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    return Path(os.environ.get(DATA_DIR_ENV, ".reconciler"))


def db_path(data: Path) -> Path:
    return data / "state.db"


def node_config(settings: NodeSettings) -> NodeConfig:
    ex, rc = settings.exec, settings.reconciler
    return NodeConfig(
        no_pivot_root=ex.no_pivot_root, default_pid_mode=ex.default_pid_mode,
        default_ipc_mode=ex.default_ipc_mode,
        allow_caps=frozenset(ex.allow_caps) if ex.allow_caps is not None else None,
        chroot_env=settings.chroot_env, allow_raw_exec=settings.raw_exec.enabled,
        allow_root=rc.allow_root, cgroup_version=rc.cgroup_version, pids_max=rc.pids_max,
        bridge_name=rc.bridge_name, bridge_cidr=rc.bridge_cidr, meta=dict(settings.meta),
        cpu_total_compute=settings.cpu_total_compute, memory_total_mb=settings.memory_total_mb,
        reserved_cpu=settings.reserved.cpu, reserved_memory_mb=settings.reserved.memory,
        reserved_cores=parse_cpuset(settings.reserved.cores),
        reserved_ports=parse_ranges(settings.reserved.reserved_ports),
        host_volumes={n: (v.path, v.read_only) for n, v in settings.host_volume.items()},
        template_dirs=tuple(rc.template_dirs),
        artifact_read_timeout=settings.artifact.http_read_timeout,
        artifact_max_size=parse_bytes(settings.artifact.http_max_size),
        artifact_git_timeout=settings.artifact.git_timeout,
        artifact_decompression_size_limit=parse_bytes(settings.artifact.decompression_size_limit),
        artifact_decompression_file_count_limit=settings.artifact.decompression_file_count_limit,
        job_gc_threshold=rc.job_gc_threshold,
    )  # fmt: skip


def load_node(config: Path | None) -> NodeConfig:
    """The node configuration file's settings; StartRefused (USAGE) says what is wrong."""
    try:
        return node_config(load_node_config(config))
    except NodeConfigError as e:
        raise StartRefused(f"node configuration:\n{e}", USAGE) from None


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": round(record.created, 3), "level": record.levelname.lower(),
                           "msg": record.getMessage()})  # fmt: skip


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    elif fmt == "human":
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")
        )
    else:
        raise StartRefused("--log-format is human or json", USAGE)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def serve(
    jobs: Path, data: Path | None, config: Path | None, log_format: str = "human",
    allow_empty: bool = False, metrics_addr: str | None = None, stuck_after: float = 30.0,
    http_addr: str | None = None,
) -> None:  # fmt: skip
    """Run the service until it is stopped (SIGTERM, SIGINT). StartRefused when it cannot
    start as things are."""
    from reconciler import metrics
    from reconciler.db.engine import StoreRefused
    from reconciler.db.store import Store
    from reconciler.executor.linux.executor import LinuxExecutor
    from reconciler.executor.linux.memory import one_heap
    from reconciler.service import control
    from reconciler.service.loop import Service
    from reconciler.service.process import (
        AlreadyRunning,
        install_signal_handlers,
        lock_data_dir,
        raise_file_limit,
        run_until_stopped,
        wait_out,
    )

    one_heap()  # before any thread of the service starts
    setup_logging(log_format)
    d = data_dir(data).resolve()
    try:
        wait_out("locking the data dir", lambda: lock_data_dir(d))
    except AlreadyRunning as e:
        raise StartRefused(str(e), 1) from None
    except OSError as e:
        raise StartRefused(
            f"cannot write the data dir {d} ({e.strerror}): reconciler keeps its store and "
            "task directories there; make it writable (remount read-write, fix ownership), "
            "then start reconciler again (running tasks are left alone)", REFUSED,
        ) from None  # fmt: skip
    node = load_node(config)
    try:
        store = wait_out("opening the store", lambda: Store(db_path(d), migrate_apart=True))
    except StoreRefused as e:
        raise StartRefused(str(e), REFUSED) from None
    soft, _hard = raise_file_limit()
    executor = LinuxExecutor(d, node, warm_pool=WARM_POOL)
    fp = executor.fingerprint()
    log = logging.getLogger("reconciler")
    log.info("reconciler %s on %s (data %s): %s; open files limit %d", __version__, jobs, d,
             fp.description, soft)  # fmt: skip
    if not jobs.is_dir():
        log.warning("%s is not a directory yet: waiting for it", jobs)
    service = Service(jobs.resolve(), store, executor, node, allow_empty=allow_empty,
                      stuck_after=stuck_after)  # fmt: skip

    def reload() -> None:
        try:
            new = load_node(config)
        except StartRefused as e:
            log.error("node configuration not reloaded: %s", e)
            return
        if new != service.node:
            log.info("node configuration reloaded (applies to tasks started from now on)")
            service.node = service.applier.node = new
            executor.node = new

    install_signal_handlers(service, reload)
    # The start threads hand the interpreter lock back and forth around many short syscalls;
    # at the default 5 ms a thread back from one waits behind the others. 0.5 ms converged
    # 1,000 tasks 10 % faster here (4.5 s against 5.0 s, same machine, alternating runs).
    sys.setswitchinterval(0.0005)
    control.serve(service, d)
    if metrics_addr:
        metrics.serve(metrics_addr)
    if http_addr:
        from reconciler.service import listener

        token = load_node_config(config).reconciler.http_token if config else ""
        listener.start(service, d, http_addr, token)
    if not run_until_stopped(service):
        logging.shutdown()
        os._exit(0)  # the loop is stuck in a call that does not return: leave without it
    store.close()


def parser() -> argparse.ArgumentParser:
    """`run`'s options, as the CLI's `run` has them."""
    p = argparse.ArgumentParser(prog="reconciler run", add_help=False, allow_abbrev=False)
    p.add_argument("--jobs", type=Path, default=Path("jobs"))
    p.add_argument("--data-dir", dest="data", type=Path, default=None)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--log-format", default="human")
    p.add_argument("--allow-empty", action="store_true", default=False)
    p.add_argument("--metrics-addr", default=None)
    p.add_argument("--stuck-after", type=float, default=30.0)
    p.add_argument("--http-addr", default=None)
    return p


def main(argv: list[str]) -> int:
    """`reconciler run ARGV...` without the CLI framework; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        serve(**vars(args))
    except StartRefused as e:
        sys.stderr.write(f"error: {e}\n")
        return e.code
    return 0
