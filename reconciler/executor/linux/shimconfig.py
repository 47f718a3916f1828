"""What a task's shim is told: the key/value items of its config (see launch.write_config),
for a cold start (`shim run`: the shim builds the whole root) and for a claim of a warm shim
(`shim warm`: the node's part of the root is built already, the task's directories are
attached as detached mounts)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping, Sequence

from reconciler.executor.base import NodeConfig, StartError, TaskConfig
from reconciler.executor.linux import caps, resolvconf, rootfs, safefs

Items = list[tuple[str, str]]


def late_mounts(config: TaskConfig, dirs: rootfs.TaskDirs) -> Items:
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


def warm_root(root: str, chroot_env: Mapping[str, str] | None) -> Items:
    """A warm shim's config: the node's part of every task root, and the mount points a claim
    attaches the task's directories to."""
    items: Items = [("root", root)]
    items += [(kind, f"{src}\t{dst}") for kind, src, dst in rootfs.host_mounts(chroot_env)]
    items += [("mount_point", p) for p in ("/alloc", "/local", "/tmp", "/secrets")]
    return items


def warm_task_mounts(dirs: rootfs.TaskDirs, secrets_mb: int = 1) -> Items:
    """rootfs.task_mounts, as a claim attaches them: binds become detached mounts the warm
    shim's parent opens (bind_late); the rest goes as it is (staged secrets are copied, or
    not, by the same code in the shim as for a cold start)."""
    items: Items = []
    for kind, src, dst in rootfs.task_mounts(dirs, secrets_mb):
        if kind in ("bind_rw", "bind_ro"):
            items.append(("bind_late", f"{src}\t{dst}\t{kind[-2:]}"))
        elif kind in ("tmpfs", "copy_into"):
            items.append((kind, f"{src}\t{dst}"))
        else:
            raise AssertionError(f"a warm shim cannot attach a {kind} mount")
    return items


def task_items(
    config: TaskConfig,
    node: NodeConfig,
    dirs: rootfs.TaskDirs,
    pw: pwd.struct_passwd,
    env: Mapping[str, str],
    cgroup_procs: Sequence[str],
) -> Items:
    """The part after the mounts, the same for a cold start and a claim: namespaces,
    credentials, command, logs, exit status."""
    isolated = not config.raw_exec
    pid_mode = config.pid_mode or node.default_pid_mode
    ipc_mode = config.ipc_mode or node.default_ipc_mode
    items: Items = [
        ("new_pid", "1" if isolated and pid_mode == "private" else "0"),
        ("new_ipc", "1" if isolated and ipc_mode == "private" else "0"),
        ("new_uts", "1" if isolated else "0"),
    ]
    if config.net_mode == "none":
        items.append(("net_none", "1"))
    items += [("cgroup", p) for p in cgroup_procs]
    items += [("uid", str(pw.pw_uid)), ("gid", str(pw.pw_gid))]
    capset = caps.calculate(node.allow_caps, config.cap_add, config.cap_drop)
    all_caps = caps.mask(caps.NUMBERS) if config.raw_exec else caps.mask(capset)
    items.append(("caps", hex(all_caps)))
    items.append(("cwd", config.work_dir or ("/" if isolated else str(dirs.local))))
    items += [("env", f"{k}={v}") for k, v in sorted(env.items())]
    items += [("arg", a) for a in (config.command, *config.args)]
    if not config.logs_disabled:
        task = config.id.rpartition("/")[2]
        size = config.log_max_file_mb << 20
        for stream in ("stdout", "stderr"):
            base = dirs.logs / f"{task}.{stream}"
            items.append((stream, f"{base}\t{config.log_max_files}\t{size}"))
    items.append(("exit_file", str(dirs.exit_file)))
    return items


def warm_eligible(config: TaskConfig, node: NodeConfig) -> bool:
    """Whether a warm shim fits: it was made isolated, with private pid and ipc namespaces,
    the host's network and a pivoted root, and no cpuset (cores) of its own."""
    return (
        not config.raw_exec
        and (config.pid_mode or node.default_pid_mode) == "private"
        and (config.ipc_mode or node.default_ipc_mode) == "private"
        and config.net_mode not in ("none", "bridge")
        and not node.no_pivot_root
        and not config.cores
        and not config.core_ids
    )
