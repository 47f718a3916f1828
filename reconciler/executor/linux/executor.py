"""LinuxExecutor: Nomad's exec driver semantics with one tiny C shim per task.

The service thread calls start/stop/signal; one waiter thread calls `poll_exits`, which waits
on pidfds of every shim through a single epoll, so 1,000 tasks cost no thread each.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import select
import shutil
import signal as signals
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reconciler.executor.base import (
    ExecResult,
    ExecutorUnavailable,
    ExitResult,
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
    proc,
    resolvconf,
    rootfs,
    safefs,
    templates,
)
from reconciler.executor.linux.primer import Primer

LAUNCH_THREADS = 4


@dataclass
class _Launch:
    """A task whose shim is doing its set-up."""

    config: TaskConfig
    dirs: rootfs.TaskDirs
    cgroup: cgroups.TaskCgroup
    shim_pid: int
    fd: int


@dataclass
class _Watched:
    handle: TaskHandle
    pidfd: int
    ours: bool  # spawned by this process, so we reap it


def signal_number(name: str) -> int:
    n = name.upper()
    n = n if n.startswith("SIG") else "SIG" + n
    try:
        return int(signals.Signals[n])
    except KeyError:
        raise StartError(f'unknown signal "{name}"') from None


class LinuxExecutor:
    fds_per_task = 2  # pidfds of the shim and of the task

    def __init__(self, data_dir: Path, node: NodeConfig | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.node = node or NodeConfig()
        self._lock_down()
        tag = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:8]
        self.namespace = f"reconciler-{tag}"
        self.layout = cgroups.detect(self.namespace, self.node.cgroup_version)
        self.boot_id = proc.boot_id()
        self.network = network.Networks(self.node.bridge_name, self.node.bridge_cidr, tag)
        with contextlib.suppress(Exception):  # best effort: a start that collides says so
            self.network.forget_stale_ports()
        self._shim: Path | None = None
        self._root: Path | None = None
        self.primer = Primer(self.layout, self.shim) if self.layout else None
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._net_lock = threading.Lock()
        self._watched: dict[int, _Watched] = {}
        self._task_fds: dict[str, int] = {}
        self._deadlines: dict[str, tuple[float, TaskHandle]] = {}  # kill the cgroup then
        self._delayed: dict[str, tuple[float, TaskHandle, str, float]] = {}  # shutdown_delay
        self._pending: list[tuple[TaskHandle, ExitResult]] = []
        self._done: dict[str, ExitResult] = {}
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
        if self.primer is not None:
            self.primer.prime()

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

    def _late_mounts(self, config: TaskConfig, dirs: rootfs.TaskDirs) -> list[tuple[str, str]]:
        """Host volumes and the task's resolv.conf, mounted by the shim inside the new root."""
        for v in config.volumes:  # an interpolated destination is checked only now
            if v.destination == "/" or any(v.destination == r or v.destination.startswith(r + "/")
                                           for r in rootfs.TASK_MOUNT_POINTS):  # fmt: skip
                raise StartError(f"cannot mount a volume at {v.destination}")
        out = [("bind_late", f"{v.source}\t{v.destination}\t{'ro' if v.read_only else 'rw'}")
               for v in config.volumes]  # fmt: skip
        if config.dns is not None:
            text = resolvconf.render(config.dns, resolvconf.host_dns())
            fd = safefs.open_base(str(dirs.task))
            try:
                safefs.write_file(fd, "resolv.conf", text.encode(), 0o644, (0, 0))
            finally:
                os.close(fd)
            out.append(("bind_late", f"{dirs.task}/resolv.conf\t/etc/resolv.conf\tro"))
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
        capset = caps.calculate(self.node.allow_caps, config.cap_add, config.cap_drop)
        alloc_id, _, task = config.id.rpartition("/")
        dirs = self.dirs(alloc_id, task)
        try:
            mounts = rootfs.prepare(dirs, self.node.chroot_env)
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
        items: list[tuple[str, str]] = []
        isolated = not config.raw_exec
        pid_mode = config.pid_mode or self.node.default_pid_mode
        ipc_mode = config.ipc_mode or self.node.default_ipc_mode
        if isolated:
            items += [("root", str(self._mount_point())), ("hostname", config.hostname or task)]
            items += [(kind, f"{src}\t{dst}") for kind, src, dst in mounts]
            items += self._late_mounts(config, dirs)
            if self.node.no_pivot_root:
                items.append(("no_pivot_root", "1"))
        items += [
            ("new_pid", "1" if isolated and pid_mode == "private" else "0"),
            ("new_ipc", "1" if isolated and ipc_mode == "private" else "0"),
            ("new_uts", "1" if isolated else "0"),
        ]
        if config.net_mode == "none":
            items.append(("net_none", "1"))
        elif config.net_mode == "bridge":
            try:
                with self._net_lock:  # the tasks of one group share its namespace
                    items.append(("netns", str(self.network.ensure(alloc_id, config.ports))))
            except Exception as e:
                raise ExecutorUnavailable(f"bridge network: {e}") from e
        items += [("cgroup", p) for p in cg.procs_files()]
        items += [("uid", str(pw.pw_uid)), ("gid", str(pw.pw_gid))]
        all_caps = caps.mask(caps.NUMBERS) if config.raw_exec else caps.mask(capset)
        items.append(("caps", hex(all_caps)))
        items.append(("cwd", config.work_dir or ("/" if isolated else str(dirs.local))))
        items += [("env", f"{k}={v}") for k, v in sorted(env.items())]
        items += [("arg", a) for a in (config.command, *config.args)]
        if not config.logs_disabled:
            size = config.log_max_file_mb << 20
            for stream in ("stdout", "stderr"):
                base = dirs.logs / f"{task}.{stream}"
                items.append((stream, f"{base}\t{config.log_max_files}\t{size}"))
        items.append(("exit_file", str(dirs.exit_file)))
        with contextlib.suppress(FileNotFoundError):
            dirs.exit_file.unlink()
        launch.write_config(dirs.config_file, items)
        try:
            pid, fd, go = launch.spawn_async(self.shim(), dirs.config_file, self.data_dir / "shim.log")
        except (launch.ShimBuildError, OSError) as e:
            raise StartError(str(e)) from None
        # The task builds its root meanwhile: on cgroup v1 a first mkdir may wait for the
        # kernel (see primer.py), and that wait now overlaps the shim's work.
        limits = cgroups.Limits(config.memory_mb, config.memory_max_mb, config.cpu_shares,
                                config.cores, config.pids_max or self.node.pids_max,
                                config.core_ids)  # fmt: skip
        try:
            cg.create(limits)
        except OSError as e:
            launch.ready(go, ok=False)
            with contextlib.suppress(RuntimeError, OSError):
                launch.started(pid, fd)
            cg.remove()
            raise ExecutorUnavailable(f"setting up the task cgroup: {e}") from e
        launch.ready(go)
        return _Launch(config, dirs, cg, pid, fd)

    def _finish(self, pending: _Launch) -> TaskHandle:
        config, dirs, cg = pending.config, pending.dirs, pending.cgroup
        try:
            shim_pid, task_pid = launch.started(pending.shim_pid, pending.fd)
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
        self._watch(handle, ours=True)
        return handle

    # ---- waiting ----

    def _watch(self, handle: TaskHandle, ours: bool) -> bool:
        try:
            fd = os.pidfd_open(handle.shim_pid)
        except ProcessLookupError:
            return False
        with self._lock:
            self._watched[fd] = _Watched(handle, fd, ours)
            with contextlib.suppress(ProcessLookupError, OSError):
                self._task_fds[handle.id] = os.pidfd_open(handle.pid)
        self._epoll.register(fd, select.EPOLLIN)
        return True

    def recover(self, handle: TaskHandle) -> bool:
        if handle.boot_id != self.boot_id:
            return False  # the machine rebooted: the task died with it
        if proc.same_process(handle.shim_pid, handle.shim_start_ticks) and self._watch(
            handle, ours=False
        ):
            return True
        # The shim is gone: if it recorded the exit while we were down, report it.
        status = Path(handle.task_dir) / "exit-status"
        if status.exists():
            with self._lock:
                self._pending.append((handle, self._exit_result(handle)))
            return True
        return False

    def _exit_result(self, handle: TaskHandle, shim_status: int | None = None) -> ExitResult:
        cg = self._cgroup(handle)
        oom = cg.oom_killed() if cg else False
        dropped = 0
        try:
            code_s, sig_s, at_s, *rest = (Path(handle.task_dir) / "exit-status").read_text().split()
            dropped = int(rest[0]) if rest else 0
        except (OSError, ValueError):
            if shim_status is not None and os.WIFEXITED(shim_status):
                # the file could not be written (disk full): the shim exited with the status
                code = os.WEXITSTATUS(shim_status)
                sig = code - 128 if code > 128 else 0
                return ExitResult(exit_code=code, signal=sig, oom_killed=oom and sig == 9,
                                  finished_at=time.time())  # fmt: skip
            return ExitResult(
                exit_code=-1, oom_killed=oom, finished_at=time.time(),
                error="the task's shim ended without recording an exit status (killed?)",
            )  # fmt: skip
        code, sig = int(code_s), int(sig_s)
        if sig:
            code = 128 + sig
        if oom and sig != signals.SIGKILL:
            oom = False
        return ExitResult(exit_code=code, signal=sig, oom_killed=oom, finished_at=float(at_s),
                          dropped_log_lines=dropped)  # fmt: skip

    def poll_exits(self, timeout: float) -> list[tuple[TaskHandle, ExitResult]]:
        with self._lock:
            out, self._pending = self._pending, []
            next_deadline = min(
                [d for d, _ in self._deadlines.values()] + [d[0] for d in self._delayed.values()],
                default=None,
            )
        if out:
            timeout = 0
        if next_deadline is not None:
            timeout = max(0.0, min(timeout, next_deadline - time.monotonic()))
        ready = self._epoll.poll(timeout)
        for fd, _ in ready:
            with self._lock:
                w = self._watched.pop(fd, None)
            if w is None:
                continue
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            os.close(fd)
            shim_status = None
            if w.ours:
                with contextlib.suppress(ChildProcessError):
                    shim_status = os.waitpid(w.handle.shim_pid, 0)[1]
            result = self._exit_result(w.handle, shim_status)
            if cg := self._cgroup(w.handle):
                cg.kill_leftovers()
            with self._lock:
                self._deadlines.pop(w.handle.id, None)
                self._delayed.pop(w.handle.id, None)
                if (tfd := self._task_fds.pop(w.handle.id, None)) is not None:
                    os.close(tfd)
            out.append((w.handle, result))
        now = time.monotonic()
        with self._lock:
            expired = [h for d, h in self._deadlines.values() if d <= now]
            for h in expired:
                self._deadlines.pop(h.id, None)
            due = [v for v in self._delayed.values() if v[0] <= now]
            for v in due:
                self._delayed.pop(v[1].id, None)
        for _, h, sig, timeout in due:
            self.stop(h, sig, timeout)
        for h in expired:
            if cg := self._cgroup(h):
                cg.kill_all()
        with self._lock:
            for h, r in out:
                self._done[h.id] = r
        return out

    def wait(self, handle: TaskHandle, timeout: float | None = None) -> ExitResult | None:
        """For single-threaded callers (tests, tools): poll until this task's exit is seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if (r := self._done.pop(handle.id, None)) is not None:
                    return r
            if deadline is not None and time.monotonic() >= deadline:
                return None
            self.poll_exits(0.05)

    # ---- stop, signal, destroy ----

    def _cgroup(self, handle: TaskHandle) -> cgroups.TaskCgroup | None:
        if self.layout is None or not handle.cgroup:
            return None
        return cgroups.TaskCgroup.from_record(self.layout, handle.cgroup)

    def signal(self, handle: TaskHandle, signal: str) -> None:
        num = signal_number(signal)
        with self._lock:
            fd = self._task_fds.get(handle.id)
        if fd is None:
            raise ProcessLookupError(f"task {handle.id} is not running")
        signals.pidfd_send_signal(fd, num)

    def stop(self, handle: TaskHandle, signal: str, timeout: float, delay: float = 0.0) -> None:
        """Send `signal` (default SIGINT) after `delay`; the whole cgroup is killed after
        `timeout` more. Returns at once: the exit arrives through poll_exits."""
        if delay > 0:
            with self._lock:
                self._delayed[handle.id] = (time.monotonic() + delay, handle, signal, timeout)
            return
        if timeout <= 0:
            if cg := self._cgroup(handle):
                cg.kill_all()
            return
        try:
            self.signal(handle, signal or "SIGINT")
        except ProcessLookupError:
            if cg := self._cgroup(handle):
                cg.kill_all()
            return
        with self._lock:
            self._deadlines[handle.id] = (time.monotonic() + timeout, handle)

    def inspect(self, handle: TaskHandle) -> Literal["running", "exited", "unknown"]:
        if proc.same_process(handle.shim_pid, handle.shim_start_ticks):
            return "running"
        return "exited" if (Path(handle.task_dir) / "exit-status").exists() else "unknown"

    def destroy(self, handle: TaskHandle, force: bool = False) -> None:
        if not force and self.inspect(handle) == "running":
            raise StartError(f"task {handle.id} is still running (use force)")
        if cg := self._cgroup(handle):
            cg.kill_all()
            cg.remove()
        with self._lock:
            self._deadlines.pop(handle.id, None)

    def render_templates(self, config: TaskConfig) -> None:
        """Files only: a template that sets environment takes effect at the next start."""
        alloc_id, _, task = config.id.rpartition("/")
        pw = pwd.getpwnam(config.user or "nobody")
        for t in config.templates:
            templates.write(self.dirs(alloc_id, task), t.destination, t.text, t.perms, pw)

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
