"""Go's fmt for the values templates handle: %v printing, Sprint/Sprintln and Sprintf with
flags, width and precision (verbs b c d e E f F g G o O q s t T U v x X %)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any


class Missing:
    """Go's invalid reflect.Value: what a missing map key or an unset dot evaluates to."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"


MISSING = Missing()


class GoValue:
    """A value with Go methods or fields (a Nomad variable, the scratch pad...)."""

    go_type = "struct"

    def go_string(self) -> str:
        return f"{{{self.go_type}}}"

    def go_field(self, name: str) -> Any:
        raise KeyError(name)

    def go_method(self, name: str) -> Any:
        return None

    def go_json_fields(self) -> list[tuple[str, Any]] | None:
        """A struct's exported fields for encoding/json, in order; None: not encodable."""
        return None


def type_name(v: Any) -> str:
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, list | tuple):
        return "[]interface {}"
    if isinstance(v, GoValue):
        return v.go_type
    return type(v).__name__


def format_float(f: float, verb: str = "g", prec: int = -1) -> str:
    """strconv.FormatFloat(f, verb, prec, 64) for verbs e, E, f, F, g, G."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    lower = verb.lower()
    if lower == "f":
        return f"{f:.{6 if prec < 0 else prec}f}" if prec >= 0 else _shortest_f(f)
    if lower == "e":
        s = f"{f:.{prec}e}" if prec >= 0 else _shortest_e(f)
        return s.upper() if verb == "E" else s
    # g: %e when exp < -4 || exp >= eprec
    if prec < 0:  # shortest digits; Go decides %e against precision 6
        _, exp = _shortest_digits(f)
        s = _shortest_e(f) if exp < -4 or exp >= 6 else _shortest_f(f)
        return s.upper() if verb == "G" else s
    p = max(prec, 1)
    s = f"{f:.{p}g}"
    s = _go_exponent(s)
    return s.upper() if verb == "G" else s


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits and the decimal exponent of the first digit."""
    if f == 0:
        return "0", 0
    _, digits, exp = Decimal(repr(abs(f))).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exp, int)
    return ds, exp + len(digits) - 1


def _shortest_e(f: float) -> str:
    digits, exp = _shortest_digits(f)
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if math.copysign(1, f) < 0 else ""
    return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _shortest_f(f: float) -> str:
    digits, exp = _shortest_digits(f)
    sign = "-" if math.copysign(1, f) < 0 else ""
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


def _go_exponent(s: str) -> str:
    return re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", s)


def sprint_value(v: Any, top: bool = False) -> str:
    """fmt's %v of a value; `top` prints a missing value the way templates do."""
    if v is MISSING:
        return "<no value>" if top else "<nil>"
    if v is None:
        return "<no value>" if top else "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{sprint_value(k)}:{sprint_value(v[k])}" for k in
                                 sorted_keys(v)) + "]"  # fmt: skip
    if isinstance(v, list | tuple):
        return "[" + " ".join(sprint_value(x) for x in v) + "]"
    if isinstance(v, GoValue):
        return v.go_string()
    return str(v)


def sorted_keys(m: Mapping[Any, Any]) -> list[Any]:
    """Go sorts map keys of one kind: numbers numerically, strings bytewise."""
    keys = list(m)
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


def sprint(args: Sequence[Any]) -> str:
    out: list[str] = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(sprint_value(a))
    return "".join(out)


def sprintln(args: Sequence[Any]) -> str:
    return " ".join(sprint_value(a) for a in args) + "\n"


def quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c in ('"', "\\"):
            out.append("\\" + c)
        elif c in _QUOTE_ESC:
            out.append(_QUOTE_ESC[c])
        elif c.isprintable() and not 0xD800 <= o < 0xE000:
            out.append(c)
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_QUOTE_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
              "\v": "\\v"}  # fmt: skip

_SPEC = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?(.)?", re.S)


class _Spec:
    __slots__ = ("minus", "plus", "prec", "sharp", "space", "verb", "width", "zero")

    def __init__(self, flags: str, width: int | None, prec: int | None, verb: str) -> None:
        self.minus = "-" in flags
        self.plus = "+" in flags
        self.sharp = "#" in flags
        self.space = " " in flags
        self.zero = "0" in flags and not self.minus
        self.width = width
        self.prec = prec
        self.verb = verb

    def pad(self, s: str, numeric: bool = False) -> str:
        if self.width is None or len(s) >= self.width:
            return s
        fill = self.width - len(s)
        if self.minus:
            return s + " " * fill
        if self.zero:
            if numeric and s[:1] in "+- ":
                return s[0] + "0" * fill + s[1:]
            return "0" * fill + s
        return " " * fill + s


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    out: list[str] = []
    argi = 0
    pos = 0
    while pos < len(fmt):
        i = fmt.find("%", pos)
        if i < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:i])
        m = _SPEC.match(fmt, i)
        assert m is not None
        flags, width_s, prec_s, verb = m.groups()
        pos = m.end()
        if verb is None:
            out.append("%!(NOVERB)")
            break
        width: int | None = None
        prec: int | None = None
        if width_s == "*":
            if (
                argi < len(args)
                and isinstance(args[argi], int)
                and not isinstance(args[argi], bool)
            ):
                width = args[argi]
                if width < 0:
                    flags += "-"
                    width = -width
                argi += 1
            else:
                out.append("%!(BADWIDTH)")
                argi += 1
        elif width_s:
            width = int(width_s)
        if prec_s == "*":
            if argi < len(args) and isinstance(args[argi], int) and args[argi] >= 0:
                prec = args[argi]
            else:
                out.append("%!(BADPREC)")
            argi += 1
        elif prec_s is not None:
            prec = int(prec_s or 0)
        width = min(width, 1_000_000) if width is not None else None
        prec = min(prec, 1_000) if prec is not None else None
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(format_one(arg, _Spec(flags, width, prec, verb)))
    if argi < len(args):
        extra = ", ".join(f"{type_name(a)}={sprint_value(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _bad(arg: Any, verb: str) -> str:
    if arg is None or arg is MISSING:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(arg)}={sprint_value(arg)})"


