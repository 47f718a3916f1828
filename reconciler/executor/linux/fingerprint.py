"""The fingerprint: can this host isolate tasks (and if not, why), and its node attributes
for constraints (`attr.*`, `node.*`, `driver.*`, `meta.*`)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

from reconciler.executor.base import Fingerprint, NodeConfig
from reconciler.executor.linux import cgroups, launch, shimbuild


def probe(layout: cgroups.Layout | None, node: NodeConfig, data_dir: Path) -> Fingerprint:
    """What isolation this host supports, why not where it does not, and its attributes."""
    problems: list[str] = []
    if platform.system() != "Linux":
        problems.append("not Linux")
    if os.geteuid() != 0:
        problems.append("not running as root: namespaces, cgroups and users need root")
    if layout is None:
        problems.append("no cgroup filesystem mounted")
    elif "memory" not in layout.controllers:
        problems.append(f"{layout.describe()}: memory limits cannot be enforced")
    for ns in ("mnt", "pid", "ipc", "uts", "net"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            problems.append(f"kernel lacks {ns} namespaces")
    if (launch.compiler() is None and shimbuild.packaged() is None
            and not (data_dir / "bin" / shimbuild.name()).exists()):  # fmt: skip
        problems.append("no C compiler to build reconciler-shim (install gcc)")
    healthy = not problems or problems == [p for p in problems if "memory limits" in p]
    attrs = _attributes(layout, node, healthy)
    text = (
        "; ".join(problems)
        if problems
        else "isolation available: " + (layout.describe() if layout else "")
    )
    return Fingerprint(healthy=healthy, description=text, attributes=attrs)


def _attributes(layout: cgroups.Layout | None, node: NodeConfig, exec_ok: bool) -> dict[str, str]:
    uname = os.uname()
    osr: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            osr[k] = v.strip('"')
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine)
    mem = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    cores = os.cpu_count() or 1
    mhz = _core_mhz()
    attrs = {
        "attr.kernel.name": uname.sysname.lower(),
        "attr.kernel.version": uname.release.split("-")[0],
        "attr.kernel.arch": uname.machine,
        "attr.os.name": osr.get("ID", ""),
        "attr.os.version": osr.get("VERSION_ID", ""),
        "attr.cpu.arch": arch,
        "attr.cpu.numcores": str(cores),
        "attr.cpu.frequency": str(mhz),
        # Nomad: the sum of every core's MHz, unless the client config says otherwise
        "attr.cpu.totalcompute": str(node.cpu_total_compute or mhz * cores),
        "attr.cpu.reservablecores": str(cores - len(node.reserved_cores)),
        "attr.memory.totalbytes": str(node.memory_total_mb << 20 if node.memory_total_mb else mem),
        "attr.unique.hostname": uname.nodename,
        "attr.os.cgroups.version": str(layout.version) if layout else "",
        "node.unique.name": uname.nodename,
        "node.datacenter": "dc1",
        "node.class": "",
        "node.pool": "default",
        "driver.exec": "true" if exec_ok else "false",
    }
    if node.allow_raw_exec:
        attrs["driver.raw_exec"] = "true"
    for k, v in node.meta.items():
        attrs[f"meta.{k}"] = v
    return attrs


def _core_mhz(sys_cpu: Path = Path("/sys/devices/system/cpu"),
              cpuinfo: Path = Path("/proc/cpuinfo")) -> int:  # fmt: skip
    """A core's MHz as psutil.cpu_freq() gives it (the mean of cpufreq's scaling_max_freq,
    else the mean current MHz of /proc/cpuinfo or cpufreq); 1000 when nothing says. Read
    here: psutil would stay in the service's memory (~2.5 MB) for this one number."""
    dirs = sorted(sys_cpu.glob("cpufreq/policy[0-9]*")) or sorted(
        sys_cpu.glob("cpu[0-9]*/cpufreq")
    )  # fmt: skip

    def khz(d: Path, *names: str) -> float | None:
        for name in names:
            with contextlib.suppress(OSError, ValueError):
                return float((d / name).read_text())
        return None

    maxima = [m for d in dirs if (m := khz(d, "scaling_max_freq"))]
    if maxima:
        return int(sum(maxima) / len(maxima) / 1000)
    current: list[float] = []
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                with contextlib.suppress(ValueError):
                    current.append(float(line.split(":", 1)[1]))
    if not current:
        current = [c / 1000 for d in dirs if (c := khz(d, "scaling_cur_freq", "cpuinfo_cur_freq"))]
    return int(sum(current) / len(current)) if current and sum(current) else 1000
