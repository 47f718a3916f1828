"""python-hcl2's block lists -> the nested dict shape whose pydantic `loc` is the block path.

Also where Nomad fields that mean nothing on one node are dropped with a warning, and fields
reconciler cannot honour are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LABELLED = {"job", "group", "task", "port", "volume"}
SINGLE = {
    "config", "env", "resources", "restart", "update", "lifecycle", "logs", "meta", "network",
    "dns", "options", "headers", "periodic", "parameterized", "dispatch_payload",
    "check_restart", "header", "wait", "reschedule",
}  # fmt: skip
RAW_MAPS = {"env", "meta", "options", "headers", "header"}  # maps whose keys are data, not fields
REPEATED = {"constraint", "template", "volume_mount", "artifact", "service", "check"}

_ONE_NODE = "means nothing on a single node and is ignored"
IGNORED: dict[str, dict[str, str]] = {
    "job": dict.fromkeys(
        [
            "datacenters",
            "region",
            "namespace",
            "priority",
            "all_at_once",
            "node_pool",
            "spread",
            "affinity",
            "migrate",
            "multiregion",
            "consul",
            "ui",
            "vault_token",
            "consul_token",
            "id",
            "name",
        ],
        _ONE_NODE,
    ),
    "group": dict.fromkeys(
        [
            "spread",
            "affinity",
            "ephemeral_disk",
            "consul",
            "migrate",
            "scaling",
            "stop_after_client_disconnect",
            "max_client_disconnect",
            "disconnect",
            "prevent_reschedule_on_lost",
        ],
        _ONE_NODE,
    ),
    "task": dict.fromkeys(
        [
            "consul",
            "identity",
            "identities",
            "kind",
            "scaling",
            "csi_plugin",
            "affinity",
            "spread",
        ],
        _ONE_NODE,
    ),
    "network": dict.fromkeys(["mbits"], _ONE_NODE),
    "resources": dict.fromkeys(["network", "disk", "iops", "numa"], _ONE_NODE),
    "template": dict.fromkeys(["vault_grace"], _ONE_NODE),
    "service": dict.fromkeys(
        ["meta", "canary_meta", "enable_tag_override", "tagged_addresses",
         "weights", "cluster", "identity"],
        "is for Consul's catalog; reconciler's registry keeps name, tags, address and port",
    ),  # fmt: skip
    "check": {
        "initial_status": "is ignored: checks start pending, as with Nomad's provider",
        "notes": "is for Consul's catalog and is ignored",
    },
}
# Fields reconciler cannot honour: an error rather than a silent difference.
# Accepted and used, with Nomad's own warning (nomad/structs Job.Warnings).
DEPRECATED: dict[str, dict[str, str]] = {
    "periodic": {"cron": "cron is deprecated and may be removed in a future release. Use crons instead"},
}
_VAULT = ("is not supported: reconciler has no Vault, and Nomad places a task that asks for "
          "Vault only on a node with Vault (no token or secrets would reach it here)")
REFUSED: dict[str, dict[str, str]] = {
    "job": {"vault": _VAULT},
    "group": {"vault": _VAULT},
    "task": {"vault": _VAULT},
    "resources": {
        "device": "is not supported: reconciler has no device plugins, and Nomad places a task "
                  "that asks for a device only on a node that has one",
    },
    "service": {
        "connect": "is not supported: reconciler has no Consul Connect service mesh",
        "kind": "is not supported: Consul gateways need Consul Connect",
    },
    "check": dict.fromkeys(
        ["grpc_service", "grpc_use_tls", "expose", "tls_server_name"],
        "is not supported: reconciler runs http, tcp and script checks",
    ),
}


@dataclass
class Found:
    path: tuple[str | int, ...]
    message: str
    severity: str


@dataclass
class Normalized:
    body: dict[str, Any]
    found: list[Found] = field(default_factory=list)


def normalize(raw: dict[str, Any]) -> Normalized:
    out = Normalized(body={})
    out.body = _body(raw, (), "", out)
    return out


def _body(body: dict[str, Any], path: tuple[str | int, ...], kind: str, out: Normalized) -> Any:
    result: dict[str, Any] = {}
    for key, val in body.items():
        p = (*path, key)
        if key.startswith("__") and key.endswith("__"):
            continue
        if (why := IGNORED.get(kind, {}).get(key)) is not None:
            out.found.append(Found(p, why, "warning"))
            continue
        if (why := REFUSED.get(kind, {}).get(key)) is not None:
            out.found.append(Found(p, why, "error"))
            continue
        if (why := DEPRECATED.get(kind, {}).get(key)) is not None:
            out.found.append(Found(p, why, "warning"))
        if key in LABELLED and _is_block_list(val):
            result[key] = _labelled(val, p, key, out)
        elif key in SINGLE and _is_block_list(val):
            if len(val) > 1:
                out.found.append(Found((*p, 1), f"only one {key} block is allowed", "error"))
            inner = val[0]
            result[key] = inner if key in RAW_MAPS else _body(inner, p, key, out)
        elif _is_block_list(val) and key in REPEATED:
            result[key] = [_body(item, (*p, i), key, out) for i, item in enumerate(val)]
        else:
            result[key] = val
    return result


def _is_block_list(val: Any) -> bool:
    return isinstance(val, list) and bool(val) and all(isinstance(v, dict) for v in val)


def _labelled(
    items: list[dict[str, Any]], path: tuple[str | int, ...], kind: str, out: Normalized
) -> dict[str, Any]:
    blocks: dict[str, Any] = {}
    for item in items:
        labels = [k for k in item if not k.startswith("__")]
        if len(labels) != 1 or not isinstance(item[labels[0]], dict):
            out.found.append(
                Found(path, f'a {kind} block needs exactly one label: {kind} "name"', "error")
            )
            continue
        label = labels[0]
        inner = item[label]
        nested = [k for k, v in inner.items() if not k.startswith("__")]
        if (
            kind != "port"
            and len(nested) == 1
            and isinstance(inner[nested[0]], dict)
            and (nested[0] not in LABELLED | SINGLE | REPEATED)
        ):
            out.found.append(
                Found((*path, label), f"a {kind} block takes one label, not two", "error")
            )
            continue
        if label in blocks:
            out.found.append(Found((*path, label), f'duplicate {kind} "{label}"', "error"))
            continue
        blocks[label] = _body(inner, (*path, label), kind, out)
    return blocks
