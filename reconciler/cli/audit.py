"""`reconciler audit JOB`: which tasks run with weakened isolation, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reconciler.audit import audit as run_audit
from reconciler.cli import Json, app, load_node
from reconciler.cli.common import NOT_FOUND, console, emit_json, fail
from reconciler.spec.load import Loader


@app.command()
def audit(
    job: Annotated[str, typer.Argument(help="Job ID")],
    jobs: Annotated[Path, typer.Option("--jobs", help="Job directory")] = Path("jobs"),
    config: Annotated[Path | None, typer.Option("--config", help="Node configuration file")] = None,
    as_json: Json = False,
) -> None:
    """Each isolation property of a job's tasks, with an exposure rating (0 = best, 10 = none)."""
    spec = Loader(jobs).scan().jobs.get(job)
    if spec is None:
        fail(f"no valid job {job!r} in {jobs}", NOT_FOUND)
    results = run_audit(spec.job, load_node(config))
    if as_json:
        emit_json([
            {"task": r.task, "score": r.score, "rating": r.rating,
             "findings": [f.__dict__ for f in r.findings]}
            for r in results
        ])  # fmt: skip
        return
    for r in results:
        colour = {"OK": "green", "MEDIUM": "yellow"}.get(r.rating, "red")
        line = f"{job}/{r.task}: exposure {r.score}/10 {r.rating}"
        console.print(f"[bold {colour}]{line}[/]" if console.is_terminal else line)
        table = Table(box=None, pad_edge=False)
        for col in ("property", "value", "exposure", "note"):
            table.add_column(col)
        for f in r.findings:
            table.add_row(f.prop, f.value, f"{f.exposure:g}", f.note)
        console.print(table)
