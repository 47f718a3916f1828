"""consul-template's functions that need no cluster (consul-template template/funcs.go), Nomad's
variables and services read locally, and the ones reconciler refuses, each with the reason."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.spec.gotemplate import nomadservices, nomadvars, sockaddr
from reconciler.spec.gotemplate.encoding import (
    _b,
    _b64decode,
    _parse_bool,
    _parse_float,
    _parse_int,
    _parse_json,
    _parse_uint,
    _parse_yaml,
    _to_json,
    _to_yaml,
)
from reconciler.spec.gotemplate.funcs import Func, FuncError, Loop
from reconciler.spec.gotemplate.gofmt import quote, sorted_keys, type_name
from reconciler.spec.gotemplate.gotime import format_time


@dataclass(frozen=True)
class Host:
    """What the functions may see of the world: the task's environment, the clock, and the
    host's interface addresses (asked for only by `sockaddr`)."""

    env: Mapping[str, str] = field(default_factory=dict)
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    interfaces: Callable[[], list[sockaddr.Iface]] = list
    variables: nomadvars.VariableSource | None = None
    workload: nomadvars.Workload | None = None
    services: nomadservices.ServiceSource | None = None


_CLUSTER = "needs a Consul cluster, which reconciler does not use"
_VAULT = "needs Vault, which reconciler does not use"
_SANDBOX = "is disabled in Nomad's template sandbox"
REFUSED: dict[str, str] = {
    **dict.fromkeys(["key", "keyExists", "keyOrDefault", "ls", "safeLs", "tree", "safeTree",
                     "node", "nodes", "service", "services", "connect", "caRoots", "caLeaf",
                     "datacenters", "partitions", "peerings", "exportedServices",
                     "importedServices", "byKey", "byTag", "byPort", "byMeta", "explode"],
                    _CLUSTER),
    **dict.fromkeys(["secret", "secrets", "pkiCert"], _VAULT),
    **dict.fromkeys(["plugin", "writeToFile", "executeTemplate"], _SANDBOX),
    "file": "reads files of the task directory, which reconciler does not offer yet "
            "(put the content in the template's data)",
    "toTOML": "is not supported (use toJSON or toYAML)",
    "scratch": "is not supported",
    **dict.fromkeys(["spew_dump", "spew_printf", "spew_sdump", "spew_sprintf"],
                    "is a debugging function reconciler does not offer"),
    "call": "is not supported (templates hold no function values)",
}  # fmt: skip


def refused(name: str) -> str | None:
    if name in REFUSED:
        return f"function {quote(name)} {REFUSED[name]}"
    if name.startswith("sprig_"):
        return f"function {quote(name)}: Sprig functions are not supported"
    return None


