"""HCL values as plain Python data, HCL type constraints, and cty's conversion rules.

A value is None (null), bool, int or float (number), str, list (list, tuple or set) or dict
(map or object). Maps and objects iterate in key order, as cty's do.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from reconciler.spec import hclsyntax as syn

Value = Any
# ("string",) ("number",) ("bool",) ("any",) ("list", T) ("set", T) ("map", T)
# ("object", {name: T}) ("tuple", (T, ...))
Type = tuple[Any, ...]

STRING: Type = ("string",)
NUMBER: Type = ("number",)
BOOL: Type = ("bool",)
ANY: Type = ("any",)


class ConvertError(Exception):
    pass


def type_name(v: Value) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "object"


def describe(t: Type) -> str:
    kind = t[0]
    if kind in ("list", "set", "map"):
        return f"{kind}({describe(t[1])})"
    if kind == "object":
        inner = ", ".join(f"{k} = {describe(v)}" for k, v in t[1].items())
        return f"object({{{inner}}})"
    if kind == "tuple":
        return "tuple([" + ", ".join(describe(x) for x in t[1]) + "])"
    return str(kind)


def type_of(node: syn.Node) -> Type:
    """A type constraint written in HCL (`list(object({name = string}))`) -> Type."""
    if isinstance(node, syn.Traversal) and not node.steps:
        if node.root in ("string", "number", "bool", "any"):
            return (node.root,)
        raise syn.HclSyntaxError(
            f'"{node.root}" is not a type (string, number, bool, any)', node.pos
        )
    if isinstance(node, syn.Call) and len(node.args) == 1 and not node.expand:
        arg = node.args[0]
        if node.name in ("list", "set", "map"):
            return (node.name, type_of(arg))
        if node.name == "object" and isinstance(arg, syn.ObjectCons):
            attrs: dict[str, Type] = {}
            for k, v in arg.items:
                if not (isinstance(k, syn.Lit) and isinstance(k.value, str)):
                    raise syn.HclSyntaxError("object type attribute names are plain words", k.pos)
                attrs[k.value] = type_of(v)
            return ("object", attrs)
        if node.name == "tuple" and isinstance(arg, syn.TupleCons):
            return ("tuple", tuple(type_of(x) for x in arg.items))
    raise syn.HclSyntaxError(
        "a type is string, number, bool, any, list(T), set(T), map(T), object({...}) or tuple([...])",
        node.pos,
    )


def number_text(n: int | float) -> str:
    """A number as cty writes it in a string: no exponent, no trailing `.0`."""
    if isinstance(n, int):
        return str(n)
    if math.isnan(n) or math.isinf(n):
        raise ConvertError("a number that is not finite cannot be a string")
    if n.is_integer():
        return str(int(n))
    text = format(Decimal(repr(n)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_number(s: str) -> int | float:
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise ConvertError(f'a number is required, not "{s[:40]}"') from None
    if not d.is_finite() or s.strip() != s or s.lower().startswith(("+", "0x")):
        raise ConvertError(f'a number is required, not "{s[:40]}"')
    if d == d.to_integral_value() and abs(d) < 10**30:
        return int(d)
    return float(d)


def normal_number(n: int | float) -> int | float:
    if isinstance(n, float) and n.is_integer() and abs(n) < 2**63:
        return int(n)
    return n


def to_string(v: Value) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return number_text(v)
    if v is None:
        raise ConvertError("a null value cannot be a string")
    raise ConvertError(f"a string is required, not a {type_name(v)}")


def to_number(v: Value) -> int | float:
    if isinstance(v, bool):
        raise ConvertError("a number is required, not a bool")
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        return parse_number(v)
    raise ConvertError(f"a number is required, not {type_name(v)}")


def to_bool(v: Value) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v in ("true", "false"):
        return v == "true"
    raise ConvertError(f"a bool is required, not {type_name(v)}")


def convert(v: Value, t: Type) -> Value:
    """`v` as type `t`, by cty's rules; raises ConvertError."""
    kind = t[0]
    if v is None or kind == "any":
        return v
    if kind == "string":
        return to_string(v)
    if kind == "number":
        return to_number(v)
    if kind == "bool":
        return to_bool(v)
    if kind in ("list", "set"):
        if not isinstance(v, list):
            raise ConvertError(f"a {kind} is required, not {type_name(v)}")
        items = [convert(x, t[1]) for x in v]
        return unique_sorted(items) if kind == "set" else items
    if kind == "map":
        if not isinstance(v, dict):
            raise ConvertError(f"a map is required, not {type_name(v)}")
        return {k: convert(x, t[1]) for k, x in v.items()}
    if kind == "object":
        if not isinstance(v, dict):
            raise ConvertError(f"an object is required, not {type_name(v)}")
        missing = [k for k in t[1] if k not in v]
        if missing:
            raise ConvertError(f'attribute "{missing[0]}" is required')
        return {k: convert(v[k], at) for k, at in t[1].items()}
    if kind == "tuple":
        if not isinstance(v, list) or len(v) != len(t[1]):
            raise ConvertError(f"a tuple of {len(t[1])} elements is required")
        return [convert(x, et) for x, et in zip(v, t[1], strict=True)]
    raise ConvertError(f"unknown type {kind}")


def key(v: Value) -> str:
    """A canonical text for comparing and de-duplicating values."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


def unique_sorted(items: list[Value]) -> list[Value]:
    """A set's elements as cty orders them: numbers ascending, strings lexically."""
    seen: dict[str, Value] = {}
    for x in items:
        seen.setdefault(key(x), x)
    vals = list(seen.values())
    if all(isinstance(x, int | float) and not isinstance(x, bool) for x in vals):
        return sorted(vals)
    if all(isinstance(x, str) for x in vals):
        return sorted(vals)
    return vals


def equal(a: Value, b: Value) -> bool:
    """HCL `==`: values of different types are never equal (1 != "1", true != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return bool(a == b)


def sorted_items(d: dict[str, Value]) -> list[tuple[str, Value]]:
    return sorted(d.items())
