"""encoding/json's Marshal and MarshalIndent output for template values (sorted keys, HTML
characters escaped, Go's float spelling)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from reconciler.spec.gotemplate.gofmt import MISSING, GoValue, format_float, type_name


class JSONError(Exception):
    pass


def _float(f: float) -> str:
    if not math.isfinite(f):
        raise JSONError(f"json: unsupported value: {format_float(f)}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = format_float(f, "e", -1)
        if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return s
    return format_float(f, "f", -1)


def _string(s: str, escape_html: bool) -> str:
    out = ['"']
    for c in s:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\b":
            out.append("\\b")
        elif c == "\f":
            out.append("\\f")
        elif o < 0x20 or (escape_html and c in "<>&") or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o < 0xE000:
            out.append("\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def dumps(v: Any, indent: str = "", escape_html: bool = True) -> str:
    return _enc(v, indent, 0, escape_html)


def _enc(v: Any, indent: str, level: int, html: bool) -> str:
    if level > 500:
        raise JSONError("json: value nests too deeply")
    if v is None or v is MISSING:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return _string(v, html)
    if isinstance(v, Mapping):
        items = [(str(k), v[k]) for k in v]
        items.sort(key=lambda kv: kv[0].encode("utf-8", "surrogatepass"))
        parts = [
            _string(k, html) + (": " if indent else ":") + _enc(x, indent, level + 1, html)
            for k, x in items
        ]
        return _wrap("{", "}", parts, indent, level)
    if isinstance(v, list | tuple):
        return _wrap("[", "]", [_enc(x, indent, level + 1, html) for x in v], indent, level)
    if isinstance(v, GoValue):
        fields = v.go_json_fields()
        if fields is None:
            raise JSONError(f"json: unsupported type: {v.go_type}")
        parts = [  # a Go struct: its fields in declaration order
            _string(k, html) + (": " if indent else ":") + _enc(x, indent, level + 1, html)
            for k, x in fields
        ]
        return _wrap("{", "}", parts, indent, level)
    raise JSONError(f"json: unsupported type: {type_name(v)}")


def _wrap(left: str, right: str, parts: list[str], indent: str, level: int) -> str:
    if not parts:
        return left + right
    if not indent:
        return left + ",".join(parts) + right
    inner = "\n" + indent * (level + 1)
    return left + inner + ("," + inner).join(parts) + "\n" + indent * level + right
