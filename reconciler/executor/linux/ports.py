"""Published ports of `bridge` groups: a host port answers on the host (loopback and every
local address) and reaches the group's `to` port, as Nomad's CNI portmap does, in the kernel.

One nftables table per data dir holds a map from (protocol, host port) to (group address,
port); a group instance adds its elements when its namespace is made and removes them when it
ends. Both tcp and udp are mapped, as in Nomad. Each element's comment names the namespace it
belongs to, so elements left by a service that died are found and removed at the next start.
Connections from other machines also need `net.ipv4.ip_forward = 1`, a host-wide setting
reconciler leaves to the operator.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

PROTOCOLS = ("tcp", "udp")


class PortError(Exception):
    pass


def available() -> bool:
    return shutil.which("nft") is not None


class PortMapper:
    def __init__(self, tag: str, bridge: str, cidr: str) -> None:
        self.table = f"reconciler-{tag}"
        self.bridge = bridge
        self.cidr = cidr
        self._ready = False

    def _nft(self, script: str) -> str:
        p = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                           timeout=30)  # fmt: skip
        if p.returncode != 0:
            raise PortError(p.stderr.strip() or f"nft exited {p.returncode}")
        return p.stdout

    def _ensure_table(self) -> None:
        if self._ready:
            return
        # Locally generated packets to 127.0.0.1 leave through the bridge only with
        # route_localnet; masquerade gives them the bridge's address.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet").write_text("1")
        t = self.table
        self._nft(f"""table ip {t} {{
  map ports {{
    type inet_proto . inet_service : ipv4_addr . inet_service
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local dnat ip to meta l4proto . th dport map @ports
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat ip to meta l4proto . th dport map @ports
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 ip daddr {self.cidr} masquerade
  }}
}}
""")
        self._ready = True

    def elements(self) -> list[tuple[str, int, str, int, str]]:
        """(protocol, host port, address, port, namespace) of every published port."""
        p = subprocess.run(["nft", "-j", "list", "map", "ip", self.table, "ports"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        if p.returncode != 0:
            return []
        out = []
        for item in json.loads(p.stdout).get("nftables", []):
            for elem in item.get("map", {}).get("elem", []):
                key, val = elem
                comment = ""
                if isinstance(key, dict) and "elem" in key:
                    comment = key["elem"].get("comment", "")
                    key = key["elem"]["val"]
                proto, port = key["concat"]
                addr, to = val["concat"]
                out.append((proto, int(port), addr, int(to), comment))
        return out

    def publish(self, namespace: str, address: str, ports: Iterable[tuple[int, int]]) -> None:
        """Map each (host port, group port) for tcp and udp; refuse a host port in use."""
        wanted = [(h, t or h) for h, t in ports]
        if not wanted:
            return
        self._ensure_table()
        taken = {(proto, port): ns for proto, port, _, _, ns in self.elements()}
        for host_port, _ in wanted:
            for proto in PROTOCOLS:
                owner = taken.get((proto, host_port))
                if owner and owner != namespace:
                    raise PortError(f"Static port {host_port} already reserved by {owner}")
            if (("tcp", host_port) not in taken) and _in_use(host_port):
                raise PortError(f"port {host_port} is in use on the host")
        elems = ", ".join(f'{proto} . {h} comment "{namespace}" : {address} . {t}'
                          for h, t in wanted for proto in PROTOCOLS
                          if taken.get((proto, h)) != namespace)  # fmt: skip
        if elems:
            self._nft(f"add element ip {self.table} ports {{ {elems} }}\n")

    def unpublish(self, namespace: str) -> None:
        gone = [(p, port) for p, port, _, _, ns in self.elements() if ns == namespace]
        self._delete(gone)

    def forget_stale(self, alive: Iterable[str]) -> int:
        """Remove elements of namespaces that no longer exist (a service that died)."""
        keep = set(alive)
        gone = [(p, port) for p, port, _, _, ns in self.elements() if ns not in keep]
        self._delete(gone)
        return len(gone)

    def _delete(self, keys: list[tuple[str, int]]) -> None:
        if keys:
            elems = ", ".join(f"{p} . {port}" for p, port in keys)
            self._nft(f"delete element ip {self.table} ports {{ {elems} }}\n")

    def remove(self) -> None:
        """Drop the whole table (teardown of a data dir)."""
        with contextlib.suppress(PortError, OSError, subprocess.TimeoutExpired):
            self._nft(f"delete table ip {self.table}\n")
        self._ready = False


def _in_use(port: int) -> bool:
    """Whether something on the host already listens on the tcp port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False
