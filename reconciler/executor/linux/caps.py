"""Nomad's capability arithmetic (drivers/shared/capabilities): pure functions."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.executor.base import StartError

# Linux capability numbers, as in <linux/capability.h>.
NUMBERS: dict[str, int] = {
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
NOMAD_DEFAULTS: frozenset[str] = frozenset(
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


def _norm(names: Iterable[str]) -> set[str]:
    out = set()
    for n in names:
        n = n.strip().lower()
        out.add(n[4:] if n.startswith("cap_") else n)
    return out


def calculate(
    allow_caps: Iterable[str] | None, cap_add: Iterable[str], cap_drop: Iterable[str]
) -> frozenset[str]:
    """(defaults ∩ allow_caps) − cap_drop ∪ cap_add; cap_add outside allow_caps is refused."""
    allowed = _norm(allow_caps) if allow_caps is not None else set(NOMAD_DEFAULTS)
    if "all" in allowed:
        allowed = set(NUMBERS)
    add, drop = _norm(cap_add), _norm(cap_drop)
    if "all" in add:
        add = set(allowed)
    if forbidden := sorted(add - allowed):
        raise StartError(
            "the node does not allow the following capabilities: "
            + ", ".join(forbidden)
            + " (add them to allow_caps in the node configuration)"
        )
    base = set(NOMAD_DEFAULTS) & allowed
    base = set() if "all" in drop else base - drop
    return frozenset(base | add)


def mask(caps: Iterable[str]) -> int:
    m = 0
    for c in caps:
        m |= 1 << NUMBERS[c]
    return m
