"""`reconciler var put|get|list|purge`: Nomad Variables kept in the data dir, encrypted.

A change is written to the variable store directly; a running service is asked to look again
so templates that read the variable render anew (per their change_mode)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reconciler.cli import DataDir, Json, app
from reconciler.cli.common import NOT_FOUND, USAGE, console, data_dir, emit_json, err, fail
from reconciler.db.variables import Meta, VariableError, VariableStore
from reconciler.service.control import NotRunning, call

var_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                      help="Nomad Variables for templates (nomadVar), encrypted in the data dir.")  # fmt: skip
app.add_typer(var_app, name="var")


_group_data: list[Path | None] = [None]


@var_app.callback()
def _var(data: DataDir = None) -> None:
    _group_data[0] = data  # `reconciler var --data-dir D put ...` as well as `... put --data-dir D`


def _store(data: Path | None) -> VariableStore:
    return VariableStore(data_dir(data or _group_data[0]))


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta_json(m: Meta) -> dict[str, object]:
    return {"Namespace": m.namespace, "Path": m.path, "CreateIndex": m.create_index,
            "ModifyIndex": m.modify_index, "CreateTime": m.create_time,
            "ModifyTime": m.modify_time}  # fmt: skip


def _notify(data: Path) -> None:
    """Ask a running service to plan every job again; without one, the next start reads it."""
    try:
        call(data, "reload", timeout=5)
    except (NotRunning, OSError):
        err.print("note: the service is not running; templates read the change when it starts")


@var_app.command("put")
def put(
    path: Annotated[str, typer.Argument(help="e.g. nomad/jobs/web")],
    items: Annotated[list[str], typer.Argument(help="KEY=VALUE, or KEY=@FILE, or KEY=- (stdin)")],
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """Create or replace the variable at PATH with these items."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{item!r}: items are KEY=VALUE", USAGE)
        if value == "-":
            value = sys.stdin.read()
        elif value.startswith("@"):
            try:
                value = Path(value[1:]).read_text()
            except OSError as e:
                fail(f"{key}: cannot read {value[1:]}: {e.strerror}", USAGE)
        values[key] = value
    store = _store(data)
    try:
        meta = store.put(path, values)
    except VariableError as e:
        fail(str(e), USAGE)
    if as_json:
        emit_json({**_meta_json(meta), "Items": values})
    else:
        console.print(f"Created variable {path!r} with modify index {meta.modify_index}")
    _notify(store.data_dir)


@var_app.command("get")
def get(
    path: str,
    item: Annotated[str | None, typer.Option("--item", help="print only this item's value")] = None,
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show the variable at PATH (its items in clear)."""
    try:
        var = _store(data).get(path)
    except VariableError as e:
        fail(str(e))
    if var is None:
        fail(f"no variable at {path}", NOT_FOUND)
    if item is not None:
        if item not in var.items:
            fail(f"the variable at {path} has no item {item!r}", NOT_FOUND)
        sys.stdout.write(var.items[item] + "\n")
        return
    if as_json:
        emit_json({**_meta_json(var.meta), "Items": dict(var.items)})
        return
    m = var.meta
    console.print(f"Namespace   = {m.namespace}\nPath        = {m.path}\n"
                  f"Create Time = {_when(m.create_time)}\nCheck Index = {m.modify_index}\n\nItems")  # fmt: skip
    for k in sorted(var.items):
        console.print(f"{k} = {var.items[k]}", markup=False)


@var_app.command("list")
def list_vars(
    prefix: Annotated[str, typer.Argument(help="only paths starting with this")] = "",
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """List variables (paths and times, never items)."""
    metas = _store(data).list(prefix)
    if as_json:
        emit_json([_meta_json(m) for m in metas])
        return
    if not metas:
        console.print("No variables found")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("Namespace", "Path", "Last Updated"):
        table.add_column(col)
    for m in metas:
        table.add_row(m.namespace, m.path, _when(m.modify_time))
    console.print(table)


@var_app.command("purge")
def purge(path: str, data: DataDir = None) -> None:
    """Delete the variable at PATH."""
    store = _store(data)
    if not store.purge(path):
        fail(f"no variable at {path}", NOT_FOUND)
    console.print(f"Successfully purged variable {path!r}")
    _notify(store.data_dir)
