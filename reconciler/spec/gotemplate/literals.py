"""Go literals in templates: strconv.Unquote's escapes and number syntax."""

from __future__ import annotations

import re

from reconciler.spec.gotemplate.gofmt import quote as go_quote

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\"}  # fmt: skip


def unquote_go(body: str, quote: str) -> str:
    """The body of a Go "..." or '...' literal -> its value (strconv.Unquote's escapes)."""
    out: list[str] = []
    raw = bytearray()  # \x and octal escapes are bytes; decode them as UTF-8 together

    def flush() -> None:
        if raw:
            out.append(raw.decode("utf-8", "replace"))
            raw.clear()

    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            if c == quote:
                raise ValueError("unescaped quote")
            flush()
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("trailing backslash")
        e = body[i + 1]
        i += 2
        if e in _SIMPLE_ESCAPES:
            flush()
            out.append(_SIMPLE_ESCAPES[e])
        elif e == quote:
            flush()
            out.append(quote)
        elif e == "x":
            digits = body[i : i + 2]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise ValueError("bad \\x escape")
            raw.append(int(digits, 16))
            i += 2
        elif e in "01234567":
            digits = body[i - 1 : i + 2]
            if not re.fullmatch(r"[0-7]{3}", digits) or int(digits, 8) > 255:
                raise ValueError("bad octal escape")
            raw.append(int(digits, 8))
            i += 2
        elif e in "uU":
            size = 4 if e == "u" else 8
            digits = body[i : i + size]
            if not re.fullmatch(f"[0-9a-fA-F]{{{size}}}", digits):
                raise ValueError(f"bad \\{e} escape")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code < 0xE000:
                raise ValueError(f"bad \\{e} escape")
            flush()
            out.append(chr(code))
            i += size
        else:
            raise ValueError(f"unknown escape \\{e}")
    flush()
    return "".join(out)


_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")


def parse_number(text: str) -> int | float:
    """A Go number literal -> int, or float when written with '.', an exponent or 'p'."""
    if text.endswith("i"):
        raise ValueError(f"complex numbers are not supported: {go_quote(text)}")
    clean = text.replace("_", "")
    if _INT.fullmatch(clean):
        sign = -1 if clean.startswith("-") else 1
        digits = clean.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
            value = int(digits, 8)
        else:
            value = int(digits, 0)
        value *= sign
        if not -(2**63) <= value < 2**64:
            raise ValueError(f"integer overflow: {go_quote(text)}")
        return value
    try:
        if clean.lstrip("+-")[:2] in ("0x", "0X"):
            value_f = float.fromhex(clean)
        else:
            value_f = float(clean)
    except ValueError:
        raise ValueError(f"illegal number syntax: {go_quote(text)}") from None
    if value_f != value_f or value_f in (float("inf"), float("-inf")):
        raise ValueError(f"illegal number syntax: {go_quote(text)}")
    return value_f
