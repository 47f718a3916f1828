"""cgroups v1 and v2: one cgroup per task under the service's own subtree.

Helper processes (the shim) never enter a task's cgroup: the task joins it itself, just
before it execs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.executor.linux import cpusets

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")


@dataclass(frozen=True)
class Layout:
    """Where each controller lives for this process, and under which subtree tasks go."""

    version: int  # 1 or 2
    bases: dict[str, Path]  # v1: controller -> our subtree; v2: {"unified": subtree}
    controllers: frozenset[str] = frozenset()
    missing: tuple[str, ...] = ()
    swap_accounting: bool = False  # v1: memory.memsw.* exists
    reserved_cores: frozenset[int] = frozenset()  # the node's: never in the shared cpuset

    def describe(self) -> str:
        have = ", ".join(sorted(self.controllers)) or "none"
        text = f"cgroup v{self.version} (controllers: {have})"
        if self.missing:
            text += f"; missing: {', '.join(self.missing)}"
        return text


def _mounts() -> list[tuple[str, str, set[str]]]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _src, opts = ([*right.split(), "", "", ""])[:3]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fstype, left.split()[4], set(opts.split(","))))
    return out


def _own_paths() -> dict[str, str]:
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else ["unified"]:
                own[c] = path
    return own


def detect(namespace: str, prefer: int | None = None) -> Layout | None:
    """Our subtree `<own cgroup>/<namespace>` in each hierarchy, or None without cgroups."""
    mounts = _mounts()
    own = _own_paths()
    v1 = {
        c: Path(mp)
        for fs, mp, opts in mounts
        if fs == "cgroup"
        for c in V1_CONTROLLERS
        if c in opts
    }
    v2 = next((Path(mp) for fs, mp, _ in mounts if fs == "cgroup2"), None)
    if prefer != 2 and "memory" in v1:
        bases = {c: mp / own.get(c, "/").lstrip("/") / namespace for c, mp in v1.items()}
        missing = tuple(c for c in V1_CONTROLLERS if c not in v1)
        memsw = (v1["memory"] / own.get("memory", "/").lstrip("/") / "memory.memsw.limit_in_bytes")
        return Layout(1, bases, frozenset(v1), missing, memsw.exists())
    if v2 is None:
        return None
    base = v2 / own.get("unified", "/").lstrip("/") / namespace
    try:
        available = set(
            (v2 / own.get("unified", "/").lstrip("/") / "cgroup.controllers").read_text().split()
        )
    except OSError:
        available = set()
    have = frozenset(available & {"memory", "cpu", "pids", "cpuset"})
    missing = tuple(c for c in ("memory", "cpu", "pids") if c not in have)
    return Layout(2, {"unified": base}, have, missing)


def _write(path: Path | str, value: str | int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text()
    except OSError:
        return default


def _kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[k] = int(v)
    return out


@functools.cache
def cpusets_mounted() -> bool:
    return Path("/sys/fs/cgroup/cpuset/cpuset.cpus").exists()


def cpuset_base(layout: Layout) -> Path:
    """v1: the service's subtree in the cpuset hierarchy (beside its memory one, same name)."""
    return _own_cpuset() / layout.bases["memory"].name


@functools.cache
def _own_cpuset() -> Path:
    """Read once: every start asks (the service's own cgroup does not move under it)."""
    return Path("/sys/fs/cgroup/cpuset") / _own_paths().get("cpuset", "/").lstrip("/")


@dataclass
class Limits:
    memory_mb: int = 300
    memory_max_mb: int = 0
    cpu_shares: int = 100
    cores: int = 0
    pids_max: int = 4096
    core_ids: tuple[int, ...] = ()  # exactly these cores (the planner's choice); empty: first `cores`


