"""A group instance's ports, computed once for everything that names them: the task's
`NOMAD_*PORT*` environment, the mappings a bridge namespace publishes and the addresses the
service registry and checks use. Pure.

Nomad's meaning (structs.AllocatedPortMapping, taskenv addPorts, serviceregistration
GetAddress): a port's `value` is the host port (`static`, else a dynamic one); `to` >= 1 is
the port inside the group's network (`to = -1` or unset: the same as the host port).

A node never gives one host port to two live group instances (Nomad's NetworkIndex): the
planner `choose`s an instance's host ports when it places it, given the ports every other
holding instance has, and they are recorded with its slots for the instance's life.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from reconciler.spec.models import Network

DYNAMIC_PORTS = (20000, 32000)


@dataclass(frozen=True, slots=True)
class AllocatedPort:
    label: str
    value: int  # the host port
    to: int  # the port inside the group's network; 0: the same as `value`

    @property
    def inside(self) -> int:
        return self.to or self.value


def dynamic_port(alloc: str, label: str) -> int:
    """A port from Nomad's dynamic range, stable for a group instance (`job/group/idx`) and
    label, so a restart of the task or of the service keeps it."""
    lo, hi = DYNAMIC_PORTS
    h = int(hashlib.sha256(f"{alloc}/{label}".encode()).hexdigest(), 16)
    return lo + h % (hi - lo)


Recorded = tuple[tuple[str, int], ...]  # (label, host port) as chosen for an instance


def allocated(
    network: Network, alloc: str, recorded: Recorded = ()
) -> dict[str, AllocatedPort]:
    """Every port of the group's `network` block for instance `alloc`, by label: the host port
    `recorded` for the label when the planner chose one, else `static`, else the hashed one
    (what an instance started before ports were recorded runs with)."""
    chosen = dict(recorded)
    return {
        label: AllocatedPort(
            label, chosen.get(label) or p.static or dynamic_port(alloc, label),
            p.to if p.to and p.to > 0 else 0,
        )
        for label, p in network.port.items()
    }


def choose(
    network: Network,
    alloc: str,
    held: Mapping[int, str],
    reserved: AbstractSet[int] = frozenset(),
    keep: Mapping[str, int] | None = None,
) -> tuple[Recorded, str]:
    """The host ports of group instance `alloc`, or why it cannot be placed (Nomad's words,
    AssignPorts): `held` maps each port a live instance holds to that instance; `reserved` are
    the node's `reserved_ports`. A static port held by another instance or reserved fails. A
    dynamic port is the one `keep` names (what the instance had), else the hashed one, else the
    next free one above it (wrapping in the range): deterministic, never held nor reserved."""
    keep = keep or {}
    out: dict[str, int] = {}

    def taken(port: int) -> bool:
        return port in reserved or held.get(port, alloc) != alloc or port in out.values()

    for label, p in network.port.items():
        if not p.static:
            continue
        if p.static in reserved:
            return (), f"network: reserved port collision {label}={p.static} (the node's reserved_ports)"
        owner = held.get(p.static, alloc)
        if owner != alloc:
            return (), f"network: reserved port collision {label}={p.static} (held by {owner})"
        out[label] = p.static
    lo, hi = DYNAMIC_PORTS
    for label, p in network.port.items():
        if p.static:
            continue
        first = dynamic_port(alloc, label)
        kept = keep.get(label, 0)
        if lo <= kept < hi and not taken(kept):
            out[label] = kept
            continue
        for i in range(hi - lo):
            port = lo + (first - lo + i) % (hi - lo)
            if not taken(port):
                out[label] = port
                break
        else:
            return (), "network: dynamic port selection failed"
    return tuple((label, out[label]) for label in network.port), ""


def parse_ranges(text: str) -> frozenset[int]:
    """Nomad's ParsePortRanges: "22,80,8000-8100" -> the ports. ValueError when malformed."""
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not (lo.strip().isdigit() and (not sep or hi.strip().isdigit())):
            raise ValueError(f'"{part}" is not a port or range like "8000-8100"')
        first, last = int(lo), int(hi if sep else lo)
        if last < first or not 1 <= first <= 65535 or last > 65535:
            raise ValueError(f'"{part}" is not a port or range within 1-65535')
        out.update(range(first, last + 1))
    return frozenset(out)


def env(ports: Mapping[str, AllocatedPort], ip: str) -> dict[str, str]:
    """Nomad's per-port variables (taskenv addPorts): the address is the host's, the
    `NOMAD_PORT_`/`NOMAD_ALLOC_PORT_` value is `to` when set, in any network mode."""
    out: dict[str, str] = {}
    for label, p in ports.items():
        out[f"NOMAD_PORT_{label}"] = out[f"NOMAD_ALLOC_PORT_{label}"] = str(p.inside)
        out[f"NOMAD_HOST_PORT_{label}"] = str(p.value)
        out[f"NOMAD_IP_{label}"] = out[f"NOMAD_HOST_IP_{label}"] = ip
        out[f"NOMAD_ADDR_{label}"] = out[f"NOMAD_HOST_ADDR_{label}"] = f"{ip}:{p.value}"
        out[f"NOMAD_ALLOC_IP_{label}"] = ip
        out[f"NOMAD_ALLOC_ADDR_{label}"] = f"{ip}:{p.inside}"
    return out


def in_namespace(address_mode: str, network_mode: str) -> bool:
    """Whether a service or check with `address_mode` is reached at the group namespace's
    address (and the port inside it) rather than on the host."""
    return address_mode == "alloc" or (address_mode != "host" and network_mode == "bridge")


def service_port(ports: Mapping[str, AllocatedPort], ref: str, namespace: bool) -> int:
    """The port a service or check registers: `ref` is a label of the group's network or a
    number; `namespace` as in_namespace says. An empty `ref`: 0."""
    if not ref:
        return 0
    if ref.isdigit():
        return int(ref)
    p = ports[ref]
    return p.inside if namespace else p.value
