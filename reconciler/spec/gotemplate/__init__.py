"""Go text/template with consul-template's functions, as Nomad renders `template` blocks.

`check` parses a template and names what reconciler cannot render (functions that need a
cluster, unsupported sockaddr expressions) with its line and column; `render` executes it."""

from __future__ import annotations

import functools
from typing import Any

from reconciler.spec.gotemplate import consul, nomadservices
from reconciler.spec.gotemplate.builtins import BUILTINS
from reconciler.spec.gotemplate.consul import Host
from reconciler.spec.gotemplate.errors import TemplateError
from reconciler.spec.gotemplate.exec import execute
from reconciler.spec.gotemplate.funcs import Func
from reconciler.spec.gotemplate.gofmt import MISSING, quote
from reconciler.spec.gotemplate.nodes import String
from reconciler.spec.gotemplate.nomadservices import Registration, ServiceSource
from reconciler.spec.gotemplate.nomadvars import VariableSource, Workload
from reconciler.spec.gotemplate.nomadvars import check_path as check_variable_path
from reconciler.spec.gotemplate.parser import Parsed, parse
from reconciler.spec.gotemplate.sockaddr import Iface
from reconciler.spec.gotemplate.sockaddr import check as check_sockaddr

__all__ = [
    "MISSING",
    "Host",
    "Iface",
    "Registration",
    "ServiceSource",
    "TemplateError",
    "VariableSource",
    "Workload",
    "check",
    "functions",
    "render",
    "services_read",
]

_NAMES = frozenset(BUILTINS) | frozenset(consul.functions(Host()))


def functions(host: Host) -> dict[str, Func]:
    return {**BUILTINS, **consul.functions(host)}


def _known(name: str) -> str | None:
    if name in _NAMES:
        return None
    return consul.refused(name) or f"function {quote(name)} not defined"


@functools.lru_cache(maxsize=512)
def _parse(text: str, left: str, right: str) -> Parsed:
    """Parsed once per distinct text: every replica renders the same template (trees are
    never changed by execution)."""
    try:
        return parse(text, _known, left, right)
    except RecursionError:
        raise TemplateError("template nests too deeply") from None


def check(text: str, left: str = "{{", right: str = "}}", workload: Workload | None = None) -> None:
    """Raises TemplateError for what would fail on every render (with a workload: a variable
    path its identity may not read)."""
    parsed = _parse(text, left, right)
    for name, cmd in parsed.functions:
        args = cmd.args[1:]
        if (
            name == "nomadVar"
            and workload
            and len(args) == 1
            and isinstance(args[0], String)
            and (why := check_variable_path(args[0].value, workload))
        ):
            raise TemplateError.at(text, cmd.pos, why)
        if name in ("nomadService", "nomadServices"):
            _, why = nomadservices.dependency(name, cmd)
            if why:
                raise TemplateError.at(text, cmd.pos, why)
        if name == "sockaddr" and args and all(isinstance(a, String) for a in args):
            why = check_sockaddr(" ".join(a.value for a in args if isinstance(a, String)))
            if why:
                raise TemplateError.at(text, cmd.pos, why)


@functools.lru_cache(maxsize=512)
def services_read(text: str, left: str = "{{", right: str = "}}") -> frozenset[str]:
    """The service names a template reads (nomadservices.ANY: any name; nomadservices.LISTING:
    the names and tags of all); empty when it reads none or does not parse."""
    if "nomadService" not in text:
        return frozenset()
    try:
        parsed = _parse(text, left, right)
    except TemplateError:
        return frozenset()
    return frozenset(
        nomadservices.dependency(name, cmd)[0]
        for name, cmd in parsed.functions
        if name in ("nomadService", "nomadServices")
    )


def render(
    text: str, host: Host | None = None, data: Any = MISSING, left: str = "{{",
    right: str = "}}", missing_key_error: bool = False,
) -> str:  # fmt: skip
    """The rendered text; raises TemplateError (with line and column where known)."""
    parsed = _parse(text, left, right)
    out = execute(parsed, functions(host or Host()), data, missing_key_error)
    return out.encode("utf-8", "replace").decode("utf-8")
