"""Resource admission, Nomad's way: does a group instance fit in what the node has left?

The node's total (fingerprinted cores × MHz, memory, core count, or the node config's
`cpu_total_compute`/`memory_total_mb`) minus the node config's `client { reserved }` is what
tasks may reserve. Every task slot that holds its place (running, stopping, or pending a
restart) reserves its task's `resources` until it is done. A task's `cores` are concrete core
ids, the lowest free ones, never one of the node's reserved cores nor one another holding slot
has (Nomad's scheduler, feasible/rank.go); a slot keeps its ids across restarts. A group
instance's host ports are chosen when it is placed, never one another holding instance has nor
one of the node's `reserved_ports` (spec/ports.py choose), and kept across restarts. A group
instance that does not fit stays blocked with Nomad's words, "Resources exhausted: <dimension>",
its network first, then dimensions in Nomad's order (cpu, cores, memory; structs/funcs.go
AllocsFit). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from reconciler.db.snapshot import SlotKey, SlotRecord
from reconciler.executor.base import NodeConfig
from reconciler.spec import memo
from reconciler.spec import ports as port_spec
from reconciler.spec.models import Group, Job, Network, Task

HOLDING = frozenset({"running", "stopping", "pending"})
DIMENSIONS = ("cpu", "cores", "memory")
UNITS = {"cpu": "MHz", "cores": "cores", "memory": "MB"}


@dataclass(frozen=True)
class Usage:
    cpu: int = 0  # MHz
    memory: int = 0  # MB
    cores: int = 0  # whole cores, exclusive

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpu + other.cpu, self.memory + other.memory, self.cores + other.cores)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu - other.cpu, self.memory - other.memory, self.cores - other.cores)

    def __mul__(self, n: int) -> Usage:
        return Usage(self.cpu * n, self.memory * n, self.cores * n)

    def get(self, dimension: str) -> int:
        value: int = getattr(self, dimension)
        return value

    def exceeds(self, limit: Usage) -> str:
        """The first dimension in Nomad's order where self is over `limit`, or "". A cores
        request names cores first: their MHz come out of the cpu pool too."""
        order = ("cores", "cpu", "memory") if self.cores > 0 else DIMENSIONS
        return next((d for d in order if self.get(d) > limit.get(d)), "")


ZERO = Usage()


def total(items: Iterable[Usage]) -> Usage:
    out = ZERO
    for u in items:
        out = out + u
    return out


def of_task(task: Task) -> Usage:
    """A task reserves `cores` whole cores (each worth the node's per-core MHz, which admission
    counts in the cores dimension) or `cpu` MHz, never both (Nomad: cores excludes cpu)."""
    res = task.resources
    return Usage(0 if res.cores else res.cpu, res.memory + res.secrets_mb, res.cores)


def of_group(group: Group) -> Usage:
    """One group instance: the sum of its tasks (Nomad reserves every task of the alloc)."""
    return total(of_task(t) for t in group.task.values())


@memo.per_job(limit=100_000)
def of_job(job: Job) -> Usage:
    """Memoised per (frozen) job object, as task digests are: a pass over 1,000 unchanged
    jobs sums nothing."""
    return total(of_group(g) * g.count for g in job.group.values())


def of_slot(slot: SlotRecord) -> Usage:
    """What a recorded slot holds: what its task reserved when it was started."""
    if slot.state not in HOLDING:
        return ZERO
    return Usage(slot.cpu, slot.memory, slot.cores)


@dataclass(frozen=True)
class Capacity:
    """What tasks may reserve on this node, and the node's totals for `reconciler node`."""

    total: Usage
    reserved: Usage
    mhz_per_core: int
    usable_cores: tuple[int, ...] = ()  # core ids tasks may reserve: all but the node's own

    @property
    def available(self) -> Usage:
        """Reserved cores leave the MHz pool too: nothing else may run on them."""
        left = self.total - self.reserved
        return Usage(left.cpu - self.reserved.cores * self.mhz_per_core, left.memory, left.cores)


