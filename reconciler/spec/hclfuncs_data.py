"""Nomad jobspec functions for encoding, hashing, dates, IP networks, UUIDs and files."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import ipaddress
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.spec import hcltypes as ht
from reconciler.spec.hclexpr import FunctionError
from reconciler.spec.hclformat import jsonish
from reconciler.spec.hcltypes import Value

S, N = ht.to_string, ht.to_number

# Functions Nomad has that reconciler refuses, and why (shown in the error).
UNSUPPORTED = {
    "bcrypt": "its value changes every time the file is read (a random salt), so the job would "
    "restart on every read",
    "uuidv4": "its value changes every time the file is read, so the job would restart on every "
    "read; use uuidv5() for a stable one",
    "rsadecrypt": "reconciler does not decrypt with private keys in job files",
    "timestamp": "Nomad's jobspec has no timestamp() either (the job would change on every read)",
    "templatefile": "Nomad's jobspec has no templatefile(); use a template block",
    "regex": "Nomad's jobspec has no regex(); use regex_replace()",
    "tostring": "Nomad's jobspec has no tostring(); use convert(x, string) or format()",
    "tonumber": "Nomad's jobspec has no tonumber(); use convert(x, number) or parseint()",
    "tobool": "Nomad's jobspec has no tobool(); use convert(x, bool)",
    "tolist": "Nomad's jobspec has no tolist(); use convert(x, list(any))",
    "tomap": "Nomad's jobspec has no tomap(); use convert(x, map(any))",
    "toset": "Nomad's jobspec has no toset(); use convert(x, set(any)) or distinct()",
    "startswith": "Nomad's jobspec has no startswith(); compare substr() or use can(regex_replace)",
    "endswith": "Nomad's jobspec has no endswith()",
    "filemd5": "Nomad's jobspec has no filemd5(); use md5(file(...))",
    "filesha256": "Nomad's jobspec has no filesha256(); use sha256(file(...))",
}


def _b64decode(s: Value) -> str:
    try:
        return base64.b64decode(S(s), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        raise FunctionError(f"not base64 of UTF-8 text: {e}") from None


def _csvdecode(s: Value) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(S(s))))
    if not rows:
        raise FunctionError("missing header line")
    head = rows[0]
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(head):
            raise FunctionError(f"line {n}: wrong number of fields")
        out.append(dict(sorted(zip(head, row, strict=True))))
    return out


def _jsondecode(s: Value) -> Value:
    try:
        return _from_data(json.loads(S(s)))
    except (ValueError, RecursionError) as e:
        raise FunctionError(f"invalid JSON: {e}") from None


def _from_data(v: Any, depth: int = 0) -> Value:
    """Decoded JSON/YAML -> HCL values (keys as strings, integral floats as ints)."""
    if depth > 64:
        raise FunctionError("data nested too deeply")
    if isinstance(v, dict):
        return dict(sorted((str(k), _from_data(x, depth + 1)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return [_from_data(x, depth + 1) for x in v]
    if isinstance(v, float):
        return ht.normal_number(v)
    if v is None or isinstance(v, bool | int | str):
        return v
    return str(v)  # YAML timestamps and the like: cty keeps them as strings


def _yamldecode(s: Value) -> Value:
    import yaml  # PyYAML is loaded by the first file that calls a yaml function

    try:
        return _from_data(yaml.safe_load(S(s)))
    except (yaml.YAMLError, RecursionError) as e:
        raise FunctionError(f"invalid YAML: {str(e).splitlines()[0] if str(e) else e}") from None


def _yamlencode(v: Value) -> str:
    import yaml

    return str(yaml.safe_dump(v, default_flow_style=False, sort_keys=True, allow_unicode=True))


def _urlencode(s: Value) -> str:
    return urllib.parse.quote_plus(S(s), safe="")


def _hash(name: str) -> Callable[[Value], str]:
    return lambda s: hashlib.new(name, S(s).encode()).hexdigest()


# -- date and time (RFC 3339 in, Terraform's formatdate spec) --------------------------------
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _parse_time(s: Value) -> datetime:
    m = _RFC3339.match(S(s))
    if m is None:
        raise FunctionError(f'"{S(s)[:40]}" is not an RFC 3339 timestamp like 2024-01-02T15:04:05Z')
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        from datetime import timezone

        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        micro = int((frac or ".0")[1:7].ljust(6, "0"))
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro, tzinfo=tz)
    except ValueError as e:
        raise FunctionError(str(e)) from None


_DATE_TOKEN = re.compile(
    r"'(?:[^']|'')*'|YYYY|YY|MMMM|MMM|MM|M|DD|D|EEEE|EEE|hh|h|HH|H|AA|aa|mm|m|ss|s|ZZZZZ|ZZZZ|ZZZ|Z|[A-Za-z]+|[^A-Za-z']+"
)


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _formatdate(spec: Value, ts: Value) -> str:
    t = _parse_time(ts)
    off = t.utcoffset() or timedelta(0)
    mins = int(off.total_seconds() // 60)
    sign = "+" if mins >= 0 else "-"
    hh, mm = divmod(abs(mins), 60)
    h12 = t.hour % 12 or 12
    table = {
        "YYYY": f"{t.year:04d}", "YY": f"{t.year % 100:02d}", "MMMM": _MONTHS[t.month - 1],
        "MMM": _MONTHS[t.month - 1][:3], "MM": f"{t.month:02d}", "M": str(t.month),
        "DD": f"{t.day:02d}", "D": str(t.day), "EEEE": _DAYS[t.weekday()], "EEE": _DAYS[t.weekday()][:3],
        "hh": f"{t.hour:02d}", "h": str(t.hour), "HH": f"{h12:02d}", "H": str(h12),
        "AA": "AM" if t.hour < 12 else "PM", "aa": "am" if t.hour < 12 else "pm",
        "mm": f"{t.minute:02d}", "m": str(t.minute), "ss": f"{t.second:02d}", "s": str(t.second),
        "ZZZZZ": f"{sign}{hh:02d}:{mm:02d}", "ZZZZ": f"{sign}{hh:02d}{mm:02d}",
        "ZZZ": "UTC" if mins == 0 else f"{sign}{hh:02d}{mm:02d}",
        "Z": "Z" if mins == 0 else f"{sign}{hh:02d}:{mm:02d}",
    }  # fmt: skip
    out = []
    for tok in _DATE_TOKEN.findall(S(spec)):
        if tok.startswith("'"):
            out.append(tok[1:-1].replace("''", "'"))
        elif tok in table:
            out.append(table[tok])
        elif tok[0].isalpha():
            raise FunctionError(f'invalid date format sequence "{tok}"')
        else:
            out.append(tok)
    return "".join(out)


_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _timeadd(ts: Value, duration: Value) -> str:
    t, d = _parse_time(ts), S(duration)
    sign = -1 if d.startswith("-") else 1
    body = d.lstrip("+-")
    parts = _DURATION.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise FunctionError(f'"{d[:40]}" is not a duration like "1h30m"')
    seconds = sign * sum(float(n) * _UNIT[u] for n, u in parts)
    try:
        r = t + timedelta(seconds=seconds)
    except OverflowError:
        raise FunctionError("the result is out of range") from None
    return r.replace(microsecond=0).isoformat().replace("+00:00", "Z")  # Go's time.RFC3339


# -- IP networks -----------------------------------------------------------------------------
def _net(prefix: Value) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(S(prefix), strict=False)
    except ValueError as e:
        raise FunctionError(f"invalid CIDR prefix: {e}") from None


def _cidrhost(prefix: Value, num: Value) -> str:
    net, n = _net(prefix), int(N(num))
    size = net.num_addresses
    if not -size <= n < size:
        raise FunctionError(f"prefix {net} has no host number {n}")
    return str(net.network_address + (n if n >= 0 else size + n))


def _cidrnetmask(prefix: Value) -> str:
    net = _net(prefix)
    if net.version != 4:
        raise FunctionError("only IPv4 prefixes have a netmask")
    return str(net.netmask)


def _cidrsubnet(prefix: Value, newbits: Value, netnum: Value) -> str:
    net, bits, num = _net(prefix), int(N(newbits)), int(N(netnum))
    new_len = net.prefixlen + bits
    if bits < 0 or new_len > net.max_prefixlen:
        raise FunctionError(f"cannot extend prefix {net} by {bits} bits")
    if not 0 <= num < 2**bits:
        raise FunctionError(f"prefix extension of {bits} bits has no network number {num}")
    base = int(net.network_address) + (num << (net.max_prefixlen - new_len))
    return f"{ipaddress.ip_address(base)}/{new_len}"


def _cidrsubnets(prefix: Value, *newbits: Value) -> list[str]:
    net = _net(prefix)
    out: list[str] = []
    cursor = int(net.network_address)
    end = int(net.broadcast_address)
    for b in newbits:
        bits = int(N(b))
        new_len = net.prefixlen + bits
        if bits < 1 or new_len > net.max_prefixlen:
            raise FunctionError(f"cannot extend prefix {net} by {bits} bits")
        size = 1 << (net.max_prefixlen - new_len)
        cursor = -(-cursor // size) * size  # align up
        if cursor + size - 1 > end:
            raise FunctionError(f"not enough room in {net} for the requested subnets")
        out.append(f"{ipaddress.ip_address(cursor)}/{new_len}")
        cursor += size
    return out


_UUID_NS = {"dns": uuid.NAMESPACE_DNS, "url": uuid.NAMESPACE_URL, "oid": uuid.NAMESPACE_OID,
            "x500": uuid.NAMESPACE_X500}  # fmt: skip


def _uuidv5(namespace: Value, name: Value) -> str:
    ns = S(namespace)
    try:
        space = _UUID_NS.get(ns) or uuid.UUID(ns)
    except ValueError:
        raise FunctionError(
            f'namespace must be dns, url, oid, x500 or a UUID, not "{ns[:40]}"'
        ) from None
    return str(uuid.uuid5(space, S(name)))


FUNCTIONS: dict[str, Any] = {
    "base64decode": _b64decode,
    "base64encode": lambda s: base64.b64encode(S(s).encode()).decode(),
    "csvdecode": _csvdecode,
    "jsondecode": _jsondecode,
    "jsonencode": jsonish,
    "urlencode": _urlencode,
    "yamldecode": _yamldecode,
    "yamlencode": _yamlencode,
    "md5": _hash("md5"),
    "sha1": _hash("sha1"),
    "sha256": _hash("sha256"),
    "sha512": _hash("sha512"),
    "formatdate": _formatdate,
    "timeadd": _timeadd,
    "cidrhost": _cidrhost,
    "cidrnetmask": _cidrnetmask,
    "cidrsubnet": _cidrsubnet,
    "cidrsubnets": _cidrsubnets,
    "uuidv5": _uuidv5,
}
