"""LinuxExecutor: Nomad's exec driver semantics with one tiny C shim per task.

This module starts tasks: a claim of a warm shim (pool.py) when one fits, else a cold start
(`shim run`). Waiting, stopping and signalling are in supervision.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from reconciler import trace
from reconciler.executor.base import (
    ExecResult,
    ExecutorUnavailable,
    FetchState,
    Fingerprint,
    NodeConfig,
    StartError,
    TaskConfig,
    TaskHandle,
    TaskStats,
)
from reconciler.executor.linux import (
    artifacts,
    caps,
    cgroups,
    fingerprint,
    launch,
    network,
    pool,
    proc,
    rootfs,
    safefs,
    shimconfig,
    templates,
)
from reconciler.executor.linux.primer import Primer
from reconciler.executor.linux.supervision import Supervision, signal_number

__all__ = ["LinuxExecutor", "signal_number"]

LAUNCH_THREADS = 4


@dataclass
class _Launch:
    """A task whose shim is doing its set-up."""

    config: TaskConfig
    dirs: rootfs.TaskDirs
    cgroup: cgroups.TaskCgroup
    shim_pid: int
    fd: int


class LinuxExecutor(Supervision):
    fds_per_task = 2  # pidfds of the shim and of the task
    # start_all is safe beside the loop (its own threads; the pool's and epoll's locks), but on
    # two cores the loop's parse beside the launches costs more than it overlaps: both hold
    # the GIL (bench/results/bringup.md, 2026-12-02). Off until more cores make it pay.
    background_starts = False

    def __init__(self, data_dir: Path, node: NodeConfig | None = None, warm_pool: int = 0) -> None:
        """warm_pool: the most warm shims kept ready (pool.py); the service's own executor
        keeps some, tools and tests that share a data dir with a running service none."""
        self.data_dir = data_dir.resolve()
        self.node = node or NodeConfig()
        self._lock_down()
        tag = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:8]
        self.namespace = f"reconciler-{tag}"
        self.layout = cgroups.detect(self.namespace, self.node.cgroup_version)
        if self.layout is not None:
            reserved = frozenset(self.node.reserved_cores)
            self.layout = dataclasses.replace(self.layout, reserved_cores=reserved)
        self.boot_id = proc.boot_id()
        self.network = network.Networks(self.node.bridge_name, self.node.bridge_cidr, tag)
        with contextlib.suppress(Exception):  # best effort: a start that collides says so
            self.network.forget_stale_ports()
        self._shim: Path | None = None
        self._root: Path | None = None
        self.primer = Primer(self.layout, self.shim) if self.layout else None
        self.pool: pool.Pool | None = None
        if warm_pool > 0 and self.layout is not None:
            pool.sweep(self.layout)  # what a crashed service of this data dir left
            self.pool = pool.Pool(
                self.layout, self.shim, self.data_dir / "warm",
                lambda: shimconfig.warm_root(str(self._mount_point()), self.node.chroot_env),
                self.data_dir / "shim.log", warm_pool, rootfs.Spares(self.data_dir / "warm" / "spare"),
            )  # fmt: skip
            self.pool.warm_up()
        self._init_supervision()
        self._claimed: set[str] = set()  # cgroup names whose current run is a warm claim
        self._net_lock = threading.Lock()
        self.fetcher = artifacts.Fetcher(self.node, self.dirs)

    # ---- paths ----

    def _lock_down(self) -> None:
        """No other host user may read the data dir: staged secrets, logs, task files, the
        store. raw_exec tasks run on the host's filesystem as their user, so with raw_exec
        allowed the dirs down to theirs can be traversed (not listed)."""
        mode = 0o711 if self.node.allow_raw_exec else 0o700
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, mode)
        allocs = self.data_dir / "allocs"
        allocs.mkdir(mode=mode, exist_ok=True)
        os.chmod(allocs, mode)
        rootfs.spread_out(allocs)  # each group instance's tree in a block group of its own

    def dirs(self, alloc_id: str, task: str) -> rootfs.TaskDirs:
        alloc = self.data_dir / "allocs" / alloc_id
        return rootfs.TaskDirs(alloc=alloc, task=alloc / "tasks" / task)

    def shim(self) -> Path:
        if self._shim is None:
            self._shim = launch.shim_binary(self.data_dir / "bin")
        return self._shim

    def _mount_point(self) -> Path:
        """Where every task mounts its root, each in its own mount namespace: one empty dir."""
        if self._root is None:
            self._root = self.data_dir / "root"
            self._root.mkdir(mode=0o755, parents=True, exist_ok=True)
        return self._root

    def _cgroup_name(self, task_id: str) -> str:
        short = hashlib.sha256(task_id.encode()).hexdigest()[:6]
        return task_id.replace("/", ".") + "." + short

    # ---- fingerprint ----

    def fingerprint(self) -> Fingerprint:
        return fingerprint.probe(self.layout, self.node, self.data_dir)

    # ---- start ----

    def prime(self) -> None:
        # A claim of a warm shim moves no process: priming would only hold the cgroup lock
        # (through a grace period) that the claim's rename then waits for, ~9 ms a restart.
        if self.primer is not None and not (self.pool is not None and self.pool.size() > 0):
            self.primer.prime()

    def close(self) -> None:
        """Let the warm shims go (they would at our exit too); running tasks stay."""
        if self.pool is not None:
            self.pool.close()

    def start(self, config: TaskConfig) -> TaskHandle:
        return self._finish(self._launch(config))

    def start_all(self, configs: Sequence[TaskConfig]) -> list[TaskHandle | Exception]:
        """Start many tasks at once: every shim is launched before any is waited for, and the
        launches themselves (directories, cgroups: kernel time) overlap on a few threads."""

        def launch_one(c: TaskConfig) -> _Launch | Exception:
            try:
                return self._launch(c)
            except Exception as e:
                return e

        if len(configs) > 1:
            self.shim()  # build it once, before the threads
            with ThreadPoolExecutor(max_workers=LAUNCH_THREADS) as pool:
                launches = list(pool.map(launch_one, configs))
        else:
            launches = [launch_one(c) for c in configs]
        out: list[TaskHandle | Exception] = []
        for item in launches:
            if isinstance(item, Exception):
                out.append(item)
                continue
            try:
                out.append(self._finish(item))
            except Exception as e:
                out.append(e)
        return out

    def _launch(self, config: TaskConfig) -> _Launch:
        if self.layout is None:
            raise ExecutorUnavailable("no cgroup filesystem: cannot isolate tasks")
        if config.raw_exec and not self.node.allow_raw_exec:
            raise StartError('driver "raw_exec" is not enabled on this node (allow_raw_exec)')
        if config.raw_exec and (config.volumes or config.dns is not None):
            raise StartError("raw_exec tasks use the host's filesystem: volume_mount and "
                             "network.dns need the exec driver")  # fmt: skip
        user = config.user or "nobody"
        if user == "root" and not self.node.allow_root and not config.raw_exec:
            raise StartError('user "root" is not allowed for exec tasks on this node (allow_root)')
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise StartError(f'user "{user}" does not exist on this node') from None
        caps.calculate(self.node.allow_caps, config.cap_add, config.cap_drop)  # refusals first
        alloc_id, _, task = config.id.rpartition("/")
        dirs = self.dirs(alloc_id, task)
        try:
            mounts = rootfs.prepare(dirs, self.node.chroot_env,
                                    self.pool.spares if self.pool else None,
                                    config.secrets_mb)  # fmt: skip
        except safefs.UnsafePath as e:
            raise StartError(f"building the task directory: {e.filename}: {e.strerror}") from e
        except OSError as e:
            raise ExecutorUnavailable(f"building the task directory: {e}") from e
        env = dict(config.env)
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update({"USER": user, "LOGNAME": user, "HOME": pw.pw_dir})
        if config.payload_file:  # Nomad's dispatch hook: mode 0777, before the templates
            templates.write(dirs, "local/" + config.payload_file, config.payload, 0o777, pw)
        for t in config.templates:
            templates.write(dirs, t.destination, t.text, t.perms, pw)
            if t.env:
                env.update(templates.env_lines(t.text))
        cg = cgroups.TaskCgroup.at(self.layout, self._cgroup_name(config.id),
                                   cpuset=bool(config.cores or config.core_ids))  # fmt: skip
        isolated = not config.raw_exec
        late = shimconfig.late_mounts(config, dirs) if isolated else []
        tail = shimconfig.task_items(config, self.node, dirs, pw, env, cg.procs_files())
        limits = cgroups.Limits(config.memory_mb, config.memory_max_mb, config.cpu_shares,
                                config.cores, config.pids_max or self.node.pids_max,
                                config.core_ids)  # fmt: skip
        self._previous_files(config.id, dirs)
        trace.mark("x_prepared")
        if self.pool is not None:
            self.pool.started()
            if shimconfig.warm_eligible(config, self.node) and (warm := self.pool.claim()):
                head = [("root", str(self._mount_point())), ("hostname", config.hostname or task)]
                claim = [*head, *shimconfig.warm_task_mounts(dirs, config.secrets_mb), *late,
                         *tail]
                return self._claim(config, dirs, warm, cg.name, limits, claim)
        items: list[tuple[str, str]] = []
        if isolated:
            items += [("root", str(self._mount_point())), ("hostname", config.hostname or task)]
            items += [(kind, f"{src}\t{dst}") for kind, src, dst in mounts]
            items += late
            if self.node.no_pivot_root:
                items.append(("no_pivot_root", "1"))
        if config.net_mode == "bridge":
            try:
                with self._net_lock:  # the tasks of one group share its namespace
                    items.append(("netns", str(self.network.ensure(alloc_id, config.ports))))
            except Exception as e:
                raise ExecutorUnavailable(f"bridge network: {e}") from e
        items += tail
        launch.write_config(dirs.config_file, items)
        try:
            pid, fd, go = launch.spawn_async(
                self.shim(), dirs.config_file, self.data_dir / "shim.log"
            )
        except (launch.ShimBuildError, OSError) as e:
            raise StartError(str(e)) from None
        # The task builds its root meanwhile: on cgroup v1 a first mkdir may wait for the
        # kernel (see primer.py), and that wait now overlaps the shim's work.
        try:
            if self.pool is not None:
                self._claimed.discard(cg.name)
                self.pool.keep_name(cg.name)
            cg.create(limits)
        except OSError as e:
            launch.ready(go, ok=False)
            with contextlib.suppress(RuntimeError, OSError):
                launch.started(pid, fd)
                os.close(fd)  # (it started after all: the cgroup's removal below ends it)
            cg.remove()
            raise ExecutorUnavailable(f"setting up the task cgroup: {e}") from e
        launch.ready(go)
        trace.mark("x_launched")
        return _Launch(config, dirs, cg, pid, fd)

    def _previous_files(self, task_id: str, dirs: rootfs.TaskDirs) -> None:
        """A previous run's files out of the new run's way. The exit-status of the run whose
        exit was seen last stays beside the task under that run's name: its exit may be
        recorded only with this start (after the launch), and a service that crashes in
        between reads it from there (`recover`). Older ones are recorded: set aside."""
        kept = self._exited.pop(task_id, None)
        with contextlib.suppress(FileNotFoundError), os.scandir(dirs.task) as entries:
            older = [Path(e.path) for e in entries if e.name.startswith("exit-status.")]
        for old in [*older, dirs.config_file] + ([] if kept else [dirs.exit_file]):
            if self.pool is not None:
                self.pool.set_file_aside(old)
            else:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        if kept:
            with contextlib.suppress(FileNotFoundError):
                os.rename(dirs.exit_file, dirs.task / kept)

    def _claim(self, config: TaskConfig, dirs: rootfs.TaskDirs, warm: pool.Warm, name: str,
               limits: cgroups.Limits, items: list[tuple[str, str]]) -> _Launch:  # fmt: skip
        """Hand a warm shim its task: its cgroups take the task's name and limits (no process
        moves), then it reads the task's config from its stdin and attaches the task's
        directories."""
        assert self.pool is not None
        try:
            self._claimed.add(name)
            cleared = self.pool.clear_name(name)
            warm.cgroup = warm.cgroup.rename(name, clear=not cleared)
            warm.cgroup.set_limits(limits, have=warm.limits)
            self.pool.expected = limits
            message = memoryview(launch.claim_message(items))
            while message:  # more than a pipe holds is read by the shim meanwhile
                message = message[os.write(warm.stdin, message) :]
            trace.mark("x_launched")
            # while the shim works: the config `enter_argv` reads (exec, script checks)
            launch.write_config(dirs.config_file, items)
        except OSError as e:
            self.pool.release(warm)
            raise ExecutorUnavailable(f"claiming a warm shim: {e}") from e
        os.close(warm.stdin)
        os.close(warm.pidfd)
        return _Launch(config, dirs, warm.cgroup, warm.pid, warm.stdout)

    def _finish(self, pending: _Launch) -> TaskHandle:
        config, dirs, cg = pending.config, pending.dirs, pending.cgroup
        try:
            shim_pid, task_pid = launch.started(pending.shim_pid, pending.fd)
            trace.mark("x_shim_reported")
        except (RuntimeError, OSError) as e:
            cg.kill_all()
            cg.remove()
            raise StartError(str(e)) from None
        ticks = proc.start_ticks(shim_pid) or 0
        handle = TaskHandle(
            id=config.id, pid=task_pid, shim_pid=shim_pid, shim_start_ticks=ticks,
            boot_id=self.boot_id, cgroup=cg.record(), task_dir=str(dirs.task),
            started_at=time.time(),
        )  # fmt: skip
        self._watch(handle, ours=True, report=pending.fd)
        return handle

    def _clear_soon(self, name: str) -> None:
        """Only for a task started from a warm shim: its next start likely claims one too,
        while a cold start reuses the cgroups it has."""
        if self.pool is not None and name in self._claimed:
            self.pool.clear_soon(name)

    def _clear_pending(self) -> None:
        if self.pool is not None:
            self.pool.clear_pending()

    def render_templates(self, config: TaskConfig, handle: TaskHandle) -> frozenset[str]:
        """Files only: a template that sets environment takes effect at the next start."""
        alloc_id, _, task = config.id.rpartition("/")
        pw = pwd.getpwnam(config.user or "nobody")
        dirs = self.dirs(alloc_id, task)
        written: set[str] = set()
        for t in config.templates:
            if templates.write(dirs, t.destination, t.text, t.perms, pw, unless_same=True):
                templates.into_task(handle, dirs, t.destination, t.text, t.perms, pw)
                written.add(t.destination)
        return frozenset(written)

    def fetch_artifacts(self, config: TaskConfig, done: Callable[[str], None]) -> FetchState:
        return self.fetcher.fetch(config, done)

    def alloc_address(self, alloc_id: str) -> str:
        return self.network.address(alloc_id)

    def release(self, alloc_id: str) -> None:
        """Forget a group instance for good: its cgroups, directories and network namespace."""
        self.fetcher.cancel(alloc_id)
        if self.layout is not None:
            alloc = self.data_dir / "allocs" / alloc_id / "tasks"
            for task in alloc.iterdir() if alloc.is_dir() else []:
                task_id = f"{alloc_id}/{task.name}"
                self._claimed.discard(self._cgroup_name(task_id))
                if self.pool is not None:
                    self.pool.keep_name(self._cgroup_name(task_id))  # forget it
                cg = cgroups.TaskCgroup.at(self.layout, self._cgroup_name(task_id))
                cg.kill_all()
                cg.remove()
        self.network.release(alloc_id)
        alloc = self.data_dir / "allocs" / alloc_id
        if alloc.is_dir():
            shutil.rmtree(alloc, ignore_errors=True)

    # ---- stats and exec ----

    def stats(self, handle: TaskHandle) -> TaskStats:
        cg = self._cgroup(handle)
        s = cg.stats() if cg else {}
        return TaskStats(
            cpu_user_s=s.get("user", 0.0), cpu_system_s=s.get("system", 0.0),
            memory_rss=int(s.get("rss", 0)), memory_cache=int(s.get("cache", 0)),
            memory_swap=int(s.get("swap", 0)), memory_max_usage=int(s.get("max_usage", 0)),
            pids=int(s.get("pids", 0)), throttled_periods=int(s.get("throttled_periods", 0)),
            throttled_time_s=s.get("throttled_time", 0.0),
        )  # fmt: skip

    def enter_argv(self, handle: TaskHandle, cmd: list[str]) -> list[str]:
        """argv that runs `cmd` inside the task (its namespaces, root, cgroup, user, caps)."""
        conf = Path(handle.task_dir) / "shim.conf"
        keep = {"cgroup", "uid", "gid", "caps", "env", "cwd"}
        items = [(k, v) for k, v in launch.read_config(conf) if k in keep]
        items += [("target", str(handle.pid))] + [("arg", a) for a in cmd]
        enter = Path(handle.task_dir) / f"enter-{os.getpid()}-{time.monotonic_ns()}.conf"
        launch.write_config(enter, items)
        return [str(self.shim()), "enter", str(enter)]

    def exec(self, handle: TaskHandle, cmd: list[str], timeout: float) -> ExecResult:
        argv = self.enter_argv(handle, cmd)
        try:
            p = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
            return ExecResult(p.returncode, p.stdout + p.stderr)
        except subprocess.TimeoutExpired as e:
            return ExecResult(124, (e.stdout or b"") + b"\nreconciler: exec timed out")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(argv[-1])
