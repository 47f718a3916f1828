"""consul-template's parsing and encoding functions: parseInt/Float/Bool/JSON/YAML, toJSON,
toYAML, base64 (Go's strconv, encoding/json and yaml behaviour)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from reconciler.spec.gotemplate import gojson
from reconciler.spec.gotemplate.funcs import FuncError
from reconciler.spec.gotemplate.gofmt import MISSING, quote, type_name


def _parse_int(s: str) -> int:
    if s == "":
        return 0
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise FuncError(f'parseInt: strconv.ParseInt: parsing "{s}": invalid syntax')
    v = int(s)
    if not -(2**63) <= v < 2**63:
        raise FuncError(f'parseInt: strconv.ParseInt: parsing "{s}": value out of range')
    return v


def _parse_uint(s: str) -> int:
    if s == "":
        return 0
    if not re.fullmatch(r"[0-9]+", s):
        raise FuncError(f'parseUint: strconv.ParseUint: parsing "{s}": invalid syntax')
    v = int(s)
    if v >= 2**64:
        raise FuncError(f'parseUint: strconv.ParseUint: parsing "{s}": value out of range')
    return v


_FLOAT = re.compile(r"[+-]?(inf|infinity|nan|(\d+\.?\d*|\.\d+)(e[+-]?\d+)?)", re.I)


def _parse_float(s: str) -> float:
    if s == "":
        return 0.0
    if not _FLOAT.fullmatch(s.replace("_", "")) or "_" in s:
        raise FuncError(f'parseFloat: strconv.ParseFloat: parsing "{s}": invalid syntax')
    v = float(s)
    if math.isinf(v) and "inf" not in s.lower():
        raise FuncError(f'parseFloat: strconv.ParseFloat: parsing "{s}": value out of range')
    return v


_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}  # fmt: skip


def _parse_bool(s: str) -> bool:
    if s == "":
        return False
    if s not in _BOOLS:
        raise FuncError(f'parseBool: strconv.ParseBool: parsing "{s}": invalid syntax')
    return _BOOLS[s]


def _to_json(v: Any, indent: str = "", escape_html: bool = True) -> str:
    try:
        return gojson.dumps(v, indent, escape_html)
    except gojson.JSONError as e:
        raise FuncError(str(e)) from None


def _parse_json(s: str) -> Any:
    if s == "":
        return {}
    try:
        return json.loads(s, parse_int=float, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise FuncError(str(e)) from None


def _no_constant(name: str) -> Any:
    raise FuncError(f"invalid character {quote(name[0])} looking for beginning of value")


def _yaml_value(v: Any) -> Any:
    if v is MISSING:
        return None
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)  # Go's YAML writes whole floats as integers
    if isinstance(v, Mapping):
        return {str(k): _yaml_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_yaml_value(x) for x in v]
    if v is None or isinstance(v, str | int | float | bool):
        return v
    raise FuncError(f"toYAML: cannot marshal type {type_name(v)}")


def _to_yaml(v: Any) -> str:
    import yaml  # PyYAML is loaded by the first template that uses it

    value = _yaml_value(v)
    return str(yaml.safe_dump(value, default_flow_style=False, sort_keys=True,
                              allow_unicode=True)).strip()  # fmt: skip


def _parse_yaml(s: str) -> Any:
    import yaml

    if s == "":
        return {}
    try:
        return _plain(yaml.safe_load(s))
    except yaml.YAMLError as e:
        raise FuncError(str(e).replace("\n", " ")) from None


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _b64decode(name: str, s: str, urlsafe: bool) -> str:
    try:
        raw = (base64.urlsafe_b64decode if urlsafe else base64.b64decode)(
            s.encode("utf-8", "surrogatepass"), **({} if urlsafe else {"validate": True})
        )
    except (binascii.Error, ValueError) as e:
        raise FuncError(f"{name}: illegal base64 data: {e}") from None
    return raw.decode("utf-8", "replace")


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")