def capacity(
    attributes: Mapping[str, str], reserved: Usage = ZERO, reserved_ids: tuple[int, ...] = ()
) -> Capacity | None:
    """From the fingerprint's attributes (which carry the node config's overrides); None, so
    no admission, when it reports no totals (the fake executor). Without `reserved_ids`, the
    node keeps its highest `reserved.cores` cores."""
    try:
        cores = int(attributes.get("attr.cpu.numcores", "0"))
        mhz = int(attributes.get("attr.cpu.totalcompute", "0"))
        memory = int(attributes.get("attr.memory.totalbytes", "0")) // (1 << 20)
    except ValueError:
        return None
    if not (cores and mhz and memory):
        return None
    ids = reserved_ids or tuple(range(cores))[cores - reserved.cores:]
    usable = tuple(c for c in range(cores) if c not in ids)
    return Capacity(Usage(mhz, memory, cores), reserved, mhz // cores, usable)


def node_capacity(attributes: Mapping[str, str], node: NodeConfig) -> Capacity | None:
    reserved = Usage(node.reserved_cpu, node.reserved_memory_mb, len(node.reserved_cores))
    return capacity(attributes, reserved, node.reserved_cores)


@dataclass
class Room:
    """What is left during one plan: starts claim from it in the order the planner meets them.

    `free` begins as available minus every holding slot of every job (not only the planned
    ones: the store sums them globally), so a scoped plan sees the whole node."""

    capacity: Capacity | None
    free: Usage = ZERO
    claimed_allocs: set[str] = field(default_factory=set)
    free_cores: list[int] = field(default_factory=list)  # ids, ascending
    cores_of: dict[SlotKey, tuple[int, ...]] = field(default_factory=dict)  # chosen this plan
    # host port -> the group instance (job/group/idx) holding it, with those chosen this plan
    held_ports: dict[int, str] = field(default_factory=dict)
    reserved_ports: AbstractSet[int] = frozenset()  # the node's `reserved_ports`
    ports_of: dict[str, port_spec.Recorded] = field(default_factory=dict)  # by alloc, this plan

    @classmethod
    def of(cls, capacity: Capacity | None, held: Usage, held_cores: AbstractSet[int] = frozenset(),
           held_ports: Mapping[int, str] | None = None,
           reserved_ports: AbstractSet[int] = frozenset()) -> Room:  # fmt: skip
        ports = dict(held_ports or {})
        if capacity is None:
            return cls(None, held_ports=ports, reserved_ports=reserved_ports)
        # reserved cores are exclusive: their share of MHz is no longer in the cpu pool
        free = capacity.available - held
        free = Usage(free.cpu - held.cores * capacity.mhz_per_core, free.memory, free.cores)
        return cls(capacity, free, free_cores=[c for c in capacity.usable_cores if c not in held_cores],
                   held_ports=ports, reserved_ports=reserved_ports)  # fmt: skip

    def pick_ports(self, alloc: str, network: Network, keep: port_spec.Recorded = ()) -> str:
        """Choose group instance `alloc`'s host ports once per plan (its tasks share them):
        those it holds (`keep`) where still free, else as spec/ports.py choose says; "" or
        why not (nothing taken)."""
        if not network.port or alloc in self.ports_of:
            return ""
        chosen, why = port_spec.choose(network, alloc, self.held_ports, self.reserved_ports,
                                       dict(keep))  # fmt: skip
        if why:
            return f"Resources exhausted: {why}"
        for _label, port in chosen:
            self.held_ports[port] = alloc
        self.ports_of[alloc] = chosen
        return ""

    def release_ports(self, alloc: str) -> None:
        """Give back what pick_ports chose for `alloc` in this plan (it was not placed)."""
        for _label, port in self.ports_of.pop(alloc, ()):
            if self.held_ports.get(port) == alloc:
                del self.held_ports[port]

    def ports_collide(self, alloc: str, network: Network, keep: port_spec.Recorded) -> str:
        """Why a new version's network could not be given to running instance `alloc`, or ""
        (nothing taken)."""
        if not network.port:
            return ""
        why = port_spec.choose(network, alloc, self.held_ports, self.reserved_ports, dict(keep))[1]
        return f"Resources exhausted: {why}" if why else ""

    def _cost(self, u: Usage) -> Usage:
        assert self.capacity is not None
        return Usage(u.cpu + u.cores * self.capacity.mhz_per_core, u.memory, u.cores)

    def never_fits(self, need: Usage) -> str:
        """Why `need` exceeds the whole node even with nothing else running, or ""."""
        if self.capacity is None:
            return ""
        cost, cap = self._cost(need), self.capacity.available
        dim = cost.exceeds(cap)
        if not dim:
            return ""
        unit = UNITS[dim]
        return (f"Resources exhausted: {dim} (the job needs {cost.get(dim)} {unit} in all; "
                f"the node has {max(0, cap.get(dim))} {unit})")  # fmt: skip

    def check(self, need: Usage) -> str:
        """Why `need` does not fit in what is free now (Nomad's words), or ""."""
        if self.capacity is None:
            return ""
        cost = self._cost(need)
        dim = cost.exceeds(self.free)
        return exhausted(dim, cost, self.free) if dim else ""

    def claim(self, need: Usage) -> str:
        """Take `need` from what is free, or say why not (and take nothing)."""
        why = self.check(need)
        if not why and self.capacity is not None:
            cost = self._cost(need)
            self.free = Usage(self.free.cpu - cost.cpu, self.free.memory - cost.memory,
                              self.free.cores - cost.cores)  # fmt: skip
        return why


    def pick_cores(self, key: SlotKey, n: int, keep: tuple[int, ...] = ()) -> str:
        """Choose `n` core ids for `key`: those it holds already first (a restart keeps its
        cores), then the lowest free ones. Ids it holds beyond `n` go back to the pool. Call
        after a successful claim; "" or why not (nothing taken)."""
        if self.capacity is None or (n <= 0 and not keep):
            return ""
        usable = set(self.capacity.usable_cores)
        kept = tuple(c for c in keep if c in usable)[:n]
        more = n - len(kept)
        if more > len(self.free_cores):
            return f"Resources exhausted: cores (needs {n} cores, {len(self.free_cores)} cores free)"
        taken = self.free_cores[:more]
        del self.free_cores[:more]
        self.free_cores = sorted({*self.free_cores, *(c for c in keep if c in usable and c not in kept)})
        if n > 0:
            self.cores_of[key] = tuple(sorted((*kept, *taken)))
        return ""


def core_list(ids: Iterable[int]) -> str:
    """Core ids in the cpuset list notation Nomad's NOMAD_CPU_CORES uses: "0,5-7"."""
    parts: list[str] = []
    for c in sorted(set(ids)):
        if parts and (last := parts[-1].rpartition("-")[2]) and int(last) == c - 1:
            parts[-1] = f"{parts[-1].partition('-')[0]}-{c}"
        else:
            parts.append(str(c))
    return ",".join(parts)


def allocated_rows(cap: Capacity, held: Usage) -> list[tuple[str, int, int, int, int, str]]:
    """(dimension, allocated, available, total, reserved, unit) for `reconciler node`."""
    avail = cap.available
    return [(d, held.get(d), avail.get(d), cap.total.get(d), cap.reserved.get(d), UNITS[d])
            for d in DIMENSIONS]  # fmt: skip


def exhausted(dimension: str, need: Usage, free: Usage) -> str:
    """Nomad's words, then the figures that explain them."""
    unit = UNITS[dimension]
    return (
        f"Resources exhausted: {dimension} (needs {need.get(dimension)} {unit}, "
        f"{max(0, free.get(dimension))} {unit} free)"
    )
