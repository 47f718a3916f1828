"""A group instance's ports, computed once for everything that names them: the task's
`NOMAD_*PORT*` environment, the mappings a bridge namespace publishes and the addresses the
service registry and checks use. Pure.

Nomad's meaning (structs.AllocatedPortMapping, taskenv addPorts, serviceregistration
GetAddress): a port's `value` is the host port (`static`, else a dynamic one); `to` >= 1 is
the port inside the group's network (`to = -1` or unset: the same as the host port).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
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


def allocated(network: Network, alloc: str) -> dict[str, AllocatedPort]:
    """Every port of the group's `network` block for instance `alloc`, by label."""
    return {
        label: AllocatedPort(
            label, p.static or dynamic_port(alloc, label), p.to if p.to and p.to > 0 else 0
        )
        for label, p in network.port.items()
    }


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
