"""nomadService and nomadServices (consul-template dependency/nomad_service.go,
nomad_services.go, template/nomad_funcs.go) over a local service registry.

Like Nomad's `/v1/service/NAME`, every registration of the name is listed, whatever its
checks say (Nomad filters nothing by health); the `N "key" "name"` form picks N of them by
the rendezvous hashing of Nomad's server (ServiceRegistration.choose and HashWith), and a
`tag.` prefix then keeps those carrying the tag, as consul-template does after the fetch."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from reconciler.spec.gotemplate import nodes as n
from reconciler.spec.gotemplate.funcs import Func, FuncError
from reconciler.spec.gotemplate.gofmt import GoValue, quote, sprint_value

REGION = "global"
NAMESPACE = "default"
ANY = "*"  # a dependency on every service name (the name is not a literal)
LISTING = "@list"  # a dependency on the names and tags of all services (nomadServices)

_WORD = r"A-Za-z0-9_"
# consul-template's tagRe + serviceNameRe + regionRe (dependency.go), Go's [[:word:]] in ASCII
_QUERY = re.compile(
    rf"\A(?:(?P<tag>[{_WORD}=:.\-]+)\.)?(?P<name>[{_WORD}\-]+)(?:@(?P<region>[{_WORD}.\-]+))?\Z"
)
_LISTING = re.compile(rf"\A(?:@(?P<region>[{_WORD}.\-]+))?\Z")


class Registration(NamedTuple):
    """One registered instance, as Nomad's ServiceRegistration holds it (tags in the order
    of the service block)."""

    id: str
    name: str
    node: str
    address: str
    port: int
    datacenter: str
    tags: tuple[str, ...]
    job_id: str
    alloc_id: str
    namespace: str = NAMESPACE


class ServiceSource(Protocol):
    def registrations(self) -> Sequence[Registration]: ...


class Query(NamedTuple):
    name: str
    tag: str


def parse_query(arg: str) -> Query:
    """`[tag.]name[@region]`; raises FuncError with consul-template's words."""
    m = _QUERY.match(arg)
    if m is None:
        raise FuncError(f"nomad.service: invalid format: {quote(arg)}")
    _region(m["region"], f"nomadService {quote(arg)}")
    return Query(m["name"], m["tag"] or "")


def _region(region: str | None, what: str) -> None:
    if region and region != REGION:
        raise FuncError(f'{what}: reconciler has only the "{REGION}" region')


class _Struct(GoValue):
    """A Go struct pointer with exported fields, in declaration order."""

    fields: dict[str, Any]

    def go_field(self, name: str) -> Any:
        return self.fields[name]

    def go_string(self) -> str:
        return "&{" + " ".join(sprint_value(v) for v in self.fields.values()) + "}"

    def go_json_fields(self) -> list[tuple[str, Any]]:
        return list(self.fields.items())


class NomadService(_Struct):
    """consul-template's *NomadService: fields ID, Name, Node, Address, Port, Datacenter,
    Tags (sorted), JobID, AllocID."""

    go_type = "*dependency.NomadService"

    def __init__(self, r: Registration) -> None:
        self.fields: dict[str, Any] = {
            "ID": r.id, "Name": r.name, "Node": r.node, "Address": r.address, "Port": r.port,
            "Datacenter": r.datacenter, "Tags": sorted(r.tags), "JobID": r.job_id,
            "AllocID": r.alloc_id,
        }  # fmt: skip


class NomadServicesSnippet(_Struct):
    """consul-template's *NomadServicesSnippet: Name and Tags (the union over instances)."""

    go_type = "*dependency.NomadServicesSnippet"

    def __init__(self, name: str, tags: list[str]) -> None:
        self.fields: dict[str, Any] = {"Name": name, "Tags": tags}


def hash_with(r: Registration, key: str) -> str:
    """Nomad's ServiceRegistration.HashWith."""
    h = hashlib.sha256((r.port % 2**64).to_bytes(8, "big"))
    for part in (r.alloc_id, r.id, r.namespace, r.address, r.name, *r.tags, key):
        h.update(part.encode())
    return h.hexdigest()


