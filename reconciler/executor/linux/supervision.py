"""Supervision of running tasks, a part of LinuxExecutor: one waiter thread calls
`poll_exits`, which waits on every shim through a single epoll (1,000 tasks cost no thread
each); stop, signal, destroy.

A shim this process started reports its task's exit as a line on the pipe it reported the
start on ("exit CODE SIGNAL AT DROPPED"), after writing the same to its exit-status file and
before it tears down the task's namespaces and exits: the exit is seen without waiting for
either. A shim recovered after a service restart is watched through its pidfd, and its exit
read from the file.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal as signals
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reconciler import trace
from reconciler.executor.base import ExitResult, StartError, TaskHandle
from reconciler.executor.linux import cgroups, proc


@dataclass
class _Watched:
    handle: TaskHandle
    fd: int  # the shim's report pipe (ours), else its pidfd
    ours: bool  # spawned by this process, so we reap it
    report: bool = False


def exit_name(handle: TaskHandle) -> str:
    """The name a run's exit-status file is kept under when the next run starts."""
    return f"exit-status.{handle.shim_pid}-{handle.shim_start_ticks}"


def signal_number(name: str) -> int:
    n = name.upper()
    n = n if n.startswith("SIG") else "SIG" + n
    try:
        return int(signals.Signals[n])
    except KeyError:
        raise StartError(f'unknown signal "{name}"') from None


class Supervision:
    """The waiting half of LinuxExecutor (which sets layout and boot_id)."""

    layout: cgroups.Layout | None
    boot_id: str

    def _init_supervision(self) -> None:
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._watched: dict[int, _Watched] = {}
        self._task_fds: dict[str, int] = {}
        self._deadlines: dict[str, tuple[float, TaskHandle]] = {}  # kill the cgroup then
        self._delayed: dict[str, tuple[float, TaskHandle, str, float]] = {}  # shutdown_delay
        self._pending: list[tuple[TaskHandle, ExitResult]] = []
        # exits kept for `wait` (tests, tools): only once it has been called, so the service
        # (which reads every exit from poll_exits) keeps none of the exits it has seen
        self._done: dict[str, ExitResult] | None = None
        self._reaping: dict[int, int] = {}  # pidfd -> pid of a shim that reported, to reap
        # task id -> the run whose exit was seen last (`exit_name`): its file is kept under
        # that name when the next run starts, until a start after that
        self._exited: dict[str, str] = {}

    # ---- waiting ----

    def _watch(self, handle: TaskHandle, ours: bool, report: int | None = None) -> bool:
        """Watch a shim: through `report`, the pipe it reported the start on (see the module
        docstring), or else its pidfd. Two descriptors a task either way: that and the task's
        pidfd (for signals)."""
        if report is not None:
            fd = report
        else:
            try:
                fd = os.pidfd_open(handle.shim_pid)
            except ProcessLookupError:
                return False
        with self._lock:
            self._watched[fd] = _Watched(handle, fd, ours, report is not None)
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
        if self._exit_file(handle).exists():
            with self._lock:
                self._pending.append((handle, self._exit_result(handle)))
            return True
        return False

    @staticmethod
    def _exit_file(handle: TaskHandle) -> Path:
        """The run's exit-status file: under its own name once a next run has started (that
        run's start may not be recorded yet, and its shim writes `exit-status` in turn)."""
        kept = Path(handle.task_dir) / exit_name(handle)
        return kept if kept.exists() else Path(handle.task_dir) / "exit-status"

    def _exit_result(self, handle: TaskHandle, shim_status: int | None = None,
                     line: str | None = None) -> ExitResult:  # fmt: skip
        """The exit from the shim's report `line`, else from its exit-status file."""
        cg = self._cgroup(handle)
        oom = cg.oom_killed() if cg else False
        dropped = 0
        try:
            if line is None:
                line = self._exit_file(handle).read_text()
            code_s, sig_s, at_s, *rest = line.split()
            dropped = int(rest[0]) if rest else 0
            code, sig, at = int(code_s), int(sig_s), float(at_s)
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
        if sig:
            code = 128 + sig
        if oom and sig != signals.SIGKILL:
            oom = False
        return ExitResult(exit_code=code, signal=sig, oom_killed=oom, finished_at=at,
                          dropped_log_lines=dropped)  # fmt: skip

    def _reported(self, w: _Watched) -> ExitResult:
        """The exit a shim of ours reported on its pipe. The shim is still tearing the task's
        namespaces down: it is reaped when its pidfd says it is done. A pipe that closed
        without a line (the shim was killed) falls back to the shim's status and the file."""
        try:
            data = os.read(w.fd, 512).decode(errors="replace")
        except OSError:
            data = ""
        line = data.strip()
        if line.startswith("exit "):
            self._reap_later(w.handle.shim_pid)
            return self._exit_result(w.handle, line=line.removeprefix("exit "))
        shim_status = None
        with contextlib.suppress(ChildProcessError):
            shim_status = os.waitpid(w.handle.shim_pid, 0)[1]
        return self._exit_result(w.handle, shim_status)

    def _reap_later(self, pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return
        with self._lock:
            self._reaping[fd] = pid
        self._epoll.register(fd, select.EPOLLIN)

    def _reap(self, fd: int) -> None:
        with self._lock:
            pid = self._reaping.pop(fd)
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)
        os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def _clear_soon(self, name: str) -> None:
        """An exited task's cgroups may be cleared for its next run (LinuxExecutor: pool)."""

    def _clear_pending(self) -> None:
        """Clear them now: at the next poll, while the loop records the exits just returned."""

    def poll_exits(self, timeout: float) -> list[tuple[TaskHandle, ExitResult]]:
        self._clear_pending()
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
        if any(fd not in self._reaping for fd, _ in ready):
            trace.mark("x_epoll")
        for fd, _ in ready:
            with self._lock:
                w = self._watched.pop(fd, None)
                reaping = fd in self._reaping
            if reaping:
                self._reap(fd)
            if w is None:
                continue
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            if w.report:
                result = self._reported(w)
            else:
                shim_status = None
                if w.ours:
                    with contextlib.suppress(ChildProcessError):
                        shim_status = os.waitpid(w.handle.shim_pid, 0)[1]
                result = self._exit_result(w.handle, shim_status)
            os.close(fd)
            if cg := self._cgroup(w.handle):
                cg.kill_leftovers()
                self._clear_soon(cg.name)
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
        for h, _ in out:
            self._exited[h.id] = exit_name(h)
        if self._done is not None:
            with self._lock:
                for h, r in out:
                    self._done[h.id] = r
        return out

    def wait(self, handle: TaskHandle, timeout: float | None = None) -> ExitResult | None:
        """For single-threaded callers (tests, tools): poll until this task's exit is seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._done is None:
                self._done = {}
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
        return "exited" if self._exit_file(handle).exists() else "unknown"

    def destroy(self, handle: TaskHandle, force: bool = False) -> None:
        if not force and self.inspect(handle) == "running":
            raise StartError(f"task {handle.id} is still running (use force)")
        if cg := self._cgroup(handle):
            cg.kill_all()
            cg.remove()
        self._exited.pop(handle.id, None)
        with self._lock:
            self._deadlines.pop(handle.id, None)
