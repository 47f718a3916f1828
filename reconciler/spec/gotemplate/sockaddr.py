"""The part of go-sockaddr's template language that job files use: GetPrivateIP(s),
GetPublicIP(s), GetInterfaceIP(s) "name-regexp" (go-sockaddr ifaddrs.go semantics)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from reconciler.spec.gotemplate.funcs import FuncError
from reconciler.spec.gotemplate.gofmt import quote

Net = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class Iface:
    name: str
    address: Net
    up: bool = True
    default_route: bool = False  # the interface the default route leaves by


_CALL = re.compile(r'\s*(\w+)\s*(?:"((?:[^"\\]|\\.)*)")?\s*')
SUPPORTED = ("GetPrivateIP", "GetPrivateIPs", "GetPublicIP", "GetPublicIPs", "GetInterfaceIP",
             "GetInterfaceIPs")  # fmt: skip
_WITH_ARG = ("GetInterfaceIP", "GetInterfaceIPs")

# RFC 6890 special-purpose blocks (go-sockaddr rfc.go) and the non-forwardable ones
_RFC6890 = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.0.0/29", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
    "::1/128", "::/128", "64:ff9b::/96", "::ffff:0:0/96", "100::/64", "2001::/23", "2001::/32",
    "2001:2::/48", "2001:db8::/32", "2001:10::/28", "2002::/16", "fc00::/7", "fe80::/10")]  # fmt: skip
_NOT_FORWARDABLE = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "192.0.0.0/24", "192.0.2.0/24",
    "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32", "::1/128",
    "::/128", "::ffff:0:0/96", "100::/64", "2001::/23", "2001:db8::/32", "2001:10::/28",
    "fe80::/10", "224.0.0.0/4", "ff00::/8")]  # fmt: skip


def _in(addr: Net, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(addr.ip.version == n.version and addr.ip in n for n in nets)


def _sorted(ifaces: list[Iface]) -> list[Iface]:
    """go-sockaddr's "+type,+size": IPv4 first, then larger networks first."""
    return sorted(ifaces, key=lambda i: (i.address.version, i.address.network.prefixlen))


def check(expr: str) -> str | None:
    """Why a sockaddr expression is outside the supported part, or None."""
    m = _CALL.fullmatch(expr)
    if not m or m.group(1) not in SUPPORTED:
        return (f"sockaddr {quote(expr)} is not supported; reconciler evaluates "
                + ", ".join(SUPPORTED))  # fmt: skip
    if (m.group(2) is not None) != (m.group(1) in _WITH_ARG):
        return f"sockaddr {quote(expr)}: {m.group(1)} takes " + (
            "one quoted interface name" if m.group(1) in _WITH_ARG else "no argument"
        )
    return None


def evaluate(expr: str, ifaces: list[Iface]) -> str:
    if why := check(expr):
        raise FuncError(why)
    m = _CALL.fullmatch(expr)
    assert m is not None
    fn, arg = m.group(1), m.group(2)
    if fn in _WITH_ARG:
        try:
            name = re.compile(arg or "")
        except re.error as e:
            raise FuncError(f"sockaddr: bad interface name regexp {quote(arg)}: {e}") from None
        found = _sorted([i for i in ifaces if name.search(i.name)])
        if fn == "GetInterfaceIP":
            found = [i for i in found if not _in(i.address, _NOT_FORWARDABLE)]
            return str(found[0].address.ip) if found else ""
        return " ".join(str(i.address.ip) for i in found)
    usable = _sorted([i for i in ifaces if i.default_route and i.up
                      and not _in(i.address, _NOT_FORWARDABLE)])  # fmt: skip
    private = fn.startswith("GetPrivate")
    found = [i for i in usable if _in(i.address, _RFC6890) == private]
    if fn.endswith("IPs"):
        return " ".join(str(i.address.ip) for i in found)
    return str(found[0].address.ip) if found else ""
