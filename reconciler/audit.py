"""`reconciler audit`: each isolation property of a job's tasks, with an exposure rating, in
the spirit of `systemd-analyze security`; and the node settings that would let a task reach
the host through the service's own hands. A job model and the node config in, rows out (the
node audit also reads the modes of the host paths it names)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.executor.base import NodeConfig, StartError
from reconciler.executor.linux import caps, rootfs
from reconciler.spec.models import Job

# How much each added capability weakens isolation (others: 0.5).
CAP_WEIGHT = {
    "sys_admin": 3.0, "sys_module": 3.0, "sys_rawio": 2.0, "sys_ptrace": 2.0, "bpf": 2.0,
    "perfmon": 1.0, "net_admin": 1.5, "dac_read_search": 1.0, "sys_boot": 2.0, "sys_time": 1.0,
    "mac_admin": 2.0, "mac_override": 2.0, "linux_immutable": 1.0, "net_raw": 0.5,
}  # fmt: skip
WRITABLE = "/local, /alloc, /secrets, /tmp, /dev/shm"


@dataclass(frozen=True)
class Finding:
    prop: str
    value: str
    exposure: float
    note: str = ""


@dataclass(frozen=True)
class TaskAudit:
    task: str  # GROUP/TASK
    findings: tuple[Finding, ...]

    @property
    def score(self) -> float:
        return min(10.0, round(sum(f.exposure for f in self.findings), 1))

    @property
    def rating(self) -> str:
        s = self.score
        return "OK" if s <= 2 else "MEDIUM" if s <= 4 else "EXPOSED" if s <= 7 else "UNSAFE"


def audit(job: Job, node: NodeConfig) -> list[TaskAudit]:
    out = []
    for gname, group in job.group.items():
        for tname, task in group.task.items():
            cfg = task.config
            f: list[Finding] = []
            if task.driver == "raw_exec":
                f.append(Finding("driver", "raw_exec", 10.0, "no namespaces, no chroot, host user"))
                out.append(TaskAudit(f"{gname}/{tname}", tuple(f)))
                continue
            user = task.user or "nobody"
            f.append(Finding("user", user, {"nobody": 0.0, "root": 3.0}.get(user, 0.5),
                             "" if user != "root" else "root in the task"))  # fmt: skip
            pid = cfg.pid_mode or node.default_pid_mode
            f.append(Finding("pid namespace", pid, 1.5 if pid == "host" else 0.0,
                             "sees host processes" if pid == "host" else ""))  # fmt: skip
            ipc = cfg.ipc_mode or node.default_ipc_mode
            f.append(Finding("ipc namespace", ipc, 0.5 if ipc == "host" else 0.0))
            net = group.network.mode
            f.append(Finding("network", net, {"host": 1.0, "bridge": 0.3, "none": 0.0}[net],
                             "the host's interfaces and ports" if net == "host" else ""))  # fmt: skip
            try:
                have = caps.calculate(node.allow_caps, cfg.cap_add, cfg.cap_drop)
                added = sorted(have - caps.NOMAD_DEFAULTS)
                dropped = sorted(caps.NOMAD_DEFAULTS - have)
                f.append(Finding(
                    "capabilities beyond defaults", ", ".join(added) or "none",
                    sum(CAP_WEIGHT.get(c, 0.5) for c in added),
                    f"dropped: {', '.join(dropped)}" if dropped else "",
                ))  # fmt: skip
            except StartError as e:
                f.append(Finding("capabilities", "refused", 0.0, str(e)))
            res = task.resources
            if res.memory_max < 0:
                f.append(Finding("memory limit", "none (memory_max = -1)", 1.5))
            else:
                f.append(Finding("memory limit", f"{res.memory_max or res.memory} MB", 0.0))
            f.append(Finding("cpu", f"{res.cpu} MHz as a weight" + (f", {res.cores} cores" if res.cores else ""),
                             0.0 if res.cores else 0.2, "" if res.cores else "a share, not a cap"))  # fmt: skip
            f.append(
                Finding("pids limit", str(node.pids_max), 0.5 if node.pids_max > 16384 else 0.0)
            )
            f.append(Finding("writable paths", WRITABLE, 0.0, "the root is read-only"))
            f.append(Finding("no_new_privs", "yes", 0.0))
            f.append(Finding("root filesystem", "chroot" if node.no_pivot_root else "pivot_root",
                             0.5 if node.no_pivot_root else 0.0))  # fmt: skip
            out.append(TaskAudit(f"{gname}/{tname}", tuple(f)))
    return out


def _writable_by_others(st: os.stat_result) -> str:
    """Who besides root can change entries of this directory (a sticky, root-owned directory
    such as /tmp lets others add entries but not replace root's)."""
    if st.st_uid != 0:
        return f"its owner (uid {st.st_uid})"
    if st.st_mode & stat.S_ISVTX:
        return ""
    if st.st_mode & 0o002:
        return "every user"
    if st.st_mode & 0o020 and st.st_gid != 0:
        return f"group {st.st_gid}"
    return ""


def audit_node(
    node: NodeConfig, data_dir: Path | None,
    lstat: Callable[[str], os.stat_result] = os.lstat,
) -> list[Finding]:  # fmt: skip
    """Node settings that re-open a way out of a task, or into another task's files."""
    out: list[Finding] = []
    env = rootfs.DEFAULT_CHROOT_ENV if node.chroot_env is None else node.chroot_env
    data = str(data_dir.resolve()) if data_dir is not None else None
    for host, inside in sorted(env.items()):
        try:
            st = lstat(host)
        except OSError:
            continue
        if data and (_under(data, host) or _under(host, data)):
            out.append(Finding(f"chroot_env {host}", f"-> {inside}", 10.0,
                               "shows tasks the data dir: other tasks' files and staged secrets"))  # fmt: skip
        if any(_under(inside, w) for w in ("/local", "/alloc", "/secrets", "/tmp")):
            out.append(Finding(f"chroot_env {host}", f"-> {inside}", 3.0,
                               "lands inside a directory the task writes"))  # fmt: skip
        if stat.S_ISDIR(st.st_mode) and (who := _writable_by_others(st)):
            out.append(Finding(f"chroot_env {host}", f"writable by {who}", 3.0,
                               "what tasks run and read there can be changed from outside"))  # fmt: skip
    for name, (vpath, _) in sorted(node.host_volumes.items()):
        if data and (_under(data, vpath) or _under(vpath, data)):
            out.append(Finding(f"host_volume {name}", vpath, 10.0,
                               "shows tasks the data dir: other tasks' files and staged secrets"))  # fmt: skip
    if data:
        path = Path(data)
        for anc in [path, *path.parents]:
            try:
                who = _writable_by_others(lstat(str(anc)))
            except OSError:
                continue
            if who:
                out.append(Finding("data dir path", f"{anc} writable by {who}", 10.0,
                                   "the service's own directories could be swapped for links"))  # fmt: skip
    if node.no_pivot_root:
        allowed = caps.NOMAD_DEFAULTS if node.allow_caps is None else node.allow_caps
        if "sys_chroot" in allowed:
            out.append(Finding("no_pivot_root", "chroot with sys_chroot allowed", 5.0,
                               "a task with sys_chroot can leave a chroot; drop it or use pivot_root"))  # fmt: skip
    if node.allow_raw_exec:
        out.append(Finding("allow_raw_exec", "true", 5.0,
                           "raw_exec tasks run on the host filesystem; the data dir is traversable"))  # fmt: skip
    if node.allow_root:
        out.append(Finding("allow_root", "true", 2.0, "root tasks can write all of /alloc"))
    return out


def _under(path: str, top: str) -> bool:
    top = top.rstrip("/") or "/"
    return path == top or path.startswith(top + "/") or top == "/"