def format_one(arg: Any, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "T":
        return spec.pad(type_name(arg))
    if arg is None or arg is MISSING:
        return spec.pad("<nil>") if verb == "v" else _bad(arg, verb)
    if isinstance(arg, bool):
        if verb in "tv":
            return spec.pad("true" if arg else "false")
        return _bad(arg, verb)
    if isinstance(arg, int):
        return _format_int(arg, spec)
    if isinstance(arg, float):
        return _format_float(arg, spec)
    if isinstance(arg, str):
        return _format_str(arg, spec)
    if isinstance(arg, Mapping):
        inner = " ".join(f"{format_one(k, spec)}:{format_one(arg[k], spec)}" for k in
                         sorted_keys(arg))  # fmt: skip
        return "map[" + inner + "]"
    if isinstance(arg, list | tuple):
        return "[" + " ".join(format_one(x, spec) for x in arg) + "]"
    if isinstance(arg, GoValue):
        return _format_str(arg.go_string(), spec) if verb in "sqv" else _bad(arg, verb)
    return _bad(arg, verb)


def _format_int(v: int, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "c":
        return spec.pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd")
    if verb == "q":
        c = chr(v) if 0 <= v <= 0x10FFFF else "\ufffd"
        return spec.pad("'" + quote(c)[1:-1].replace('\\"', '"').replace("'", "\\'") + "'")
    if verb == "U":
        s = f"U+{v:04X}" if v >= 0 else f"U+{v & 0xFFFFFFFFFFFFFFFF:04X}"
        if spec.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
            s += f" '{chr(v)}'"
        return spec.pad(s)
    bases = {"d": 10, "v": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}
    if verb not in bases:
        return _bad(v, verb)
    a = abs(v)
    digits = format(a, {10: "d", 2: "b", 8: "o", 16: "x"}[bases[verb]])
    if verb == "X":
        digits = digits.upper()
    if spec.prec is not None:
        digits = digits.rjust(spec.prec, "0") if not (spec.prec == 0 and a == 0) else ""
    prefix = ""
    if verb == "O" or (spec.sharp and verb == "o" and not digits.startswith("0")):
        prefix = "0o" if verb == "O" else "0"
    elif spec.sharp and verb in "xX":
        prefix = "0x" if verb == "x" else "0X"
    elif spec.sharp and verb == "b":
        prefix = "0b"
    sign = "-" if v < 0 else "+" if spec.plus else " " if spec.space else ""
    body = prefix + digits
    if spec.zero and spec.prec is None and spec.width is not None:
        body = body.rjust(spec.width - len(sign), "0")
        return sign + body
    return spec.pad(sign + body)


def _format_float(v: float, spec: _Spec) -> str:
    verb = spec.verb
    if verb not in "eEfFgGv":
        return _bad(v, verb)
    g = "g" if verb == "v" else verb
    prec = -1 if spec.prec is None else spec.prec
    if g in "eEfF" and prec < 0:
        prec = 6
    s = format_float(v, g if g != "F" else "f", prec)
    if not s.startswith("-") and (spec.plus or spec.space):
        s = ("+" if spec.plus else " ") + s
    if s.endswith("Inf") or s.endswith("NaN"):
        if s == "NaN" and (spec.plus or spec.space):
            s = ("+" if spec.plus else " ") + s
        zero, spec.zero = spec.zero, False
        out = spec.pad(s)
        spec.zero = zero
        return out
    return spec.pad(s, numeric=True)


def _format_str(v: str, spec: _Spec) -> str:
    verb = spec.verb
    if spec.prec is not None and verb in "sqv":
        v = v[: spec.prec]
    if verb in "sv":
        return spec.pad(v)
    if verb == "q":
        if spec.sharp and "`" not in v and all(c.isprintable() or c == "\t" for c in v):
            return spec.pad("`" + v + "`")
        return spec.pad(quote(v))
    if verb in "xX":
        data = v.encode("utf-8", "replace")
        if spec.prec is not None:
            data = data[: spec.prec]
        sep = " " if spec.space else ""
        parts = [format(b, "02x" if verb == "x" else "02X") for b in data]
        if spec.sharp:
            pre = "0x" if verb == "x" else "0X"
            parts = (
                [pre + p for p in parts] if spec.space else [pre + "".join(parts)] if parts else []
            )
            return spec.pad(sep.join(parts))
        return spec.pad(sep.join(parts))
    return _bad(v, verb)
