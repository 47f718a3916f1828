"""Nomad-style `${...}` interpolation: find references, check them, resolve them at start.

Anything that cannot be resolved is an error, never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")

RUNTIME_VARS = frozenset(
    [
        "NOMAD_ALLOC_DIR",
        "NOMAD_TASK_DIR",
        "NOMAD_SECRETS_DIR",
        "NOMAD_MEMORY_LIMIT",
        "NOMAD_MEMORY_MAX_LIMIT",
        "NOMAD_CPU_LIMIT",
        "NOMAD_CPU_CORES",
        "NOMAD_ALLOC_ID",
        "NOMAD_SHORT_ALLOC_ID",
        "NOMAD_ALLOC_NAME",
        "NOMAD_ALLOC_INDEX",
        "NOMAD_TASK_NAME",
        "NOMAD_GROUP_NAME",
        "NOMAD_JOB_ID",
        "NOMAD_JOB_NAME",
        "NOMAD_JOB_PARENT_ID",
        "NOMAD_DC",
        "NOMAD_REGION",
        "NOMAD_NAMESPACE",
        "NOMAD_PARENT_CGROUP",
    ]
)
PORT_PREFIXES = (
    "NOMAD_IP_", "NOMAD_PORT_", "NOMAD_ADDR_", "NOMAD_HOST_PORT_", "NOMAD_HOST_IP_",
    "NOMAD_HOST_ADDR_", "NOMAD_ALLOC_PORT_", "NOMAD_ALLOC_IP_", "NOMAD_ALLOC_ADDR_",
)  # fmt: skip
NODE_PREFIXES = ("attr.", "node.", "meta.", "driver.")


def references(text: str) -> list[str]:
    """The names inside `${...}`; `$${` is an escaped literal and not a reference."""
    return [m.group(1).strip() for m in _REF.finditer(text) if m.group(0) != "$${"]


def unresolvable(
    name: str, *, ports: Iterable[str], env: Iterable[str], node_refs: bool = True
) -> str | None:
    """Why `name` cannot be resolved at run time, or None when it can."""
    if name in RUNTIME_VARS or name.startswith("NOMAD_META_") or name in set(env):
        return None
    for prefix in PORT_PREFIXES:
        if name.startswith(prefix):
            label = name[len(prefix) :]
            if label in set(ports):
                return None
            return f'no port labelled "{label}" in the group\'s network block'
    if node_refs and name.startswith(NODE_PREFIXES):
        return None
    if name.startswith(("var.", "local.")):
        return f'"${{{name}}}": HCL variables are not supported; write the value in the job file'
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return f'"${{{name}}}" is not a Nomad runtime variable or a variable of this task\'s env'
    return f'"${{{name}}}" is an HCL expression, which reconciler does not evaluate'


def resolve(text: str, values: Mapping[str, str]) -> str:
    """Replace every reference; raise KeyError naming the first one that has no value."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name = m.group(1).strip()
        if name not in values:
            raise KeyError(name)
        return values[name]

    return _REF.sub(sub, text)
