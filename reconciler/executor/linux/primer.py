"""Prime the kernel's cgroup migration lock before a start that is likely to follow.

Every isolated start moves its task into a cgroup. That move takes a global lock whose writer
side, when it has been idle, first waits for an RCU grace period: 7-14 ms on a small VM, most
of a lone start. The lock stays in writer mode for about one more grace period after it is
released. So when a change is first seen (a job file event, a task exit), a parked process of
ours is moved into the cgroup it is already in: nothing moves, but the wait now overlaps
parsing and planning instead of the start. Kernels mounted with `favordynmods` never wait, and
then priming costs one cheap write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from reconciler.executor.linux.cgroups import Layout

log = logging.getLogger("reconciler")
CGROUP = "primer"  # the parked process's cgroup, beside the tasks' in our subtree


class Primer:
    def __init__(self, layout: Layout, shim: Callable[[], Path]) -> None:
        base = layout.bases.get("pids") or next(iter(layout.bases.values()))
        self.procs = base / CGROUP / "cgroup.procs"
        self.shim = shim
        self.primes = 0
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._keep: int | None = None  # our end of the parked process's stdin

    def prime(self) -> None:
        """Returns at once; the wait happens on the primer's own thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="primer", daemon=True)
            self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                self._move()
                self.primes += 1
            except OSError as e:
                log.debug("priming cgroup migration: %s", e)
                self._reap()

    def _move(self) -> None:
        if self._pid is not None and self._exited(self._pid):
            self._reap()
        if self._pid is None:
            self._pid = self._park()
        fd = os.open(self.procs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(self._pid).encode())
        finally:
            os.close(fd)

    def _park(self) -> int:
        self.procs.parent.mkdir(parents=True, exist_ok=True)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(
                str(self.shim()), [str(self.shim()), "park"], {},
                file_actions=[(os.POSIX_SPAWN_DUP2, r, 0)], setsid=True,
            )  # fmt: skip
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self._keep = w  # closes with the service: the parked process then exits
        return pid

    @staticmethod
    def _exited(pid: int) -> bool:
        try:
            return os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            return True

    def _reap(self) -> None:
        """The parked process is gone or unusable: start afresh on the next prime."""
        if self._pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
        if self._keep is not None:
            os.close(self._keep)
        self._pid = self._keep = None
