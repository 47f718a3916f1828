"""The `reconciler` command: run the service, check job files, and look inside."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from reconciler import __version__
from reconciler.cli.common import (
    DATA_DIR_HELP,
    FAILED,
    USAGE,
    console,
    data_dir,
    db_path,
    emit_json,
    err,
    fail,
)
from reconciler.db.snapshot import Observed
from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.service import start
from reconciler.service.start import node_config as node_config  # the CLI's verbs use it
from reconciler.spec.load import Loader, load_paths

app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Make this machine run exactly what a directory of Nomad job files says.")  # fmt: skip

DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _version(value: bool) -> None:
    if value:
        console.print(f"reconciler {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """reconciler: Nomad's exec driver semantics on one machine, driven by a directory."""


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"reconciler {__version__}")


def load_node(config: Path | None) -> NodeConfig:
    try:
        return start.load_node(config)
    except start.StartRefused as e:
        fail(str(e), e.code)


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Job files or directories")] = None,
    as_json: Json = False,
) -> None:
    """Check job files; print every problem of every file. Exit 1 on any error."""
    targets = paths or [Path("jobs")]
    for target in targets:
        if not target.exists():
            fail(f"{target}: no such file or directory", USAGE)
    desired = load_paths(targets)
    problems = desired.problems
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        emit_json({
            "ok": not errors,
            "jobs": sorted(desired.jobs),
            "files": len(desired.files),
            "problems": [p.as_dict() for p in problems],
        })  # fmt: skip
    else:
        for p in problems:
            style = "red" if p.severity == "error" else "yellow"
            text = str(p)
            (console if not errors else err).print(
                f"[{style}]{text}[/{style}]" if console.is_terminal else text
            )
        n = len(desired.files)
        summary = f"{n} file{'s' * (n != 1)}, {len(desired.jobs)} valid job{'s' * (len(desired.jobs) != 1)}"
        summary += f", {len(errors)} error{'s' * (len(errors) != 1)}"
        warnings = len(problems) - len(errors)
        if warnings:
            summary += f", {warnings} warning{'s' * (warnings != 1)}"
        (err if errors else console).print(summary)
    if errors:
        raise typer.Exit(FAILED)


@app.command("plan")
def plan_cmd(
    jobs: Annotated[Path, typer.Option("--jobs", help="Job directory")] = Path("jobs"),
    data: DataDir = None,
    config: Annotated[Path | None, typer.Option("--config", help="Node configuration file")] = None,
    as_json: Json = False,
) -> None:
    """Show what `run` would start, stop, restart or keep, per task instance."""
    from reconciler import plan as planner
    from reconciler.db.variables import VariableStore
    from reconciler.executor.linux.executor import LinuxExecutor
    from reconciler.plan import admission

    d = data_dir(data)
    desired = Loader(jobs, extra_roots=load_node(config).template_dirs).scan()
    observed = Observed()
    if db_path(d).exists():
        store = Store(db_path(d), readonly=True)
        observed = store.observed()
        observed = Observed(observed.jobs, observed.slots, frozenset(
            s.instance.id for s in observed.slots.values() if s.instance))  # fmt: skip
    node = load_node(config)
    fp = LinuxExecutor(d, node).fingerprint()
    host = planner.Host(dict(fp.attributes), fp.healthy,
                        admission.node_capacity(fp.attributes, node),
                        variables=VariableStore(d).versions(),
                        volumes={n: ro for n, (_, ro) in node.host_volumes.items()},
                        reserved_ports=node.reserved_ports)  # fmt: skip
    result = planner.plan(desired, observed, host, time.time())
    buckets = result.buckets()
    if as_json:
        emit_json(
            {
                name: [{"task": str(a.key), "reason": a.reason} for a in actions]
                for name, actions in buckets.items()
            }
            | {"errors": [p.as_dict() for p in desired.errors], "warnings": list(result.warnings)}
        )
        return
    marks = {"start": ("+", "green"), "stop": ("-", "red"), "restart": ("~", "yellow"),
             "rerender": ("~", "yellow"), "adopt": ("<", "cyan"), "keep": (" ", "dim"),
             "blocked": ("!", "magenta")}  # fmt: skip
    for name, actions in buckets.items():
        mark, colour = marks[name]
        for a in actions:
            line = f"{mark} {name:<8} {a.key}  {a.reason}"
            console.print(f"[{colour}]{line}[/{colour}]" if console.is_terminal else line)
    for p in desired.errors:
        err.print(str(p).splitlines()[0])
    for w in result.warnings:
        err.print(f"warning: {w}")
    counts = ", ".join(f"{len(v)} to {k}" for k, v in buckets.items() if v and k != "keep")
    console.print(f"Plan: {counts or 'no changes'}.")


