"""`reconciler audit [JOB]`: node settings that open a way out of tasks, and which tasks of a
job run with weakened isolation, and how."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reconciler.audit import Finding, audit_node
from reconciler.audit import audit as run_audit
from reconciler.cli import DataDir, Json, app, load_node
from reconciler.cli.common import NOT_FOUND, console, data_dir, emit_json, fail
from reconciler.spec.load import Loader


@app.command()
def audit(
    job: Annotated[str | None, typer.Argument(help="Job ID (omit for the node alone)")] = None,
    jobs: Annotated[Path, typer.Option("--jobs", help="Job directory")] = Path("jobs"),
    config: Annotated[Path | None, typer.Option("--config", help="Node configuration file")] = None,
    data: DataDir = None,
    as_json: Json = False,
) -> None:
    """Node settings that re-open a way out of tasks, then each isolation property of a job's
    tasks, with an exposure rating (0 = best, 10 = none)."""
    node = load_node(config)
    node_findings = audit_node(node, data_dir(data))
    results = []
    if job is not None:
        spec = Loader(jobs).scan().jobs.get(job)
        if spec is None:
            fail(f"no valid job {job!r} in {jobs}", NOT_FOUND)
        results = run_audit(spec.job, node)
    if as_json:
        tasks = [
            {"task": r.task, "score": r.score, "rating": r.rating,
             "findings": [f.__dict__ for f in r.findings]}
            for r in results
        ]  # fmt: skip
        emit_json(tasks if job is not None else {"node": [f.__dict__ for f in node_findings]})
        return
    if job is None or node_findings:
        _print("node", "nothing re-opens a way out" if not node_findings else
               f"{len(node_findings)} setting(s) to review", node_findings, bool(node_findings))  # fmt: skip
    for r in results:
        _print(f"{job}/{r.task}", f"exposure {r.score}/10 {r.rating}", r.findings,
               r.rating not in ("OK", "MEDIUM"), r.rating == "MEDIUM")  # fmt: skip


def _print(name: str, summary: str, findings: Sequence[Finding], bad: bool,
           warn: bool = False) -> None:  # fmt: skip
    colour = "red" if bad else "yellow" if warn else "green"
    line = f"{name}: {summary}"
    console.print(f"[bold {colour}]{line}[/]" if console.is_terminal else line)
    if not findings:
        return
    table = Table(box=None, pad_edge=False)
    for col in ("property", "value", "exposure", "note"):
        table.add_column(col)
    for f in findings:
        table.add_row(f.prop, f.value, f"{f.exposure:g}", f.note)
    console.print(table)
