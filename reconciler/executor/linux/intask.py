"""A file written into a running task's own tmpfs (its /secrets), which exists only in the
task's mount namespace: a re-rendered `secrets/` template must reach it there, as under Nomad,
where the secrets directory the task sees is the one templates render into.

The task can write its /secrets, so the write goes beneath it with no link followed (safefs),
and with the task's own credentials: this thread's fsuid and fsgid are the task user's for the
write (Linux keeps them per thread), so the kernel checks every step as it would the task's.
The task is found by its pid only after its parent is checked to be its shim (pid and start
time): a pid reused by another process, another task's included, is never written into.
"""

from __future__ import annotations

import ctypes
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.executor.base import TaskHandle
from reconciler.executor.linux import proc, safefs

_libc = ctypes.CDLL(None, use_errno=True)
_QUERY = 0xFFFFFFFF  # an id setfsuid/setfsgid refuse, so the call only answers the current one


class NotRunning(OSError):
    """The task is gone (or its pid is another process's now)."""


@contextmanager
def task_credentials(uid: int, gid: int) -> Iterator[None]:
    """This thread's filesystem ids set to the task's for the block (group first: with the
    user id dropped first, the group could no longer be changed)."""
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    try:
        if _libc.setfsuid(_QUERY) != uid or _libc.setfsgid(_QUERY) != gid:
            raise PermissionError(f"could not take the task's ids {uid}:{gid}")
        yield
    finally:
        _libc.setfsuid(os.geteuid())
        _libc.setfsgid(os.getegid())


def _parent(proc_fd: int) -> int:
    fd = os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    try:
        stat = os.read(fd, 4096).decode()
    finally:
        os.close(fd)
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def write_secret(handle: TaskHandle, rel: str, data: bytes, perms: int, uid: int, gid: int) -> None:
    """Replace `rel` beneath the running task's /secrets with `data`."""
    try:
        proc_fd = os.open(f"/proc/{handle.pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotRunning(f"task {handle.id} is not running") from None
    try:
        # /proc/PID stays this process's while the fd is open, so checking its parent once
        # here proves whose root `root` below is.
        if _parent(proc_fd) != handle.shim_pid or not proc.same_process(
            handle.shim_pid, handle.shim_start_ticks
        ):
            raise NotRunning(f"task {handle.id} is not running")
        with task_credentials(uid, gid):
            root = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc_fd)
            try:
                secrets = safefs.openat2(root, "secrets", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
            finally:
                os.close(root)
            try:
                safefs.write_stream(secrets, rel, io.BytesIO(data), perms, None)
            finally:
                os.close(secrets)
    finally:
        os.close(proc_fd)
