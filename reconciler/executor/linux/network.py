"""Group network namespaces for `network { mode = "bridge" }`: one netns per group instance,
a veth pair to a host bridge, addresses from the node's bridge CIDR."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")


class Networks:
    def __init__(self, bridge: str, cidr: str, tag: str) -> None:
        self.bridge = bridge[:15]
        self.net = ipaddress.ip_network(cidr)
        self.tag = tag

    def _name(self, alloc_id: str) -> str:
        return f"rc-{self.tag}-{hashlib.sha256(alloc_id.encode()).hexdigest()[:8]}"

    def _veth(self, alloc_id: str) -> str:
        return "rv" + hashlib.sha256((self.tag + alloc_id).encode()).hexdigest()[:11]

    def address(self, alloc_id: str) -> str:
        """A stable address for the group instance inside the bridge network."""
        hosts = self.net.num_addresses - 3
        n = int(hashlib.sha256((self.tag + alloc_id).encode()).hexdigest(), 16) % hosts
        return str(self.net.network_address + 2 + n)

    def ensure(self, alloc_id: str, ports: Iterable[Any]) -> Path:
        from pyroute2 import IPRoute, NetlinkError, netns

        name = self._name(alloc_id)
        path = NETNS_DIR / name
        if path.exists():
            return path
        gateway = str(self.net.network_address + 1)
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self.bridge):
                ipr.link("add", ifname=self.bridge, kind="bridge")
                idx = ipr.link_lookup(ifname=self.bridge)[0]
                with contextlib.suppress(NetlinkError):
                    ipr.addr("add", index=idx, address=gateway, prefixlen=self.net.prefixlen)
                ipr.link("set", index=idx, state="up")
            bridge = ipr.link_lookup(ifname=self.bridge)[0]
            netns.create(name)
            veth = self._veth(alloc_id)
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": name})
            host = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=host, master=bridge, state="up")
        with IPRoute(netns=name) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            eth = ns.link_lookup(ifname="eth0")[0]
            ns.addr("add", index=eth, address=self.address(alloc_id), prefixlen=self.net.prefixlen)
            ns.link("set", index=eth, state="up")
            ns.route("add", dst="0.0.0.0/0", gateway=gateway)
        return path

    def release(self, alloc_id: str) -> None:
        name = self._name(alloc_id)
        if not (NETNS_DIR / name).exists():
            return
        from pyroute2 import IPRoute, netns

        with IPRoute() as ipr:
            for idx in ipr.link_lookup(ifname=self._veth(alloc_id)):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=idx)
        with contextlib.suppress(OSError):
            netns.remove(name)

    def remove_bridge_if_unused(self) -> None:
        """Delete the bridge when neither this data dir nor anyone else still uses it."""
        from pyroute2 import IPRoute

        mine = (
            [n for n in os.listdir(NETNS_DIR) if n.startswith(f"rc-{self.tag}-")]
            if NETNS_DIR.exists()
            else []
        )
        if mine:
            return
        with IPRoute() as ipr:
            for idx in ipr.link_lookup(ifname=self.bridge):
                # Another data dir's service (or test run) may share the bridge: keep it while
                # any veth is still attached.
                if any(link.get_attr("IFLA_MASTER") == idx for link in ipr.get_links()):
                    continue
                with contextlib.suppress(Exception):
                    ipr.link("del", index=idx)
