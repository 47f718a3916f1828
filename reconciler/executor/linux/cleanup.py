"""Tear down everything one data dir's executor created: for tests and `make clean`.

Kills every process in the data dir's cgroup subtree, removes the cgroups, its network
namespaces and its bridge. Touches nothing it did not create.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

from reconciler.executor.linux import cgroups, cpusets, network, ports


def remove_cgroups(
    layout: cgroups.Layout, wanted: Callable[[str], bool] = lambda name: True
) -> int:
    """Kill what is in the layout's cgroups whose name is `wanted` and remove them, under
    every controller's base; the number of processes killed. Both a teardown (every cgroup)
    and the warm pool's sweep (its own, pool.is_pool_name) go through here."""
    killed = 0
    names: set[str] = set()
    bases = list(layout.bases.values())
    if layout.version == 1 and cgroups.cpusets_mounted():  # (a removal cut short may leave
        own = cgroups.cpuset_base(layout)  # a name only there)
        bases += [own, own / cpusets.SHARED]
    for base in bases:
        if base.is_dir():
            names |= {p.name for p in base.iterdir()
                      if p.is_dir() and p.name != cpusets.SHARED and wanted(p.name)}  # fmt: skip
    for name in sorted(names):
        cg = cgroups.TaskCgroup.at(layout, name)
        killed += len(cg.pids())
        cg.kill_all()
        cg.remove()
    return killed


def teardown(data_dir: Path, bridge: str = "reconciler0", cidr: str = "172.26.64.0/20") -> int:
    data_dir = data_dir.resolve()
    tag = hashlib.sha256(str(data_dir).encode()).hexdigest()[:8]
    namespace = f"reconciler-{tag}"
    killed = 0
    for version in (1, 2):
        layout = cgroups.detect(namespace, version)
        if layout is None:
            continue
        killed += remove_cgroups(layout)
        cpuset = (cgroups.cpuset_base(layout),) if layout.version == 1 else ()
        for base in (*layout.bases.values(), *(c / cpusets.SHARED for c in cpuset), *cpuset):
            with contextlib.suppress(OSError):
                base.rmdir()
    nets = network.Networks(bridge, cidr, tag)
    if network.NETNS_DIR.exists():
        for ns in network.NETNS_DIR.iterdir():
            if ns.name.startswith(f"rc-{tag}-"):
                with contextlib.suppress(Exception):
                    from pyroute2 import netns as pnetns

                    pnetns.remove(ns.name)
    with contextlib.suppress(Exception):
        nets.remove_bridge_if_unused()
    if ports.available():
        nets.ports.remove()
    return killed
