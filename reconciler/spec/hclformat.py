"""format() and formatlist(): Go's fmt verbs as cty's FormatFunc accepts them.

%v %#v %t %b %d %o %x %X %e %E %f %g %G %s %q %%, flags `+ - # space 0`, width,
precision, and explicit argument indexes (`%[2]s`).
"""

from __future__ import annotations

import json
import re

from reconciler.spec import hcltypes as ht
from reconciler.spec.hclexpr import FunctionError
from reconciler.spec.hcltypes import Value

_VERB = re.compile(r"%([-+# 0]*)(?:\[(\d+)\])?(\d+|\*)?(?:\.(\d+))?(?:\[(\d+)\])?([a-zA-Z%])?")


def jsonish(v: Value) -> str:
    """A value as cty's %#v / jsonencode writes it (Go json: compact, HTML-safe)."""
    text = json.dumps(_plain_numbers(v), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain_numbers(v: Value) -> Value:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [_plain_numbers(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain_numbers(x) for k, x in v.items()}
    return v


def format_values(fmt: str, args: list[Value]) -> str:
    out: list[str] = []
    next_arg = 0
    used = 0
    i = 0
    while True:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        m = _VERB.match(fmt, j)
        assert m is not None
        flags, idx1, width, prec, idx2, verb = m.groups()
        if verb is None:
            raise FunctionError(f"unfinished format verb at offset {j}")
        i = m.end()
        if verb == "%":
            out.append("%")
            continue
        idx = idx1 or idx2
        if idx is not None:
            next_arg = int(idx) - 1
        if width == "*":
            raise FunctionError("a * width is not supported")
        if int(width or 0) > 1000 or int(prec or 0) > 1000:
            raise FunctionError("width and precision are at most 1000")
        if not 0 <= next_arg < len(args):
            raise FunctionError(f"not enough arguments for %{verb} at offset {j}")
        out.append(
            _one(
                verb,
                flags,
                int(width) if width else None,
                int(prec) if prec else None,
                args[next_arg],
            )
        )
        next_arg += 1
        used = max(used, next_arg)
    if used < len(args):
        raise FunctionError(f"too many arguments; {len(args) - used} not used by the format")
    return "".join(out)


def _pad(text: str, flags: str, width: int | None, zero_ok: bool) -> str:
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and zero_ok:
        sign = text[0] if text[:1] in "+- " and text[:1] else ""
        return sign + text[len(sign) :].rjust(width - len(sign), "0")
    return text.rjust(width)


def _sign(text: str, flags: str, negative: bool) -> str:
    if negative:
        return text
    if "+" in flags:
        return "+" + text
    if " " in flags:
        return " " + text
    return text


def _one(verb: str, flags: str, width: int | None, prec: int | None, v: Value) -> str:
    if verb == "v":
        if "#" in flags:
            return _pad(jsonish(v), flags, width, False)
        if v is None:
            return _pad("null", flags, width, False)
        text = ht.to_string(v) if not isinstance(v, list | dict) else jsonish(v)
        return _pad(text, flags, width, False)
    if v is None:
        raise FunctionError(f"a null value cannot be formatted with %{verb}")
    if verb == "t":
        return _pad("true" if ht.to_bool(v) else "false", flags, width, False)
    if verb in "s":
        text = ht.to_string(v)
        return _pad(text[:prec] if prec is not None else text, flags, width, False)
    if verb == "q":
        return _pad(json.dumps(ht.to_string(v), ensure_ascii=False), flags, width, False)
    n = ht.to_number(v)
    if verb in "bdoxX":
        if n != int(n):
            raise FunctionError(f"%{verb} needs a whole number, not {ht.number_text(n)}")
        k = int(n)
        base = {"b": "b", "d": "d", "o": "o", "x": "x", "X": "X"}[verb]
        text = format(abs(k), base)
        if "#" in flags and verb in "oxX":
            text = {"o": "0", "x": "0x", "X": "0X"}[verb] + text
        if prec is not None:
            text = text.rjust(prec, "0")
        return _pad(_sign(("-" if k < 0 else "") + text, flags, k < 0), flags, width, prec is None)
    if verb in "eEfFgG":
        x = float(n)
        if verb in "gG" and prec is None:
            text = ht.number_text(n) if verb == "g" and abs(x) < 1e21 else format(x, verb)
        else:
            text = format(x, f".{6 if prec is None else prec}{verb}")
        return _pad(_sign(text, flags, x < 0), flags, width, True)
    raise FunctionError(f"unsupported format verb %{verb}")
