"""The string, numeric, collection and type functions of Nomad's jobspec (cty's stdlib).

Arguments are converted as cty converts them (upper(5) is "5"); a failure raises
FunctionError or ConvertError, which the evaluator turns into a located error.
"""

from __future__ import annotations

import math
import re
from typing import Any

from reconciler.spec import hcltypes as ht
from reconciler.spec.hclexpr import MAX_ITEMS, FunctionError
from reconciler.spec.hclformat import format_values
from reconciler.spec.hcltypes import Value

S, N = ht.to_string, ht.to_number


def _int(v: Value, what: str = "argument") -> int:
    n = N(v)
    if n != int(n):
        raise FunctionError(f"{what} must be a whole number")
    return int(n)


def _list(v: Value, what: str = "argument") -> list[Value]:
    if not isinstance(v, list):
        raise FunctionError(f"{what} must be a list, not {ht.type_name(v)}")
    return v


def _map(v: Value, what: str = "argument") -> dict[str, Value]:
    if not isinstance(v, dict):
        raise FunctionError(f"{what} must be a map or object, not {ht.type_name(v)}")
    return v


# -- numeric ---------------------------------------------------------------------------------
def _log(x: Value, base: Value) -> Value:
    return ht.normal_number(math.log(N(x), N(base)))


def _max(*xs: Value) -> Value:
    if not xs:
        raise FunctionError("needs at least one number")
    return max(N(x) for x in xs)


def _min(*xs: Value) -> Value:
    if not xs:
        raise FunctionError("needs at least one number")
    return min(N(x) for x in xs)


def _parseint(s: Value, base: Value) -> Value:
    b = _int(base, "base")
    if not 2 <= b <= 62:
        raise FunctionError("base must be between 2 and 62")
    text = S(s)
    digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if b <= 36:
        digits = digits[:36]
        body = text.lower()
    else:
        body = text
    sign, body = (-1, body[1:]) if body.startswith("-") else (1, body.removeprefix("+"))
    if not body or len(body) > 200 or any(c not in digits[:b] for c in body):
        raise FunctionError(f'cannot parse "{text[:40]}" as a base {b} integer')
    n = 0
    for c in body:
        n = n * b + digits.index(c)
    return sign * n


def _pow(x: Value, y: Value) -> Value:
    a, b = N(x), N(y)
    if abs(b) > 4096:
        raise FunctionError("exponent is too large")
    return ht.normal_number(
        a**b if isinstance(a, int) and isinstance(b, int) and b >= 0 else float(a) ** float(b)
    )


def _signum(x: Value) -> Value:
    n = N(x)
    return (n > 0) - (n < 0)


# -- strings ---------------------------------------------------------------------------------
def _chomp(s: Value) -> str:
    return re.sub(r"(\r\n|\n|\r)+$", "", S(s))


def _formatlist(fmt: Value, *args: Value) -> list[str]:
    lengths = {len(a) for a in args if isinstance(a, list)}
    if len(lengths) > 1:
        raise FunctionError("all list arguments must have the same length")
    n = lengths.pop() if lengths else 1
    return [
        format_values(S(fmt), [a[i] if isinstance(a, list) else a for a in args]) for i in range(n)
    ]


def _indent(n: Value, s: Value) -> str:
    spaces = _int(n, "spaces")
    if not 0 <= spaces <= 1000:
        raise FunctionError("spaces must be between 0 and 1000")
    pad = " " * spaces
    return S(s).replace("\n", "\n" + pad)


def _join(sep: Value, *lists: Value) -> str:
    if not lists:
        raise FunctionError("needs at least one list")
    items = [x for lst in lists for x in _list(lst)]
    if any(x is None for x in items):
        raise FunctionError("a list element is null")
    return S(sep).join(S(x) for x in items)


