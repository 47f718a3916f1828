"""What every verb shares: where the data dir is, JSON vs human output, task addresses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from reconciler.db.snapshot import SlotKey
from reconciler.db.store import Store
from reconciler.service.start import REFUSED as REFUSED
from reconciler.service.start import USAGE as USAGE
from reconciler.service.start import data_dir as data_dir
from reconciler.service.start import db_path as db_path

DATA_DIR_HELP = "The service's data dir (or RECONCILER_DATA_DIR); default ./.reconciler"
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Exit codes scripts can rely on (USAGE and REFUSED: the service's own, service/start.py).
OK, FAILED, NOT_RUNNING, NOT_FOUND = 0, 1, 3, 4


def fail(message: str, code: int = FAILED) -> NoReturn:
    err.print(f"[red]error:[/red] {message}" if err.is_terminal else f"error: {message}")
    raise typer.Exit(code)


def read_store(data: Path) -> Store:
    try:
        return Store(db_path(data), readonly=True)
    except FileNotFoundError as e:
        fail(str(e), NOT_FOUND)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def resolve_tasks(
    candidates: list[SlotKey], address: str, *, allow_job: bool = False
) -> list[SlotKey]:
    """JOB/GROUP/INDEX/TASK, or JOB/TASK when one group instance has that task
    (or JOB alone where allowed). Errors list the candidates. A child job's name has a slash
    (`backup/periodic-1767225600`): an address that names it, or one of its tasks, is taken
    as it is before the parts are counted."""
    if exact := [k for k in candidates if str(k) == address]:
        return exact
    if allow_job and (whole := [k for k in candidates if k.job == address]):
        return whole
    job, _, task = address.rpartition("/")
    found = [k for k in candidates if k.job == job and k.task == task] if "/" in job else []
    if len(found) == 1:
        return found
    parts = address.split("/")
    if len(parts) == 4:
        try:
            key = SlotKey(parts[0], parts[1], int(parts[2]), parts[3])
        except ValueError:
            fail(f"{address!r}: the index must be a number (JOB/GROUP/INDEX/TASK)", USAGE)
        if key in candidates:
            return [key]
        near = [str(k) for k in candidates if k.job == key.job]
        fail(
            f"no task {address}" + (f"; the job has: {', '.join(near)}" if near else ""), NOT_FOUND
        )
    if len(parts) == 2:
        found = [k for k in candidates if k.job == parts[0] and k.task == parts[1]]
        if len(found) == 1:
            return found
        if found:
            fail(f"{address!r} is ambiguous: " + ", ".join(str(k) for k in found)
                 + " (use JOB/GROUP/INDEX/TASK)", USAGE)  # fmt: skip
        near = [str(k) for k in candidates if k.job == parts[0]]
        fail(
            f"no task {address}" + (f"; the job has: {', '.join(near)}" if near else ""), NOT_FOUND
        )
    if len(parts) == 1 and allow_job:
        found = [k for k in candidates if k.job == parts[0]]
        if found:
            return found
        fail(f"no job {address!r}", NOT_FOUND)
    fail(f"{address!r} is not a task address (JOB/TASK or JOB/GROUP/INDEX/TASK)", USAGE)
