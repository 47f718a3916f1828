"""Verbs for child jobs: `reconciler periodic force JOB` and `reconciler dispatch JOB`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli import DataDir, app
from reconciler.cli.common import USAGE, console, data_dir, fail
from reconciler.cli.ops import _act

periodic_app = typer.Typer(no_args_is_help=True, help="Periodic jobs.")
app.add_typer(periodic_app, name="periodic")


@periodic_app.command()
def force(job: Annotated[str, typer.Argument(help="A periodic job")], data: DataDir = None) -> None:
    """Launch a periodic job's child now, even while an earlier one runs (Nomad's force)."""
    body = _act(data_dir(data), "periodic_force", job=job)
    console.print(f"Force periodic successful\nLaunched Job ID = {body['child']}")


@app.command()
def dispatch(
    job: Annotated[str, typer.Argument(help="A parameterized job")],
    meta: Annotated[list[str] | None, typer.Option("--meta", help="K=V, repeatable")] = None,
    payload: Annotated[
        str | None, typer.Option("--payload", help="A file, or - for standard input")
    ] = None,
    token: Annotated[
        str, typer.Option("--idempotency-token", help="Dispatch at most once with this token")
    ] = "",
    prefix: Annotated[
        str, typer.Option("--id-prefix-template", help="Child ID JOB/dispatch-PREFIX-<time>-<id>")
    ] = "",
    data: DataDir = None,
) -> None:
    """Dispatch a parameterized job: a child JOB/dispatch-<time>-<id> runs with the meta
    (as NOMAD_META_*) and the payload (in the task's local/, per dispatch_payload)."""
    pairs: dict[str, str] = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--meta {item!r}: expected KEY=VALUE", USAGE)
        pairs[key] = value
    raw: bytes | None = None
    if payload == "-":
        raw = sys.stdin.buffer.read()
    elif payload is not None:
        try:
            raw = Path(payload).read_bytes()
        except OSError as e:
            fail(f"--payload {payload}: {e.strerror or e}", USAGE)
    body = _act(data_dir(data), "dispatch", job=job, meta=pairs,
                payload=raw.hex() if raw is not None else None, token=token,
                prefix=prefix)  # fmt: skip
    note = " (existing: same idempotency token)" if body.get("existing") else ""
    console.print(f"Dispatched Job ID = {body['child']}{note}")
