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

from reconciler.executor.linux import ports

NETNS_DIR = Path("/run/netns")


class Networks:
    def __init__(self, bridge: str, cidr: str, tag: str) -> None:
        self.bridge = bridge[:15]
        self.net = ipaddress.ip_network(cidr)
        self.tag = tag
        self.ports = ports.PortMapper(tag, self.bridge, str(self.net))

    def forget_stale_ports(self) -> int:
        """Published ports of group instances whose namespace is gone (the service died)."""
        if not ports.available():
            return 0
        alive = os.listdir(NETNS_DIR) if NETNS_DIR.exists() else []
        return self.ports.forget_stale(alive)

    def _name(self, alloc_id: str) -> str:
        return f"rc-{self.tag}-{hashlib.sha256(alloc_id.encode()).hexdigest()[:8]}"

    def _veth(self, alloc_id: str) -> str:
        return "rv" + hashlib.sha256((self.tag + alloc_id).encode()).hexdigest()[:11]

    def address(self, alloc_id: str) -> str:
        """A stable address for the group instance inside the bridge network."""
        hosts = self.net.num_addresses - 3
        n = int(hashlib.sha256((self.tag + alloc_id).encode()).hexdigest(), 16) % hosts
        return str(self.net.network_address + 2 + n)

    def ensure(self, alloc_id: str, mapped: Iterable[Any]) -> Path:
        """The group instance's namespace, made (and its ports published) on first use."""
        name = self._name(alloc_id)
        path = NETNS_DIR / name
        if path.exists():
            return path
        published = [(p.host_port, p.task_port) for p in mapped]
        if published:
            if not ports.available():
                raise ports.PortError("publishing ports needs nftables (the nft command)")
            self._make_bridge()
            self.ports.publish(name, self.address(alloc_id), published)
        try:
            return self._make_netns(alloc_id, name, path)
        except BaseException:
            # Half-made: a namespace without its link would be taken as ready next time.
            self._remove_netns(alloc_id, name)
            if published:
                self.ports.unpublish(name)
            raise

    def _make_bridge(self) -> None:
        from pyroute2 import IPRoute, NetlinkError

        gateway = str(self.net.network_address + 1)
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self.bridge):
                ipr.link("add", ifname=self.bridge, kind="bridge")
                idx = ipr.link_lookup(ifname=self.bridge)[0]
                with contextlib.suppress(NetlinkError):
                    ipr.addr("add", index=idx, address=gateway, prefixlen=self.net.prefixlen)
                ipr.link("set", index=idx, state="up")

    def _make_netns(self, alloc_id: str, name: str, path: Path) -> Path:
        from pyroute2 import IPRoute, netns

        gateway = str(self.net.network_address + 1)
        self._make_bridge()
        with IPRoute() as ipr:
            bridge = ipr.link_lookup(ifname=self.bridge)[0]
            veth = self._veth(alloc_id)
            for stale in ipr.link_lookup(ifname=veth):  # left by a namespace removed by hand
                ipr.link("del", index=stale)
            netns.create(name)
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
        if ports.available():
            self.ports.unpublish(name)
        self._remove_netns(alloc_id, name)

    def _remove_netns(self, alloc_id: str, name: str) -> None:
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
