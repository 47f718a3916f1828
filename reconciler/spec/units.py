"""Nomad's scalar formats: Go durations ("15s", "1h30m") and capability names."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string, as Nomad's `time.ParseDuration` reads it."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'"{text}" is not a duration (write it like "15s", "5m" or "1h30m")')
    return sign * total


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    out, rest = "", seconds
    for unit, size in (("h", 3600), ("m", 60)):
        if rest >= size:
            out += f"{int(rest // size)}{unit}"
            rest -= (rest // size) * size
    if rest or not out:
        out += f"{rest:g}s" if rest >= 1 or out else f"{rest * 1000:g}ms"
    return out


# Linux capability numbers, as in <linux/capability.h>.
CAPABILITIES: dict[str, int] = {
    name: n
    for n, name in enumerate(
        [
            "chown",
            "dac_override",
            "dac_read_search",
            "fowner",
            "fsetid",
            "kill",
            "setgid",
            "setuid",
            "setpcap",
            "linux_immutable",
            "net_bind_service",
            "net_broadcast",
            "net_admin",
            "net_raw",
            "ipc_lock",
            "ipc_owner",
            "sys_module",
            "sys_rawio",
            "sys_chroot",
            "sys_ptrace",
            "sys_pacct",
            "sys_admin",
            "sys_boot",
            "sys_nice",
            "sys_resource",
            "sys_time",
            "sys_tty_config",
            "mknod",
            "lease",
            "audit_write",
            "audit_control",
            "setfcap",
            "mac_override",
            "mac_admin",
            "syslog",
            "wake_alarm",
            "block_suspend",
            "audit_read",
            "perfmon",
            "bpf",
            "checkpoint_restore",
        ]
    )
}

# Nomad's default set (drivers/shared/capabilities/defaults.go): Docker's minus NET_RAW.
NOMAD_DEFAULT_CAPS: frozenset[str] = frozenset(
    [
        "audit_write",
        "chown",
        "dac_override",
        "fowner",
        "fsetid",
        "kill",
        "mknod",
        "net_bind_service",
        "setfcap",
        "setgid",
        "setpcap",
        "setuid",
        "sys_chroot",
    ]
)


def normalize_cap(name: str) -> str:
    """`CAP_NET_RAW`, `net_raw` and `NET_RAW` are the same capability; `all` stays `all`."""
    n = name.strip().lower()
    return n[4:] if n.startswith("cap_") else n
