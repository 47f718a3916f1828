"""`reconciler services [NAME]`: the local service registry, each instance with its health."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from reconciler.cli import DataDir, Json, app
from reconciler.cli.common import NOT_FOUND, console, data_dir, emit_json, fail, read_store
from reconciler.db import queries

WORST = ("critical", "warning", "pending", "passing")


def health_of(checks: dict[str, str]) -> str:
    """The worst status of an instance's checks; "registered" when it has none."""
    for status in WORST:
        if status in checks.values():
            return status
    return "registered"


@app.command()
def services(
    name: Annotated[str | None, typer.Argument(help="One service name")] = None,
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """Registered service instances: address, port, owner and health (their checks)."""
    store = read_store(data_dir(data))
    rows = queries.services(store, name)
    if name is not None and not rows:
        fail(f"no service {name!r} is registered", NOT_FOUND)
    out = []
    for r in rows:
        checks = dict(line.split("=", 1) for line in (r.pop("checks") or "").splitlines())
        owner = f"{r['job_id']}/{r['group_name']}/{r['idx']}" + (f"/{r['task']}" if r["task"] else "")
        out.append(r | {"tags": json.loads(r["tags"]), "owner": owner, "checks": checks,
                        "health": health_of(checks)})  # fmt: skip
    if as_json:
        emit_json({"services": out})
        return
    if not out:
        console.print("no services")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("service", "address", "owner", "health", "tags", "checks"):
        table.add_column(col)
    for s in out:
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(s["checks"].items()))
        table.add_row(s["name"], f"{s['address']}:{s['port']}", s["owner"], s["health"],
                      ",".join(s["tags"]), listed)  # fmt: skip
    console.print(table)


@app.command()
def promote(job: Annotated[str, typer.Argument()], data: DataDir = None) -> None:
    """Promote a new version's canaries (update { canary }), or mark a new version healthy
    (health_check = "manual")."""
    from reconciler.cli.ops import _act

    body = _act(data_dir(data), "promote", job=job)
    if body.get("canaries"):
        console.print(f"{job}: {body['canaries']} canaries of version {body['promoted']} promoted;"
                      " the other instances are updated now")  # fmt: skip
    else:
        console.print(f"{job}: version {body['promoted']} promoted")