@app.command()
def run(
    jobs: Annotated[Path, typer.Option("--jobs", help="Job directory")] = Path("jobs"),
    data: DataDir = None,
    config: Annotated[Path | None, typer.Option("--config", help="Node configuration file")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="human or json")] = "human",
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Allow a change that stops every job")
    ] = False,  # fmt: skip
    metrics_addr: Annotated[
        str | None,
        typer.Option("--metrics-addr", help="Serve Prometheus metrics, e.g. 127.0.0.1:9464"),
    ] = None,  # fmt: skip
    stuck_after: Annotated[
        float,
        typer.Option("--stuck-after", help="Report a pass running longer than this (seconds)"),
    ] = 30.0,  # fmt: skip
    http_addr: Annotated[
        str | None,
        typer.Option("--http-addr", help="Serve Nomad's HTTP API and the dashboard, e.g. 127.0.0.1:4646"),
    ] = None,  # fmt: skip
) -> None:
    """Run the service: keep this machine converged on the job directory."""
    # `reconciler run` itself starts through reconciler.entry, without this CLI; this is the
    # same service for callers of the typer app.
    try:
        start.serve(jobs, data, config, log_format, allow_empty, metrics_addr, stuck_after,
                    http_addr)  # fmt: skip
    except start.StartRefused as e:
        fail(str(e), e.code)


@app.command()
def node(
    data: DataDir = None,
    config: Annotated[Path | None, typer.Option("--config", help="Node configuration file")] = None,
    as_json: Json = False,
) -> None:
    """What isolation this host supports (and why not), and what tasks have reserved of it."""
    from reconciler.executor.linux.executor import LinuxExecutor
    from reconciler.plan import admission

    d = data_dir(data)
    node_cfg = load_node(config)
    ex = LinuxExecutor(d, node_cfg)
    fp = ex.fingerprint()
    cap = admission.node_capacity(fp.attributes, node_cfg)
    held = admission.ZERO
    held_ids: frozenset[int] = frozenset()
    if db_path(d).exists():
        obs = Store(db_path(d), readonly=True).observed()
        held = admission.Usage(*obs.held) if obs.held else admission.ZERO
        held_ids = obs.held_cores or frozenset()
    rows = admission.allocated_rows(cap, held) if cap else []
    core_ids = {  # which cores: tasks hold them exclusively, the node keeps its reserved ones
        "held": sorted(held_ids), "free": sorted(set(cap.usable_cores) - held_ids),
        "reserved": sorted(node_cfg.reserved_cores),
    } if cap else {}  # fmt: skip
    files = _file_limits(d, ex.fds_per_task)
    if as_json:
        emit_json({"healthy": fp.healthy, "description": fp.description,
                   "attributes": dict(fp.attributes),
                   "resources": {name: {"allocated": a, "available": v, "total": t,
                                        "reserved": r, "unit": u}
                                 for name, a, v, t, r, u in rows},
                   "core_ids": core_ids, "open_files": files,
                   "host_volumes": {n: {"path": p, "read_only": ro}
                                    for n, (p, ro) in sorted(node_cfg.host_volumes.items())}})  # fmt: skip
        return
    console.print(("healthy: " if fp.healthy else "unhealthy: ") + fp.description)
    if rows:
        console.print("allocated / available (total - reserved):")
        for name, a, avail, t, r, u in rows:
            console.print(f"  {name:<7} {a} / {avail} {u}  (total {t}, reserved {r})")
        console.print("  core ids: " + ", ".join(
            f"{k} {admission.core_list(v) or '-'}" for k, v in core_ids.items()))  # fmt: skip
    line = (f"open files: the service may use {files['service_limit']} (hard limit; soft "
            f"{files['soft']}), {files['per_task']} per task")  # fmt: skip
    if "service_in_use" in files:
        line += f"; the running service has {files['service_in_use']} of {files['service_limit']} open"
    console.print(line)
    if node_cfg.host_volumes:
        console.print("host volumes:")
        for n, (p, ro) in sorted(node_cfg.host_volumes.items()):
            console.print(f"  {n} = {p}" + ("  (read-only)" if ro else ""))
    for k, v in sorted(fp.attributes.items()):
        console.print(f"  {k} = {v}")


def _file_limits(data: Path, per_task: int) -> dict[str, int]:
    """This shell's descriptor limits, the service's (it raises soft to hard at start) and,
    when it runs, what it has open."""
    import resource

    from reconciler.service.control import NotRunning, call

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = {"soft": soft, "hard": hard, "service_limit": hard, "per_task": per_task}
    try:
        code, body = call(data, "state", timeout=3)
    except (NotRunning, OSError):
        return out
    if code == 200 and isinstance(body, dict) and "fds" in body:
        out["service_in_use"], out["service_limit"] = body["fds"]["in_use"], body["fds"]["limit"]
    return out


from reconciler.cli import audit as _audit  # noqa: E402  (registers `audit`)
from reconciler.cli import children as _children  # noqa: E402  (periodic force, dispatch)
from reconciler.cli import live as _live  # noqa: E402  (registers `events`)
from reconciler.cli import ops as _ops  # noqa: E402  (registers the operator verbs)
from reconciler.cli import services as _services  # noqa: E402  (registers `services`)
from reconciler.cli import variables as _variables  # noqa: E402  (registers `var`)

del _audit, _children, _live, _ops, _services, _variables


def main() -> None:
    app()
