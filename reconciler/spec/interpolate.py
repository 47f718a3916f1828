"""Nomad-style runtime `${...}` interpolation: find references, check them, resolve them at start.

What reaches here has been through HCL evaluation (spec/hclbody.py): `${var.x}` and functions
are gone, and a reference HCL did not know (`${NOMAD_ALLOC_ID}`, `${attr.os.name}`) was kept
as text. As Nomad's runtime (helper/args), only `${name}` with letters, digits, `_`, `.`
and `-` is a reference; anything else (`${#a[@]}`, written `$${#a[@]}` in HCL) stays as it
is. A reference that cannot be resolved is an error, never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_REF = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")

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
    """The names inside `${...}`."""
    return [m.group(1) for m in _REF.finditer(text)]


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
    if name.startswith("NOMAD_"):
        return f'"${{{name}}}" is not a Nomad runtime variable or a variable of this task\'s env'
    return None  # any other name stays as written, as in Nomad (`$${HOME}` for a shell)


def _kept(name: str) -> bool:
    """Names Nomad leaves as written when nothing has that name."""
    return not name.startswith(("NOMAD_", *NODE_PREFIXES))


def resolve(text: str, values: Mapping[str, str]) -> str:
    """Replace every reference; raise KeyError naming the first Nomad name (NOMAD_*, attr.*,
    node.*, meta.*) that has no value. Other names without a value stay as written."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            if _kept(name):
                return m.group(0)
            raise KeyError(name)
        return values[name]

    return _REF.sub(sub, text)
