"""The host's interface addresses, for templates' `sockaddr` (read when a template asks)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import NamedTuple


class Address(NamedTuple):
    interface: str
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    up: bool
    default_route: bool  # the IPv4 default route leaves by this interface


def _default_route_interfaces() -> set[str]:
    names: set[str] = set()
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return names
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            names.add(fields[0])
    return names


def host_addresses() -> list[Address]:
    import psutil  # only when a template asks (~2.5 MB resident)

    defaults = _default_route_interfaces()
    stats = psutil.net_if_stats()
    out: list[Address] = []
    for name, addrs in psutil.net_if_addrs().items():
        up = bool(stats[name].isup) if name in stats else False
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.netmask:
                continue
            try:
                ip = ipaddress.ip_interface(f"{a.address.split('%')[0]}/{a.netmask}")
            except ValueError:
                continue
            out.append(Address(name, ip, up, name in defaults))
    return out
