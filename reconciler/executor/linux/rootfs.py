"""The task's filesystem: host dirs of `chroot_env` bind-mounted read-only (never copied or
hard-linked), plus /local, /alloc, /secrets and /tmp. This module only prepares directories
and lists mounts; the shim performs them inside the task's mount namespace."""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import stat
import struct
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.executor.linux import safefs

# Nomad's DefaultChrootEnv (client/config/config.go): host path -> task path.
DEFAULT_CHROOT_ENV: dict[str, str] = {
    p: p
    for p in (
        "/bin", "/etc", "/lib", "/lib32", "/lib64", "/run/resolvconf", "/sbin", "/usr",
        "/run/systemd/resolve",
    )
}  # fmt: skip
# Files a task never needs to read, even with Nomad's default dac_override capability.
MASKED = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
# Below the group's alloc/ and the task's dir: (name, mode). Logs are root's: the shim writes
# them, the task only reads the directory (mounted read-only).
SHARED_DIRS = (("data", 0o777), ("tmp", 0o1777), ("logs", 0o755))
TASK_DIRS = (("local", 0o777), ("tmp", 0o1777))
# Mounted for every task; nothing else is mounted over or beneath them.
TASK_MOUNT_POINTS = ("/local", "/alloc", "/secrets", "/tmp", "/dev", "/proc", "/sys")


# chattr +T: the ioctls and the flag (linux/fs.h)
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def spread_out(path: Path) -> bool:
    """Mark `path` as the top of unrelated directory trees for ext2/3/4's Orlov allocator
    (`chattr +T`): each subdirectory, a group instance's tree, is placed in a block group of its
    own rather than beside its siblings. On ext4 without a journal, taking an inode steps one
    by one over every inode of its block group freed in the last minutes (ialloc.c,
    recently_deleted): where many tasks came and went, each of a start's 14 new inodes cost
    0.13-0.32 ms of CPU, and 0.04 ms with the flag (bench/results/bringup.md). A hint only:
    False where the filesystem has no such flag."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        got = fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("q", 0))
        flags = struct.unpack("q", got)[0] & 0xFFFFFFFF
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("q", flags | FS_TOPDIR_FL))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class TaskDirs:
    alloc: Path  # shared by the group instance's tasks: data/, logs/, tmp/
    task: Path  # this task: local/, tmp/, secrets/ (staged templates), and the shim's files

    @property
    def local(self) -> Path:
        return self.task / "local"

    @property
    def secrets(self) -> Path:
        return self.task / "secrets"

    @property
    def logs(self) -> Path:
        return self.alloc / "alloc" / "logs"

    @property
    def exit_file(self) -> Path:
        return self.task / "exit-status"

    @property
    def config_file(self) -> Path:
        return self.task / "shim.conf"


def prepare(dirs: TaskDirs, chroot_env: Mapping[str, str] | None,
            spares: Spares | None = None, secrets_mb: int = 1) -> list[tuple[str, str, str]]:  # fmt: skip
    """Create the host-side directories (once per group instance and task: a restart finds
    them); return what the shim builds inside the task's tmpfs root, in order, as
    (kind, source, target-inside-root).

    Only what the task sees is made: every new inode costs (ext4 without a journal skips
    recently freed inodes one by one), so the root's mount point is shared by all tasks
    (each mounts its tmpfs there in its own namespace) and secrets/ waits for a template."""
    env = DEFAULT_CHROOT_ENV if chroot_env is None else chroot_env
    alloc, task = str(dirs.alloc), str(dirs.task)
    if not _complete(task):
        if spares is not None:
            spares.place(alloc, task)
        # The paths down to alloc/ and the task dir are the service's own (root-owned, never
        # mounted into a task); below them a task of the group may already have written, so
        # each directory is made and given its mode through a fd, never by name. Those that
        # exist get their mode again: a start cut short may have made one and not set it.
        os.makedirs(alloc + "/alloc", mode=0o755, exist_ok=True)
        os.makedirs(task, mode=0o755, exist_ok=True)
        _make_subdirs(alloc + "/alloc", SHARED_DIRS, chmod=True)
        _make_subdirs(task, TASK_DIRS, chmod=True)
    binds, masks = _host_mounts(tuple(sorted(env.items())))
    return [*binds, *task_mounts(dirs, secrets_mb), *masks]


Mount = tuple[str, str, str]


class Spares:
    """Directory skeletons made ahead of their tasks (by the warm pool's thread): a start that
    needs a new group or task directory renames one into place instead of making up to nine,
    each of which can take milliseconds on a filesystem that has just freed many inodes.
    A rename never replaces a directory that holds anything (the kernel refuses), so a start
    racing another of its group keeps the one that won."""

    def __init__(self, where: Path, most: int = 2) -> None:
        self.where = where
        self.most = most
        self._stock: dict[str, list[str]] = {"alloc": [], "task": []}
        self._lock = threading.Lock()
        shutil.rmtree(where, ignore_errors=True)  # a crashed service's

    def fill(self) -> None:
        if not os.path.isdir(self.where):
            os.makedirs(self.where, mode=0o700, exist_ok=True)
            spread_out(self.where)  # as allocs/: where the skeletons are made is where they stay
        for kind, make in (("alloc", self._make_alloc), ("task", self._make_task)):
            while len(self._stock[kind]) < self.most:
                path = make(str(self.where / f"{kind}-{uuid.uuid4().hex[:12]}"))
                with self._lock:
                    self._stock[kind].append(path)

    def _make_alloc(self, path: str) -> str:
        os.makedirs(path + "/alloc", mode=0o755)
        os.mkdir(path + "/tasks", 0o755)
        _make_subdirs(path + "/alloc", SHARED_DIRS)
        return path

    def _make_task(self, path: str) -> str:
        os.makedirs(path, mode=0o755)
        _make_subdirs(path, TASK_DIRS)
        return path

    def _take(self, kind: str) -> str | None:
        with self._lock:
            return self._stock[kind].pop() if self._stock[kind] else None

    def place(self, alloc: str, task: str) -> None:
        if not os.path.exists(alloc) and (skeleton := self._take("alloc")):
            os.makedirs(os.path.dirname(alloc), mode=0o755, exist_ok=True)
            try:
                os.rename(skeleton, alloc)
            except OSError:
                shutil.rmtree(skeleton, ignore_errors=True)
        if (not os.path.exists(task) and os.path.isdir(os.path.dirname(task))
                and (skeleton := self._take("task"))):  # fmt: skip
            try:
                os.rename(skeleton, task)
            except OSError:
                shutil.rmtree(skeleton, ignore_errors=True)


def _complete(task: str) -> bool:
    """The task dir's last directory made (tmp/, after the group's and local/) is there with
    its mode, so all the rest is: a start cut short (the service killed in the middle of
    it) leaves less, and the next start completes it."""
    try:
        st = os.stat(task + "/" + TASK_DIRS[-1][0], follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == TASK_DIRS[-1][1]


def _make_subdirs(base: str, subdirs: tuple[tuple[str, int], ...], chmod: bool = False) -> None:
    fd = safefs.open_base(base)
    try:
        for name, mode in subdirs:
            os.close(safefs.ensure_dir(fd, name, mode, chmod=chmod))
    finally:
        os.close(fd)


def host_mounts(chroot_env: Mapping[str, str] | None) -> list[Mount]:
    """The node's part of every task root (chroot_env, then the masks over it)."""
    env = DEFAULT_CHROOT_ENV if chroot_env is None else chroot_env
    binds, masks = _host_mounts(tuple(sorted(env.items())))
    return [*binds, *masks]


