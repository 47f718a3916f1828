"""The task's filesystem: host dirs of `chroot_env` bind-mounted read-only (never copied or
hard-linked), plus /local, /alloc, /secrets and /tmp. This module only prepares directories
and lists mounts; the shim performs them inside the task's mount namespace."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


def prepare(dirs: TaskDirs, chroot_env: Mapping[str, str] | None) -> list[tuple[str, str, str]]:
    """Create the host-side directories (once per group instance and task: a restart finds
    them); return what the shim builds inside the task's tmpfs root, in order, as
    (kind, source, target-inside-root).

    Only what the task sees is made: every new inode costs (ext4 without a journal skips
    recently freed inodes one by one), so the root's mount point is shared by all tasks
    (each mounts its tmpfs there in its own namespace) and secrets/ waits for a template."""
    env = DEFAULT_CHROOT_ENV if chroot_env is None else chroot_env
    if not dirs.local.is_dir():
        for d, mode in ((dirs.alloc / "alloc" / "data", 0o777), (dirs.alloc / "alloc" / "tmp", 0o1777)):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, mode)
        os.makedirs(dirs.logs, exist_ok=True)
        os.makedirs(dirs.task, exist_ok=True)
        for d, mode in ((dirs.local, 0o777), (dirs.task / "tmp", 0o1777)):
            d.mkdir(exist_ok=True)
            os.chmod(d, mode)
    return _mounts(dirs, env)


def _mounts(dirs: TaskDirs, env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    mounts: list[tuple[str, str, str]] = []
    for host, inside in sorted(env.items(), key=lambda kv: kv[1].count("/")):
        if not os.path.lexists(host):
            continue
        if os.path.islink(host) and os.path.dirname(inside) == "/":
            # Debian's merged /usr: /bin -> usr/bin. Keep the link, mount nothing.
            mounts.append(("symlink", os.readlink(host), inside))
            continue
        mounts.append(("bind_ro", host, inside))
    mounts.append(("bind_rw", str(dirs.alloc / "alloc"), "/alloc"))
    mounts.append(("bind_ro", str(dirs.logs), "/alloc/logs"))
    mounts.append(("bind_rw", str(dirs.local), "/local"))
    mounts.append(("bind_rw", str(dirs.task / "tmp"), "/tmp"))
    # /secrets is a small noexec tmpfs; templates rendered for it are staged on the host
    # (root-only) and copied in by the shim.
    mounts.append(("tmpfs", "/secrets", "size=1m,mode=0700"))
    mounts.append(("copy_into", str(dirs.secrets), "/secrets"))
    for path in MASKED:
        if inside_env(path, env) and os.path.isfile(path):
            mounts.append(("bind_ro", "/dev/null", path))
    return mounts


def inside_env(path: str, env: Mapping[str, str]) -> bool:
    return any(path == h or path.startswith(h.rstrip("/") + "/") for h in env if h == env[h])