def _regex_replace(s: Value, pattern: Value, repl: Value) -> str:
    try:
        rx = re.compile(S(pattern))
    except re.error as e:
        raise FunctionError(f"invalid regular expression: {e}") from None
    # Go's ${1} / $1 / $name become Python's \g<1>
    py = re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: rf"\g<{m.group(1) or m.group(2)}>",
        S(repl).replace("\\", "\\\\"),
    )
    try:
        return rx.sub(py, S(s))
    except (re.error, IndexError) as e:
        raise FunctionError(f"replacement: {e}") from None


def _replace(s: Value, old: Value, new: Value) -> str:
    return S(s).replace(S(old), S(new))


def _split(sep: Value, s: Value) -> list[str]:
    text, by = S(s), S(sep)
    if by == "":
        return list(text)
    return text.split(by)


def _substr(s: Value, offset: Value, length: Value) -> str:
    text, off, n = S(s), _int(offset, "offset"), _int(length, "length")
    if off < 0:
        off = len(text) + off
    if off < 0 or off > len(text):
        raise FunctionError("offset is out of range")
    return text[off:] if n < 0 else text[off : off + n]


def _title(s: Value) -> str:
    return re.sub(r"(?<![\w'])\w", lambda m: m.group(0).upper(), S(s))


def _trim(s: Value, cut: Value) -> str:
    return S(s).strip(S(cut))


# -- collections -----------------------------------------------------------------------------
def _chunklist(lst: Value, size: Value) -> list[Value]:
    items, n = _list(lst), _int(size, "size")
    if n < 0:
        raise FunctionError("size must not be negative")
    if n == 0:
        return [items]
    return [items[i : i + n] for i in range(0, len(items), n)]


def _coalesce(*xs: Value) -> Value:
    """cty's: the first non-null argument ("" counts), as a string when any argument is one."""
    for x in xs:
        if x is not None:
            if any(isinstance(y, str) for y in xs) and isinstance(x, bool | int | float):
                return S(x)
            return x
    raise FunctionError("no non-null arguments")


def _coalescelist(*xs: Value) -> Value:
    for x in xs:
        if _list(x):
            return x
    return []


def _compact(lst: Value) -> list[str]:
    return [S(x) for x in _list(lst) if x is not None and S(x) != ""]


def _concat(*lists: Value) -> list[Value]:
    return [x for lst in lists for x in _list(lst)]


def _contains(lst: Value, v: Value) -> bool:
    return any(ht.equal(x, v) for x in _list(lst))


def _distinct(lst: Value) -> list[Value]:
    seen: dict[str, Value] = {}
    for x in _list(lst):
        seen.setdefault(ht.key(x), x)
    return list(seen.values())


def _element(lst: Value, i: Value) -> Value:
    items, n = _list(lst), _int(i, "index")
    if not items:
        raise FunctionError("cannot use element() with an empty list")
    if n < 0:
        raise FunctionError("index must not be negative")
    return items[n % len(items)]


def _flatten(lst: Value) -> list[Value]:
    out: list[Value] = []

    def walk(x: Value, depth: int) -> None:
        if depth > 64:
            raise FunctionError("lists nested too deeply")
        for y in x:
            walk(y, depth + 1) if isinstance(y, list) else out.append(y)

    walk(_list(lst), 0)
    return out


def _index(lst: Value, v: Value) -> int:
    for i, x in enumerate(_list(lst)):
        if ht.equal(x, v):
            return i
    raise FunctionError("the value is not in the list")


def _keys(m: Value) -> list[str]:
    return sorted(_map(m))


def _length(v: Value) -> int:
    if isinstance(v, list | dict | str):
        return len(v)
    raise FunctionError(f"length() needs a string, list or map, not {ht.type_name(v)}")


def _lookup(m: Value, k: Value, *default: Value) -> Value:
    d, key = _map(m), S(k)
    if key in d:
        return d[key]
    if len(default) > 1:
        raise FunctionError("takes at most three arguments")
    if default:
        return default[0]
    raise FunctionError(f'no element with key "{key}" and no default')


def _merge(*maps: Value) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for m in maps:
        if m is not None:
            out.update(_map(m))
    return dict(sorted(out.items()))


