"""Live views: `reconciler events [-f]` and the follow half of `reconciler logs -f`. Both wait
on inotify (watchdog), so a quiet task or a quiet machine costs nothing while followed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.cli import DataDir, Json, app
from reconciler.cli.common import console, data_dir, db_path, read_store
from reconciler.db import reads
from reconciler.db.snapshot import SlotKey
from reconciler.service.follow import Changes, LogTail, log_dir, store_files


def follow_log(data: Path, key: SlotKey, stream: str, shown: tuple[int, int] | None) -> None:
    """Print what the task writes after `shown` (file number, bytes of it already printed),
    across rotations, until interrupted."""
    directory = log_dir(data, key.job, key.group, key.idx)
    out = sys.stdout.buffer
    try:
        with Changes(directory) as changes:
            tail = LogTail(directory, key.task, stream)
            if shown is not None:
                tail.index, tail.pos = shown
            while True:
                chunk = tail.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                    continue
                changes.wait(60)
    except KeyboardInterrupt:
        return


def _line(e: dict[str, Any]) -> str:
    from reconciler.cli.ops import _when

    where = f"{e['job_id']}/{e['group_name']}/{e['idx']}/{e['task']}" if e["task"] else e["job_id"]
    return f"{_when(e['at'])}  {where}  {e['type']}: {e['message']}"


@app.command()
def events(
    job: Annotated[str | None, typer.Argument(help="Only this job's events")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new events")] = False,
    last: Annotated[int, typer.Option("--last", help="Start with the last N events")] = 20,
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """Task and job events as they happen (one JSON object a line with --json)."""
    d = data_dir(data)
    store = read_store(d)

    def show(rows: list[dict[str, Any]]) -> None:
        for e in rows:
            if as_json:
                sys.stdout.write(json.dumps(e) + "\n")
            else:
                console.print(_line(e), markup=False)
        sys.stdout.flush()

    rows = reads.task_events(store, job, limit=max(last, 0), newest=True) if last > 0 else []
    show(rows)
    if not follow:
        return
    after = rows[-1]["id"] if rows else reads.last_event_id(store)
    try:
        with Changes(db_path(d).parent, store_files(db_path(d))) as changes:  # commits
            while True:
                new = reads.task_events(store, job, after=after, limit=1000)
                if new:
                    after = new[-1]["id"]
                    show(new)
                    continue
                changes.wait(60)
    except KeyboardInterrupt:
        return