def _go_num_kind(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return ""
    return "int" if isinstance(v, int) else "float"


def _arith(name: str, op: Callable[[Any, Any], Any], ints_only: bool = False) -> Func:
    def run(b: Any, a: Any) -> Any:
        ka, kb = _go_num_kind(a), _go_num_kind(b)
        if not ka:
            raise FuncError(f"{name}: unknown type for {_q(a)} ({type_name(a)})")
        if not kb or (ints_only and kb == "float"):
            raise FuncError(f"{name}: unknown type for {_q(b)} ({type_name(b)})")
        if ints_only and ka == "float":
            raise FuncError(f"{name}: unknown type for {_q(a)} ({type_name(a)})")
        if ka == kb == "int":
            return op(a, b)
        return op(float(a), float(b))

    return Func(run, ("any", "any"))


def _q(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else str(v)


def _int_div(a: int, b: int) -> int:
    if b == 0:
        raise FuncError("runtime error: integer divide by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _int_mod(a: int, b: int) -> int:
    if b == 0:
        raise FuncError("runtime error: integer divide by zero")
    return a - b * _int_div(a, b)


def _float_div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return _int_div(a, b)
    if b == 0:
        return math.copysign(math.inf, a) * math.copysign(1, b) if a else math.nan
    return a / b


def _pick(name: str, less: bool) -> Func:
    def run(b: Any, a: Any) -> Any:
        ka, kb = _go_num_kind(a), _go_num_kind(b)
        if not ka:
            raise FuncError(f"{name}: unknown type for {_q(a)} ({type_name(a)})")
        if not kb:
            raise FuncError(f"{name}: unknown type for {_q(b)} ({type_name(b)})")
        return a if ((a < b) if less else (a > b)) else b

    return Func(run, ("any", "any"))


def _in(lst: Any, v: Any) -> bool:
    if isinstance(lst, list | tuple):
        for x in lst:
            if _go_num_kind(x) and _go_num_kind(x) == _go_num_kind(v) and x == v:
                return True
            if isinstance(x, str) and isinstance(v, str) and x == v:
                return True
        return False
    if isinstance(lst, str):
        return isinstance(v, str) and v in lst
    return False


def _contains_some(ret_true: bool, invert: bool) -> Func:
    def run(values: Any, lst: Any) -> bool:
        for v in values or ():
            if _in(lst, v) != invert:
                return not ret_true
        return ret_true

    return Func(run, ("list", "any"))


def _loop(*args: Any) -> Loop:
    def to_int(v: Any) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str):
            return _parse_int(v)
        raise FuncError(f"loop: bad argument type: {type_name(v)}")

    if len(args) == 1:
        return Loop(0, to_int(args[0]))
    if len(args) == 2:
        return Loop(to_int(args[0]), to_int(args[1]))
    raise FuncError(f"loop: wrong number of arguments, expected 1 or 2, but got {len(args)}")


def _split(sep: str, s: str) -> list[str]:
    s = s.strip()
    if s == "":
        return []
    if sep == "":
        return list(s)
    return s.split(sep)


def _split_to_map(sep1: str, sep2: str, s: str) -> dict[str, str]:
    s = s.strip()
    out: dict[str, str] = {}
    if s == "":
        return out
    for part in s.split(sep1) if sep1 else list(s):
        if sep2 and sep2 in part:
            k, _, v = part.partition(sep2)
            out[k] = v
        elif sep2 == "" and part:
            out[""] = part  # strings.Cut with an empty separator cuts before the first byte
    return out


def _indent(spaces: int, s: str) -> str:
    if spaces < 0:
        raise FuncError("indent value must be a positive integer")
    if spaces > 10_000:
        raise FuncError("indent value is too large")
    prefix = " " * spaces
    return "".join(prefix + line if line != "\n" else line for line in s.splitlines(True))


def _to_title(s: str) -> str:
    return re.sub(r"(?<![\w'\u2019])(\w)", lambda m: m.group(1).upper(), s)


def _go_regex(pattern: str) -> re.Pattern[str]:
    if len(pattern) > 10_000:
        raise FuncError("regular expression is too long")
    try:
        return re.compile(pattern.replace(r"\z", r"\Z"))
    except (re.error, OverflowError, RecursionError) as e:
        raise FuncError(f"error parsing regexp: {e}") from None


_GO_REPL = re.compile(r"\$(\$|\{(\w+)\}|(\w+))")


def _regex_replace_all(pattern: str, repl: str, s: str) -> str:
    compiled = _go_regex(pattern)

    def expand(m: re.Match[str]) -> str:
        def group(name: str) -> str:
            try:
                idx: int | str = int(name) if name.isdigit() else name
                return m.group(idx) or ""
            except (IndexError, re.error, ValueError):
                return ""

        return _GO_REPL.sub(lambda g: "$" if g.group(1) == "$" else group(g.group(2) or g.group(3)),
                            repl)  # fmt: skip

    return compiled.sub(expand, s)


def _merge_map(override: bool) -> Func:
    def run(dst: Any, src: Any) -> dict[str, Any]:
        out = dict(dst or {})
        for k, v in (src or {}).items():
            if override or k not in out or out[k] in (None, "", 0, False):
                out[k] = v
        return out

    return Func(run, ("map", "map"))


def _explode_map(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted_keys(m or {}):
        node = out
        parts = str(key).split("/")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise FuncError(
                    f"explodeMap: not a map: {quote(key)}: {quote(p)} already has a value"
                )
            node = nxt
        if parts[-1]:
            node[parts[-1]] = m[key]
    return out


def _timestamp(host: Host) -> Callable[..., str]:
    def run(*args: str) -> str:
        now = host.now().astimezone(dt.UTC)
        if not args:
            return format_time(now, "2006-01-02T15:04:05Z07:00")
        if len(args) == 1:
            if args[0] == "unix":
                return str(int(now.timestamp()))
            return format_time(now, args[0])
        raise FuncError(
            f"timestamp: wrong number of arguments, expected 0 or 1, but got {len(args)}"
        )

    return run


def _must_env(host: Host) -> Callable[[str], str]:
    def run(name: str) -> str:
        if not host.env.get(name):
            raise FuncError(f"required environment variable {name} is empty")
        return host.env[name]

    return run


def functions(host: Host) -> dict[str, Func]:
    s, a = "string", "any"
    return {
        "env": Func(lambda k: host.env.get(k, ""), (s,)),
        "mustEnv": Func(_must_env(host), (s,)),
        "envOrDefault": Func(lambda k, d: host.env.get(k, d), (s, s)),
        "timestamp": Func(_timestamp(host), (), s),
        "sockaddr": Func(
            lambda *args: sockaddr.evaluate(" ".join(args), host.interfaces()), (), s
        ),  # fmt: skip
        "split": Func(_split, (s, s)),
        "splitToMap": Func(_split_to_map, (s, s, s)),
        "join": Func(lambda sep, lst: sep.join(lst or ()), (s, "strings")),
        "replaceAll": Func(lambda f, t, x: x.replace(f, t), (s, s, s)),
        "regexReplaceAll": Func(_regex_replace_all, (s, s, s)),
        "regexMatch": Func(lambda r, x: _go_regex(r).search(x) is not None, (s, s)),
        "trim": Func(lambda cut, x: x.strip(cut) if cut else x, (s, s)),
        "trimPrefix": Func(lambda p, x: x.removeprefix(p), (s, s)),
        "trimSuffix": Func(lambda p, x: x.removesuffix(p), (s, s)),
        "trimSpace": Func(
            lambda x: x.strip(
                " \t\n\r\v\f\x85\xa0\u1680\u2000\u2001\u2002"
                "\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                "\u2028\u2029\u202f\u205f\u3000"
            ),
            (s,),
        ),  # fmt: skip
        "indent": Func(_indent, ("int", s)),
        "toLower": Func(str.lower, (s,)),
        "toUpper": Func(str.upper, (s,)),
        "toTitle": Func(_to_title, (s,)),
        "toJSON": Func(_to_json, (a,)),
        "toJSONPretty": Func(lambda v: _to_json(v, "  "), (a,)),
        "toUnescapedJSON": Func(lambda v: _to_json(v, escape_html=False), (a,)),
        "toUnescapedJSONPretty": Func(lambda v: _to_json(v, "  ", escape_html=False), (a,)),
        "parseJSON": Func(_parse_json, (s,)),
        "toYAML": Func(_to_yaml, (a,)),
        "parseYAML": Func(_parse_yaml, (s,)),
        "parseBool": Func(_parse_bool, (s,)),
        "parseFloat": Func(_parse_float, (s,)),
        "parseInt": Func(_parse_int, (s,)),
        "parseUint": Func(_parse_uint, (s,)),
        "base64Encode": Func(lambda x: base64.b64encode(_b(x)).decode(), (s,)),
        "base64Decode": Func(lambda x: _b64decode("base64Decode", x, False), (s,)),
        "base64URLEncode": Func(lambda x: base64.urlsafe_b64encode(_b(x)).decode(), (s,)),
        "base64URLDecode": Func(lambda x: _b64decode("base64URLDecode", x, True), (s,)),
        "sha256Hex": Func(lambda x: hashlib.sha256(_b(x)).hexdigest(), (s,)),
        "md5sum": Func(lambda x: hashlib.md5(_b(x)).hexdigest(), (s,)),
        "hmacSHA256Hex": Func(lambda m, k: hmac.new(_b(k), _b(m), "sha256").hexdigest(), (s, s)),
        "contains": Func(lambda v, lst: _in(lst, v), (a, a)),
        "in": Func(_in, (a, a)),
        "containsAll": _contains_some(True, True),
        "containsAny": _contains_some(False, False),
        "containsNone": _contains_some(True, False),
        "containsNotAll": _contains_some(False, True),
        "loop": Func(_loop, (), a),
        "add": _arith("add", lambda x, y: x + y),
        "subtract": _arith("subtract", lambda x, y: x - y),
        "multiply": _arith("multiply", lambda x, y: x * y),
        "divide": _arith("divide", _float_div),
        "modulo": _arith("modulo", _int_mod, ints_only=True),
        "minimum": _pick("minimum", less=True),
        "maximum": _pick("maximum", less=False),
        "mergeMap": _merge_map(False),
        "mergeMapWithOverride": _merge_map(True),
        "explodeMap": Func(_explode_map, ("map",)),
        **nomadvars.functions(host.variables, host.workload),
        **nomadservices.functions(host.services),
    }