def _range(*args: Value) -> list[Value]:
    if not 1 <= len(args) <= 3:
        raise FunctionError("takes one to three arguments")
    nums = [N(a) for a in args]
    start, stop, step = (
        (0, nums[0], 1) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) == 3 else 1)
    )
    if step == 0:
        raise FunctionError("step must not be zero")
    if (stop - start) / step > MAX_ITEMS:
        raise FunctionError(f"more than {MAX_ITEMS} elements")
    out: list[Value] = []
    x = start
    while (x < stop) if step > 0 else (x > stop):
        out.append(ht.normal_number(x))
        x += step
    return out


def _reverse(v: Value) -> Value:
    if isinstance(v, str):  # strrev
        return v[::-1]
    return list(reversed(_list(v)))


def _setproduct(*sets: Value) -> list[Value]:
    out: list[list[Value]] = [[]]
    for s in sets:
        out = [[*prev, x] for prev in out for x in _list(s)]
        if len(out) > MAX_ITEMS:
            raise FunctionError(f"more than {MAX_ITEMS} elements")
    return [list(p) for p in out] if sets else []


def _setunion(*sets: Value) -> list[Value]:
    return ht.unique_sorted([x for s in sets for x in _list(s)])


def _setintersection(first: Value, *rest: Value) -> list[Value]:
    keep = [x for x in _list(first) if all(any(ht.equal(x, y) for y in _list(r)) for r in rest)]
    return ht.unique_sorted(keep)


def _slice(lst: Value, start: Value, end: Value) -> list[Value]:
    items, a, b = _list(lst), _int(start, "start"), _int(end, "end")
    if a < 0 or b > len(items) or a > b:
        raise FunctionError(f"indices {a}..{b} are out of range for a list of {len(items)}")
    return items[a:b]


def _sort(lst: Value) -> list[str]:
    return sorted(S(x) for x in _list(lst))


def _values(m: Value) -> list[Value]:
    return [v for _, v in ht.sorted_items(_map(m))]


def _zipmap(keys: Value, values: Value) -> dict[str, Value]:
    ks, vs = _list(keys), _list(values)
    if len(ks) != len(vs):
        raise FunctionError("keys and values must have the same length")
    return dict(sorted(zip((S(k) for k in ks), vs, strict=True)))


FUNCTIONS: dict[str, Any] = {
    # numeric
    "abs": lambda x: abs(N(x)),
    "ceil": lambda x: math.ceil(N(x)),
    "floor": lambda x: math.floor(N(x)),
    "log": _log,
    "max": _max,
    "min": _min,
    "parseint": _parseint,
    "pow": _pow,
    "signum": _signum,
    # string
    "chomp": _chomp,
    "format": lambda fmt, *args: format_values(S(fmt), list(args)),
    "formatlist": _formatlist,
    "indent": _indent,
    "join": _join,
    "lower": lambda s: S(s).lower(),
    "regex_replace": _regex_replace,
    "replace": _replace,
    "split": _split,
    "strlen": lambda s: len(S(s)),
    "strrev": lambda s: S(s)[::-1],
    "substr": _substr,
    "title": _title,
    "trim": _trim,
    "trimprefix": lambda s, p: S(s).removeprefix(S(p)),
    "trimspace": lambda s: S(s).strip(),
    "trimsuffix": lambda s, p: S(s).removesuffix(S(p)),
    "upper": lambda s: S(s).upper(),
    # collection
    "chunklist": _chunklist,
    "coalesce": _coalesce,
    "coalescelist": _coalescelist,
    "compact": _compact,
    "concat": _concat,
    "contains": _contains,
    "distinct": _distinct,
    "element": _element,
    "flatten": _flatten,
    "index": _index,
    "keys": _keys,
    "length": _length,
    "lookup": _lookup,
    "merge": _merge,
    "range": _range,
    "reverse": _reverse,
    "setintersection": _setintersection,
    "setproduct": _setproduct,
    "setunion": _setunion,
    "slice": _slice,
    "sort": _sort,
    "values": _values,
    "zipmap": _zipmap,
}