def choose(found: list[Registration], count: int, key: str) -> list[Registration]:
    """Nomad's ServiceRegistration.choose: the `count` instances ranking first by HashWith."""
    if key == "" or count < 0:
        raise FuncError("failed to choose services: malformed choose parameter")
    ranked = sorted(found, key=lambda r: hash_with(r, key))  # stable, as sort.SliceStable
    return ranked[: min(count, len(ranked))]


def lookup(source: ServiceSource | None, query: Query, pick: tuple[int, str] | None) -> list[Any]:
    if source is None:
        raise FuncError("the service registry is not available here")
    # Nomad's state store lists a name's registrations by ID
    found = sorted((r for r in source.registrations() if r.name == query.name),
                   key=lambda r: r.id)  # fmt: skip
    if pick is not None:
        found = choose(found, *pick)
    if query.tag:
        found = [r for r in found if query.tag in r.tags]
    return [NomadService(r) for r in found]


def listing(source: ServiceSource | None) -> list[NomadServicesSnippet]:
    if source is None:
        raise FuncError("the service registry is not available here")
    return listing_of(source.registrations())


def functions(source: ServiceSource | None) -> dict[str, Func]:
    def service(*params: Any) -> list[Any]:
        if len(params) == 1:
            if not isinstance(params[0], str):
                raise FuncError("expected string for <service> argument")
            return lookup(source, parse_query(params[0]), None)
        if len(params) == 3:
            count, key, name = params
            if not isinstance(count, int) or isinstance(count, bool):
                raise FuncError("expected integer for <count> argument")
            if not isinstance(key, str):
                raise FuncError("expected string for <key> argument")
            if not isinstance(name, str):
                raise FuncError("expected string for <service> argument")
            return lookup(source, parse_query(name), (count, key))
        raise FuncError("expected arguments <service> or <count> <key> <service>")

    def services(*parts: str) -> list[NomadServicesSnippet]:
        arg = "".join(parts)
        m = _LISTING.match(arg)
        if m is None:
            raise FuncError(f"nomad.services: invalid format: {quote(arg)}")
        _region(m["region"], f"nomadServices {quote(arg)}")
        return listing(source)

    return {
        "nomadService": Func(service, (), "any"),
        "nomadServices": Func(services, (), "string"),
    }


def dependency(name: str, cmd: n.Command) -> tuple[str, str | None]:
    """What one call site reads: a service name, ANY or LISTING; and why it can never
    render (a literal argument in the wrong form), or None."""
    args = cmd.args[1:]
    if name == "nomadServices":
        if all(isinstance(a, n.String) for a in args):
            arg = "".join(a.value for a in args if isinstance(a, n.String))
            if (m := _LISTING.match(arg)) is None:
                return LISTING, f"error calling nomadServices: nomad.services: invalid format: " \
                                f"{quote(arg)}"  # fmt: skip
            if m["region"] not in (None, REGION):
                return LISTING, f'error calling nomadServices: reconciler has only the "{REGION}" ' \
                                "region"  # fmt: skip
        return LISTING, None
    if len(args) not in (0, 1, 3):  # none: the argument is piped in
        return ANY, "error calling nomadService: expected arguments <service> or <count> <key> " \
                    "<service>"  # fmt: skip
    literal = args[-1] if args else None
    if not isinstance(literal, n.String):
        return ANY, None
    try:
        return parse_query(literal.value).name, None
    except FuncError as e:
        return ANY, f"error calling nomadService: {e}"


def fingerprints(registrations: Sequence[Registration]) -> dict[str, str]:
    """Per service name, a digest of everything a template can see of its registrations;
    under LISTING, of the names and tags nomadServices shows. Equal digests: nothing to
    render again."""
    by_name: dict[str, list[Registration]] = {}
    for r in registrations:
        by_name.setdefault(r.name, []).append(r)
    out = {name: _digest(sorted(map(repr, regs))) for name, regs in by_name.items()}
    out[LISTING] = _digest([repr(s.fields) for s in listing_of(registrations)])
    return out


def listing_of(registrations: Sequence[Registration]) -> list[NomadServicesSnippet]:
    tags: dict[str, set[str]] = {}
    for r in registrations:
        tags.setdefault(r.name, set()).update(r.tags)
    return [NomadServicesSnippet(name, sorted(tags[name])) for name in sorted(tags)]


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