@dataclass
class TaskCgroup:
    layout: Layout
    name: str
    dirs: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def at(cls, layout: Layout, name: str, cpuset: bool | None = None) -> TaskCgroup:
        """`cpuset`: True, the task is pinned to cores of its own (on v1 a hierarchy the task
        must join from the start); False, it shares the cores no task holds; None, whichever
        exists (clean-up, adoption)."""
        dirs = {c: base / name for c, base in layout.bases.items()}
        if layout.version == 1 and cpusets_mounted():
            own = cpuset_base(layout) / name
            shared = cpuset_base(layout) / cpusets.SHARED / name
            if cpuset:
                dirs["cpuset"] = own
            elif cpuset is False:
                dirs["cpuset"] = shared
            elif own.is_dir() or shared.is_dir():
                dirs["cpuset"] = own if own.is_dir() else shared
        return cls(layout, name, dirs)

    @classmethod
    def from_record(cls, layout: Layout, record: str) -> TaskCgroup:
        """Rebuild from the string stored in the database (`path;path;...`)."""
        dirs: dict[str, Path] = {}
        for part in record.split(";"):
            if not part:
                continue
            ctrl, _, path = part.partition("=")
            dirs[ctrl] = Path(path)
        name = next(iter(dirs.values())).name if dirs else ""
        return cls(layout, name, dirs)

    def record(self) -> str:
        return ";".join(f"{c}={p}" for c, p in sorted(self.dirs.items()))

    def create(self, limits: Limits) -> None:
        if not self.make():
            self.kill_leftovers()
        self.set_limits(limits)

    def make(self) -> bool:
        """The directories, without limits; True when all were made just now (a cgroup made
        just now holds no leftovers to kill)."""
        fresh = True
        made_later = self.dirs.get("cpuset") if self.layout.version == 1 else None  # _set_cores
        if made_later is not None and made_later.parent.name == cpusets.SHARED:
            cpusets.shared(cpuset_base(self.layout), self.layout.reserved_cores)
            made_later = None  # a child of the shared cpuset clones its cores at mkdir
        for path in dict.fromkeys(p for p in self.dirs.values() if p != made_later):  # cpu and cpuacct may share a mount
            try:
                path.mkdir()
            except FileExistsError:
                fresh = False
            except FileNotFoundError:
                path.mkdir(parents=True, exist_ok=True)
        if "unified" in self.dirs:
            self._enable_v2_controllers(self.dirs["unified"].parent)
        return fresh

    def rename(self, name: str, clear: bool = True) -> TaskCgroup:
        """The same cgroups under another name: no process moves, so no migration wait. An
        old cgroup of that name (an earlier run of the task) is removed first, unless the
        caller knows there is none (`clear=False`: a fresh name, or one cleared just now)."""
        if clear:
            old = TaskCgroup.at(self.layout, name)
            old.kill_leftovers()
            old.remove()
        dirs = {ctrl: path.with_name(name) for ctrl, path in self.dirs.items()}
        for ctrl, path in self.dirs.items():
            if path.exists():  # cpu and cpuacct may share a mount: renamed once
                path.rename(dirs[ctrl])
        return TaskCgroup(self.layout, name, dirs)

    def set_limits(self, limits: Limits, have: Limits | None = None) -> None:
        """Write `limits`. With `have` (what these cgroups were given before: a warm shim's,
        set ahead of its claim) only the controllers whose limits differ are written, and
        what `have` set that `limits` leaves at the kernel's default is reset."""
        mem_hard = limits.memory_max_mb if limits.memory_max_mb > 0 else limits.memory_mb
        if limits.memory_max_mb < 0:
            mem_hard = 0
        fresh = have is None
        mem = have is None or (have.memory_mb, have.memory_max_mb) != (
            limits.memory_mb, limits.memory_max_mb)  # fmt: skip
        soft_was = have is not None and have.memory_max_mb > 0
        cpu = have is None or have.cpu_shares != limits.cpu_shares
        pids = have is None or have.pids_max != limits.pids_max
        at = {c: str(p) for c, p in self.dirs.items()}  # plain strings: this runs per start
        if self.layout.version == 1:
            if mem and (m := at.get("memory")):
                with contextlib.suppress(OSError):
                    _write(f"{m}/memory.swappiness", 0)
                if mem_hard or not fresh:  # (a limit set ahead is lifted for none)
                    if self.layout.swap_accounting:  # lift it first: it may not go below the limit
                        with contextlib.suppress(OSError):
                            _write(f"{m}/memory.memsw.limit_in_bytes", -1)
                    _write(f"{m}/memory.limit_in_bytes", (mem_hard << 20) if mem_hard else -1)
                    if self.layout.swap_accounting and mem_hard:
                        with contextlib.suppress(OSError):
                            _write(f"{m}/memory.memsw.limit_in_bytes", mem_hard << 20)
                if limits.memory_max_mb > 0:
                    _write(f"{m}/memory.soft_limit_in_bytes", limits.memory_mb << 20)
                elif soft_was:
                    _write(f"{m}/memory.soft_limit_in_bytes", -1)
            if cpu and (c := at.get("cpu")):
                _write(f"{c}/cpu.shares", max(2, min(262144, limits.cpu_shares)))
            if pids and (n := at.get("pids")):
                _write(f"{n}/pids.max", limits.pids_max)
        else:
            d = at["unified"]
            ctrls = self.layout.controllers
            if mem and "memory" in ctrls:
                _write(f"{d}/memory.max", (mem_hard << 20) if mem_hard else "max")
                with contextlib.suppress(OSError):
                    _write(f"{d}/memory.swap.max", 0)
                if limits.memory_max_mb > 0:
                    _write(f"{d}/memory.low", limits.memory_mb << 20)
                elif soft_was:
                    _write(f"{d}/memory.low", 0)
            if cpu and "cpu" in ctrls:
                _write(f"{d}/cpu.weight", shares_to_weight(limits.cpu_shares))
            if pids and "pids" in ctrls:
                _write(f"{d}/pids.max", limits.pids_max)
        if limits.cores or limits.core_ids:
            self._set_cores(limits.cores, limits.core_ids)

    def _set_cores(self, cores: int, ids: tuple[int, ...] = ()) -> None:
        """Pin the task to `ids` (exclusive: the planner gave them to this task only), or, when
        nothing chose them (no admission), to the first `cores` cores the service may use."""
        if self.layout.version == 1:
            parent = cpuset_base(self.layout)
            cpusets.ensure_base(parent)
            d = parent / self.name
            d.mkdir(exist_ok=True)
            _write(d / "cpuset.mems", _read(parent / "cpuset.mems").strip())
            self.dirs["cpuset"] = d
        else:
            d = self.dirs["unified"]
        cpus = sorted(
            cpusets.parse(
                _read(d.parent / "cpuset.cpus.effective") or _read(d.parent / "cpuset.cpus")
            )
        )
        if ids:
            if missing := sorted(set(ids) - set(cpus)):
                raise OSError(errno.EINVAL, f"cores {missing} are not in the service's cpuset {cpus}")
            _write(d / "cpuset.cpus", cpusets.text(ids))
        elif len(cpus) < cores:
            raise OSError(errno.EINVAL, f"{cores} cores asked, {len(cpus)} available")
        else:
            _write(d / "cpuset.cpus", cpusets.text(cpus[:cores]))
        if self.layout.version == 1:  # the shared tasks give these cores up
            cpusets.refresh(cpuset_base(self.layout), self.layout.reserved_cores)

    def _enable_v2_controllers(self, parent: Path) -> None:
        wanted = self.layout.controllers
        if not wanted:
            return
        current = set(_read(parent / "cgroup.subtree_control").split())
        todo = " ".join(f"+{c}" for c in sorted(wanted - current))
        if todo:
            with contextlib.suppress(OSError):
                _write(parent / "cgroup.subtree_control", todo)

    def procs_files(self) -> list[str]:
        return [f"{p}/cgroup.procs" for p in dict.fromkeys(self.dirs.values())]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for p in self.dirs.values():
            found |= {int(x) for x in _read(p / "cgroup.procs").split()}
        return found

    def kill_all(self) -> None:
        """Kill every process in the task, escapees included."""
        if not self.pids():
            return
        if self.layout.version == 2:
            d = self.dirs["unified"]
            if (d / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    _write(d / "cgroup.kill", 1)
                self._wait_empty()
                return
        freezer = self.dirs.get("freezer")
        frozen = False
        if freezer is not None and freezer.exists():
            with contextlib.suppress(OSError):
                _write(freezer / "freezer.state", "FROZEN")
                for _ in range(200):
                    if _read(freezer / "freezer.state").strip() == "FROZEN":
                        break
                    time.sleep(0.001)
                frozen = True
        for _ in range(3):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if frozen and freezer is not None:
                with contextlib.suppress(OSError):
                    _write(freezer / "freezer.state", "THAWED")
            if self._wait_empty():
                return

    def _wait_empty(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def kill_leftovers(self) -> None:
        if self.pids():
            self.kill_all()

    def oom_killed(self) -> bool:
        if self.layout.version == 1:
            mem = self.dirs.get("memory")
            return bool(mem and _kv(_read(mem / "memory.oom_control")).get("oom_kill", 0))
        return _kv(_read(self.dirs["unified"] / "memory.events")).get("oom_kill", 0) > 0

    def remove(self) -> None:
        pinned = self.dirs.get("cpuset") if self.layout.version == 1 else None
        self._remove_dirs()
        if pinned is not None and pinned.parent.name != cpusets.SHARED and not pinned.exists():
            cpusets.refresh(pinned.parent, self.layout.reserved_cores)  # the cores come back

    def _remove_dirs(self) -> None:
        for p in self.dirs.values():
            for _ in range(50):
                try:
                    p.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        break
                    self.kill_all()
                    time.sleep(0.01)

    def stats(self) -> dict[str, float]:
        s: dict[str, float] = {}
        if self.layout.version == 1:
            if memdir := self.dirs.get("memory"):
                st = _kv(_read(memdir / "memory.stat"))
                s["rss"] = st.get("total_rss", st.get("rss", 0))
                s["cache"] = st.get("total_cache", st.get("cache", 0))
                s["swap"] = st.get("total_swap", st.get("swap", 0))
                s["max_usage"] = int(_read(memdir / "memory.max_usage_in_bytes", "0") or 0)
            if acct := self.dirs.get("cpuacct"):
                st = _kv(_read(acct / "cpuacct.stat"))
                tick = os.sysconf("SC_CLK_TCK")
                s["user"] = st.get("user", 0) / tick
                s["system"] = st.get("system", 0) / tick
            if cpudir := self.dirs.get("cpu"):
                st = _kv(_read(cpudir / "cpu.stat"))
                s["throttled_periods"] = st.get("nr_throttled", 0)
                s["throttled_time"] = st.get("throttled_time", 0) / 1e9
            if pids := self.dirs.get("pids"):
                s["pids"] = int(_read(pids / "pids.current", "0") or 0)
        else:
            d = self.dirs["unified"]
            mstat = _kv(_read(d / "memory.stat"))
            s["rss"], s["cache"] = mstat.get("anon", 0), mstat.get("file", 0)
            s["swap"] = int(_read(d / "memory.swap.current", "0") or 0)
            s["max_usage"] = int(_read(d / "memory.peak", "0") or 0)
            cstat = _kv(_read(d / "cpu.stat"))
            s["user"] = cstat.get("user_usec", 0) / 1e6
            s["system"] = cstat.get("system_usec", 0) / 1e6
            s["throttled_periods"] = cstat.get("nr_throttled", 0)
            s["throttled_time"] = cstat.get("throttled_usec", 0) / 1e6
            s["pids"] = len(self.pids())
        if "pids" not in s:
            s["pids"] = len(self.pids())
        return s


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares -> v2 cpu.weight, as runc and Nomad convert it."""
    shares = max(2, min(262144, shares))
    return int(1 + ((shares - 2) * 9999) // 262142)