@functools.lru_cache(maxsize=8)
def _host_mounts(env: tuple[tuple[str, str], ...]) -> tuple[tuple[Mount, ...], tuple[Mount, ...]]:
    """The node's part of every task root: chroot_env, and the files masked over it. The same
    for all tasks, so it is looked up once per node configuration."""
    mounts: list[Mount] = []
    for host, inside in sorted(env, key=lambda kv: kv[1].count("/")):
        if not os.path.lexists(host):
            continue
        if os.path.islink(host) and os.path.dirname(inside) == "/":
            # Debian's merged /usr: /bin -> usr/bin. Keep the link, mount nothing.
            mounts.append(("symlink", os.readlink(host), inside))
            continue
        mounts.append(("bind_ro", host, inside))
    env_map = dict(env)
    masks = [("bind_ro", "/dev/null", path) for path in MASKED
             if inside_env(path, env_map) and os.path.isfile(path)]  # fmt: skip
    return tuple(mounts), tuple(masks)


def task_mounts(dirs: TaskDirs, secrets_mb: int = 1) -> list[Mount]:
    """The task's own directories in its root, in mount order: the one list both a cold start
    (prepare) and a claim of a warm shim (shimconfig.warm_task_mounts) hand to the shim."""
    alloc, task = str(dirs.alloc), str(dirs.task)
    return [
        ("bind_rw", alloc + "/alloc", "/alloc"),
        ("bind_ro", alloc + "/alloc/logs", "/alloc/logs"),
        ("bind_rw", task + "/local", "/local"),
        ("bind_rw", task + "/tmp", "/tmp"),
        # /secrets is a small noexec tmpfs; templates rendered for it are staged on the host
        # (root-only) and copied in by the shim.
        ("tmpfs", "/secrets", f"size={secrets_mb}m,mode=0700"),
        ("copy_into", task + "/secrets", "/secrets"),
    ]


def inside_env(path: str, env: Mapping[str, str]) -> bool:
    return any(path == h or path.startswith(h.rstrip("/") + "/") for h in env if h == env[h])
