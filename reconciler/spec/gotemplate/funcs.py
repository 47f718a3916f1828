"""The function model: Go parameter kinds, the values functions exchange, truthiness."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.spec.gotemplate.gofmt import MISSING, GoValue


class FuncError(Exception):
    """A template function failed: becomes `error calling NAME: ...`."""


@dataclass(frozen=True)
class Func:
    """params/variadic name the Go parameter kinds: "value" (anything, even a missing value),
    "any" (interface{}: missing becomes nil), "string", "int", "list", "strings", "map"."""

    impl: Callable[..., Any]
    params: tuple[str, ...]
    variadic: str | None = None


def truth(v: Any) -> bool:
    if v is None or v is MISSING:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | list | tuple | Mapping):
        return len(v) > 0
    return True


class Loop(GoValue):
    """What consul-template's `loop` returns: a channel of ints, ranged over once."""

    go_type = "<-chan int64"

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def go_string(self) -> str:
        return "0xc000010000"


GO_KIND = {"value": "reflect.Value", "any": "interface {}", "string": "string", "int": "int",
            "list": "[]interface {}", "strings": "[]string", "map": "map[string]interface {}",
            "bool": "bool"}  # fmt: skip


def fits(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list | tuple)
    if kind == "strings":
        return isinstance(value, list | tuple) and all(isinstance(x, str) for x in value)
    if kind == "map":
        return isinstance(value, Mapping)
    return True


def _short_circuit(*args: Any) -> Any:
    """Placeholder: and/or are evaluated lazily by the executor."""
    return args[-1]


AND_OR = Func(_short_circuit, ("value",), "value")
