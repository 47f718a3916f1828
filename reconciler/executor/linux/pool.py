"""Warm shims: the expensive kernel objects of a start made before a job file arrives.

A warm shim (`reconciler-shim warm`) has its child in fresh mount, pid, ipc and uts
namespaces, inside a read-only-bound copy of the node's part of a task root (chroot_env, /dev,
/proc, /sys) it has already pivoted into, and already moved into cgroups of its own
(`pool-N` in our subtree): the two RCU grace-period waits of a cold start (moving a process
into a cgroup, detaching the host's mount tree) are paid here, in the background. A claim
renames those cgroups to the task's (a rename moves no process) and hands the shim the task's
config; the shim attaches the task's own directories and execs.

Guarantees: a warm shim is handed out once (popped under a lock); one whose process died
(killed by hand) is dropped and replaced; none outlives the service (a warm shim kills its
child and exits when its stdin, our pipe, reaches EOF), and the `pool-*` cgroups a crashed
service left are removed when the next one starts (`sweep`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import select
import shutil
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler import trace
from reconciler.executor.linux import cgroups, cleanup, cpusets, launch, rootfs

log = logging.getLogger("reconciler")
PREFIX = "pool-"
RATE_WINDOW = 10.0  # seconds of recent starts that size the pool
READY_TIMEOUT = 10.0
REFILL_DELAY = 0.03
QUIET = 0.1  # seconds without a start before earlier runs' cgroups are removed
ASIDE_AT_MOST = 32  # ... or as soon as this many wait


@dataclass
class Warm:
    """One prepared shim, owned by the pool until claimed."""

    pid: int  # the shim (our child)
    child: int  # its child, the task-to-be
    stdin: int  # our end: "claim SIZE\n" and the config, or EOF to let it go
    stdout: int  # its reports: "started <pid>" after a claim
    pidfd: int
    cgroup: cgroups.TaskCgroup
    limits: cgroups.Limits | None = None  # set ahead on its cgroups (the last claim's)


class Pool:
    def __init__(
        self,
        layout: cgroups.Layout,
        shim: Callable[[], Path],
        work_dir: Path,
        host_items: Callable[[], Sequence[tuple[str, str]]],
        stderr_path: Path,
        most: int,
        spares: rootfs.Spares | None = None,
    ) -> None:
        self.layout = layout
        self.shim = shim
        self.work_dir = work_dir
        self.host_items = host_items
        self.stderr_path = stderr_path
        self.most = most
        self.spares = spares
        self.made = 0  # warm shims made, for tests and metrics
        self.replaced = 0  # dropped because their process was gone
        self._ready: list[Warm] = []
        self._aside: list[cgroups.TaskCgroup] = []  # earlier runs' cgroups, to be removed
        self._clear_lock = threading.Lock()  # a start's clear_name vs the waiter's clear_pending
        self._clear_pending: set[str] = set()
        self._cleared: set[str] = set()  # cleared by clear_pending, not started since
        self.expected: cgroups.Limits | None = None  # the last claim's limits: set ahead
        self._lock = threading.Lock()
        self._starts: deque[float] = deque(maxlen=4096)
        self._names = itertools.count()
        # Unique among the pools of a data dir, and without a dot: a task's cgroup name has
        # several (job.group.index.task.hash), so no job name can make one look like ours.
        self._tag = f"{os.getpid()}x{uuid.uuid4().hex[:6]}"
        self.old_files = work_dir / "old"  # previous runs' files, removed off the start path
        shutil.rmtree(self.old_files, ignore_errors=True)  # a crashed service's
        self._old_names: list[Path] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failures = 0

    # ---- the service's side ----

    def warm_up(self) -> None:
        """Start keeping warm shims (at least one) from now on."""
        self._ensure_thread()

    def started(self) -> None:
        """A task start (warm or cold) happened: the rate sizes the pool."""
        with self._lock:
            self._starts.append(time.monotonic())
        self._wake()

    def claim(self) -> Warm | None:
        """A live warm shim, removed from the pool (never handed out twice), or None."""
        self._ensure_thread()
        while True:
            with self._lock:
                if not self._ready:
                    warm = None
                else:
                    warm = self._ready.pop(0)
            if warm is None:
                self._wake()
                return None
            if _alive(warm.pidfd):
                self._wake()
                return warm
            self._discard(warm)
            self.replaced += 1

    def clear_name(self, name: str) -> bool:
        """Make way for a start under a task's cgroup name. A task that restarts keeps its
        emptied cgroups; removing them waits for the kernel (~8 ms, most of a restart), so they
        are renamed aside (a rename never waits) under a pool name and removed on the refill
        thread, or by `sweep` after a crash. A cgroup pinned to cores of its own is left to the
        claim's rename to remove (its removal gives the cores back): False then, True when
        nothing is left under the name. Called by a start (claim or cold), it also cancels a
        `clear_soon` of the name: from then on the name's cgroups are the new run's."""
        with self._clear_lock:
            self._clear_pending.discard(name)
            if name in self._cleared:  # by clear_pending: nothing made the name's cgroups since
                self._cleared.discard(name)
                return True
            return self._clear(name)

    def keep_name(self, name: str) -> None:
        """A cold start reuses the name's cgroups (emptied, not removed): no clear_soon of it
        after this (one under way is waited for; the start then makes them afresh)."""
        with self._clear_lock:
            self._clear_pending.discard(name)
            self._cleared.discard(name)

    def clear_soon(self, name: str) -> None:
        """A task's exit was seen: its cgroups are cleared by `clear_pending` (on the waiter
        thread, while the loop records the exit and plans), unless a start of the task comes
        first. Only the waiter thread calls this and clear_pending."""
        with self._clear_lock:
            self._clear_pending.add(name)

    def clear_pending(self) -> None:
        with self._clear_lock:
            names, self._clear_pending = self._clear_pending, set()
            for name in names:
                try:
                    if self._clear(name):
                        self._cleared.add(name)
                except OSError as e:  # the claim's own rename removes what is left
                    log.debug("clearing %s: %s", name, e)

    def _clear(self, name: str) -> bool:
        old = cgroups.TaskCgroup.at(self.layout, name)
        pinned = old.dirs.get("cpuset")
        if pinned is not None and pinned.parent.name != cpusets.SHARED:
            return not pinned.is_dir()
        if not any(p.is_dir() for p in old.dirs.values()):
            return True
        aside = old.rename(f"{PREFIX}{self._tag}-old{next(self._names)}", clear=False)
        with self._lock:
            self._aside.append(aside)
        self._wake()
        return True

    def set_file_aside(self, path: Path) -> None:
        """A previous run's file (exit status, shim config) out of a start's way. Unlinking it
        frees its blocks, which waits for the device on a filesystem mounted with `discard`
        (up to ~4 ms here, twice a restart); a rename frees nothing. Removed on the refill
        thread."""
        aside = self.old_files / str(next(self._names))
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            if not path.exists():
                return
            self.old_files.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.rename(path, aside)
        with self._lock:
            self._old_names.append(aside)
        self._wake()

    def release(self, warm: Warm) -> None:
        """Let a claimed shim go without a task (the claim failed before it was sent)."""
        self._discard(warm)

    def size(self) -> int:
        with self._lock:
            return len(self._ready)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._ready]

    def target(self) -> int:
        """How many to keep: the starts of the last RATE_WINDOW seconds, at least one, at
        most `most`."""
        now = time.monotonic()
        with self._lock:
            recent = sum(1 for t in self._starts if now - t < RATE_WINDOW)
        return min(self.most, max(1, recent))

    def close(self) -> None:
        self._closed = True
        self._wake()
        with self._lock:
            ready, self._ready = self._ready, []
        for w in ready:
            self._discard(w)
        self._remove_aside()

    # ---- the refill thread ----

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="warm-pool", daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"w")

    def _run(self) -> None:
        while not self._closed:
            # Refill a moment after a claim, not during it: making a warm shim costs the
            # CPU the claimed one needs to start its task.
            time.sleep(REFILL_DELAY)
            self._prune()
            if self._removal_due():
                self._remove_aside()
            while not self._closed and self.size() < self.target() and self._failures < 3:
                try:
                    trace.mark("bg_refill")
                    warm = self._make()
                    trace.mark("bg_refilled")
                except Exception as e:  # a failed warm shim costs only its own start
                    self._failures += 1
                    log.warning("preparing a warm shim: %s", e)
                    continue
                self._failures = 0
                with self._lock:
                    if self._closed:
                        ready = False
                    else:
                        self._ready.append(warm)
                        ready = True
                if not ready:
                    self._discard(warm)
            if self.spares is not None and not self._closed:
                try:
                    trace.mark("bg_spares")
                    self.spares.fill()
                except OSError as e:  # only a start's speed depends on them
                    log.debug("directory skeletons: %s", e)
            with self._lock:
                fds = [w.pidfd for w in self._ready]
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            for fd in fds:
                poller.register(fd, select.POLLIN)
            poller.poll(1000)  # a claim, a start, a warm shim's death, or a look at the rate
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self._wake_r, 64):
                    pass
            if self._failures >= 3 and self.size() == 0:
                time.sleep(1)  # a broken host: retry slowly
                self._failures = 2
        # closed: nothing more is made

    def _removal_due(self) -> bool:
        """Whether to remove what earlier runs left now: once no start came for QUIET
        seconds, or when ASIDE_AT_MOST cgroups wait (starts that never pause). Removing a
        cgroup holds the kernel's cgroup lock through an RCU grace period, and a claim's
        renames wait for it (restarts that met one took 6-18 ms to claim, against 0.5):
        removals go between bursts of starts (the poll below looks again within a second)."""
        with self._lock:
            last = self._starts[-1] if self._starts else 0.0
            waiting = len(self._aside)
        return waiting >= ASIDE_AT_MOST or time.monotonic() - last >= QUIET

    def _remove_aside(self) -> None:
        with self._lock:
            aside, self._aside = self._aside, []
            files, self._old_names = self._old_names, []
        if aside or files:
            trace.mark("bg_aside")
        for f in files:
            with contextlib.suppress(OSError):
                f.unlink()
        for cg in aside:
            try:
                cg.kill_all()  # (nothing, normally: the task's exit emptied it)
                cg.remove()
            except OSError as e:  # left for the next service start's sweep
                log.debug("removing %s: %s", cg.name, e)

    def _prune(self) -> None:
        """Drop warm shims whose process is gone (killed by hand), and trim to the target."""
        with self._lock:
            dead = [w for w in self._ready if not _alive(w.pidfd)]
            self._ready = [w for w in self._ready if w not in dead]
            extra = self._ready[self.most :]
            self._ready = self._ready[: self.most]
        for w in dead:
            self._discard(w)
            self.replaced += 1
        for w in extra:
            self._discard(w)

    def _make(self) -> Warm:
        name = f"{PREFIX}{self._tag}-{next(self._names)}"
        self.work_dir.mkdir(mode=0o700, exist_ok=True)  # fails once the data dir is gone
        cg = cgroups.TaskCgroup.at(self.layout, name, cpuset=False)  # the shared cores
        cg.make()
        limits = self.expected  # the next claim likely has the last one's: it writes no limit
        if limits is not None:
            try:
                cg.set_limits(limits)
            except OSError:
                cg.remove()
                raise
        conf = self.work_dir / f"{name}.conf"
        items = [*self.host_items(), *(("cgroup", p) for p in cg.procs_files())]
        launch.write_config(conf, items)
        r_in, w_in = os.pipe2(os.O_CLOEXEC)
        r_out, w_out = os.pipe2(os.O_CLOEXEC)
        err = os.open(
            self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640
        )
        try:
            pid = os.posix_spawn(
                str(self.shim()), [str(self.shim()), "warm", str(conf)],
                {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                file_actions=[(os.POSIX_SPAWN_DUP2, r_in, 0), (os.POSIX_SPAWN_DUP2, w_out, 1),
                              (os.POSIX_SPAWN_DUP2, err, 2)],
                setsid=True,
            )  # fmt: skip
        except BaseException:
            for fd in (w_in, r_out):
                os.close(fd)
            cg.remove()
            raise
        finally:
            for fd in (r_in, w_out, err):
                os.close(fd)
        pidfd = os.pidfd_open(pid)
        warm = Warm(pid, 0, w_in, r_out, pidfd, cg, limits)
        line = _read_line(r_out, READY_TIMEOUT)
        with contextlib.suppress(OSError):
            conf.unlink()
        if not line.startswith("ready "):
            self._discard(warm)
            raise RuntimeError(line.removeprefix("error ") or "the warm shim ended")
        warm.child = int(line.split()[1])
        self.made += 1
        return warm

    def _discard(self, w: Warm) -> None:
        """End a warm shim that holds no task: EOF makes it kill its child; then its cgroups."""
        for fd in (w.stdin, w.stdout):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(w.pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(w.pid, 0)
        os.close(w.pidfd)
        w.cgroup.kill_all()
        w.cgroup.remove()


def _readable(fd: int, timeout: float) -> bool:
    """poll, not select: with a thousand tasks (two descriptors each) our descriptors are
    numbered past select's limit of 1,024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout * 1000))))


def _alive(pidfd: int) -> bool:
    """A pidfd reads as ready once its process has exited."""
    return not _readable(pidfd, 0)


def _read_line(fd: int, timeout: float) -> str:
    """One line, read without buffering past it: the same pipe carries the next report."""
    out = b""
    deadline = time.monotonic() + timeout
    while not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not _readable(fd, left):
            return "error no answer from the warm shim"
        chunk = os.read(fd, 1)
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace").strip()


def is_pool_name(name: str) -> bool:
    return name.startswith(PREFIX) and "." not in name


def sweep(layout: cgroups.Layout) -> int:
    """Remove the warm shims' cgroups a stopped or crashed service left: kill what is in
    them (nothing, normally: a warm shim ends with its service) and remove them."""
    return cleanup.remove_cgroups(layout, is_pool_name)
