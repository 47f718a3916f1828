"""One job file's text -> its jobs and every located problem. Pure but for the inputs the
file reads (var files, file(), template sources)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from reconciler.spec import (
    fieldmessages,
    hcl,
    hclbody,
    interpolate,
    reschedule,
    services,
    template_source,
)  # fmt: skip
from reconciler.spec.desired import FileResult, JobSpec, canonical_json
from reconciler.spec.models import Job, JobFile, effective_reschedule
from reconciler.spec.normalize import normalize
from reconciler.spec.problems import Problem
from reconciler.spec.template import Workload, check_template

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# What makes a file HCL2 to evaluate (Parsed.needs_evaluation), seen without parsing: such a
# file is parsed once, with positions (the evaluator reads each expression's text). A miss
# costs only time: a file that needs evaluation after all is parsed again. (Linear: no
# pattern may span lines, so none rescans a run of blank lines.)
_LIKELY_HCL2 = re.compile(
    r"\$\{|%\{|\b(?:var|local)\.|^[ \t]*(?:variables?|locals)\b|\bdynamic[ \t]+\"|\w\(|<<-?[A-Za-z_]",
    re.M,
)


def parse_text(text: str, file: str, inputs: hclbody.Inputs | None = None) -> FileResult:
    """One file's text -> its jobs and problems. Pure but for `inputs` (var files, file())."""
    inputs = inputs or hclbody.Inputs()
    if _LIKELY_HCL2.search(text):  # the faster parse would only find it needs the other
        return _parse_text(text, file, True, inputs)
    try:
        result = _parse_text(text, file, False, inputs, untracked_eval=False)
    except _NeedsPositions:  # HCL2 expressions: one parse that tracks positions does it all
        return _parse_text(text, file, True, inputs)
    if any(p.line is None for p in result.problems):  # parse again, tracking positions
        result = _parse_text(text, file, True, inputs)
    return result


class _NeedsPositions(Exception):
    pass


def _parse_text(
    text: str,
    file: str,
    positions: bool,
    inputs: hclbody.Inputs | None = None,
    untracked_eval: bool = True,
) -> FileResult:
    inputs = inputs or hclbody.Inputs()
    digest = hashlib.sha256(text.encode()).hexdigest()
    if not text.strip():
        return FileResult(
            file, digest, (), (Problem(file, None, "", "file is empty: no job block"),)
        )
    try:
        parsed = hcl.parse(text, positions)
    except hcl.HclSyntaxError as e:
        return FileResult(
            file,
            digest,
            (),
            (Problem(file, e.line, "", e.message, column=e.column, excerpt=e.excerpt),),
        )
    if parsed.needs_evaluation:  # HCL2: variables, locals, functions, ...
        if not parsed.positions:  # the evaluator reads each expression's text: it needs positions
            if not untracked_eval:
                raise _NeedsPositions
            return _parse_text(text, file, True, inputs)
        evaluated = hclbody.evaluate(parsed, text, inputs)
        if evaluated.problems:
            located = (
                Problem(
                    p.file or file,
                    p.line,
                    p.what,
                    p.message,
                    column=p.column,
                    excerpt=hcl.excerpt(text, p.line, p.column)
                    if p.line and p.column and not p.file
                    else "",
                )
                for p in evaluated.problems
            )
            return FileResult(file, digest, (), tuple(sorted(located)))
        parsed.body = evaluated.body
    problems: list[Problem] = []

    def add(path: tuple[str | int, ...], message: str, severity: str = "error") -> None:
        where = ".".join(str(x) for x in path)
        problems.append(Problem(file, parsed.line_of(path), where, message, severity))  # type: ignore[arg-type]

    for path, line in parsed.duplicates:
        problems.append(Problem(file, line, ".".join(map(str, path)), "attribute is set twice"))
    body = parsed.body
    for key in body:
        if key != "job":
            add((key,), f'unexpected top-level block "{key}"; a job file holds one job block')
    norm = normalize({"job": body["job"]} if "job" in body else {})
    for found in norm.found:
        add(found.path, found.message, found.severity)
    for path, message in template_source.resolve(norm.body, inputs.directory):
        add(path, message)
    if "job" not in body:
        if not problems:
            add((), "no job block")
        return FileResult(file, digest, (), tuple(problems))
    try:
        model = JobFile.model_validate(norm.body)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            loc = tuple(err["loc"])
            add(loc, fieldmessages.message(err, loc))
        return FileResult(file, digest, (), tuple(problems))
    for job_id, job in model.job.items():
        for path, message in semantic_problems(job_id, job):
            add(path, message)
    if any(p.severity == "error" for p in problems):
        return FileResult(file, digest, (), tuple(problems))
    specs = tuple(
        JobSpec(job_id, job, file, hashlib.sha256(c.encode()).hexdigest(), c)
        for job_id, job in model.job.items()
        for c in [canonical_json(job)]
    )
    return FileResult(file, digest, specs, tuple(problems))


def semantic_problems(job_id: str, job: Job) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Rules that span fields: names, interpolation, lifecycle shape."""
    base: tuple[str | int, ...] = ("job", job_id)
    if not NAME.fullmatch(job_id):
        yield base, "job names use letters, digits, '_', '-' and '.' (at most 128)"
    for gname, group in job.group.items():
        gp = (*base, "group", gname)
        if not NAME.fullmatch(gname):
            yield gp, "group names use letters, digits, '_', '-' and '.'"
        if job.type == "system" and group.count > 1:  # at the count line (structs.go wording)
            yield ((*gp, "count"), f"Job task group {gname} has count {group.count}. "
                   "Count cannot exceed 1 with system scheduler")  # fmt: skip
        if (policy := effective_reschedule(job, group)) is not None:
            # at the group's block, else the job's (whose fields it took)
            at, who = ((*gp, "reschedule"), "") if group.reschedule else (
                (*base, "reschedule"), f"group {gname}: ")  # fmt: skip
            if group.reschedule or job.reschedule:
                for problem in reschedule.problems(policy):
                    yield at, who + problem
        ports = list(group.network.port)
        yield from services.problems(job_id, gname, group, gp)
        for tname, task in group.task.items():
            tp = (*gp, "task", tname)
            if not NAME.fullmatch(tname):
                yield tp, "task names use letters, digits, '_', '-' and '.'"
            env = list(task.env)
            strings: list[tuple[tuple[str | int, ...], str]] = [
                ((*tp, "config", "command"), task.config.command),
                ((*tp, "config", "work_dir"), task.config.work_dir),
            ]
            strings += [((*tp, "config", "args", i), a) for i, a in enumerate(task.config.args)]
            strings += [((*tp, "env", k), v) for k, v in task.env.items()]
            for i, t in enumerate(task.template):
                strings.append(((*tp, "template", i, "destination"), t.destination))
            for i, a in enumerate(task.artifact):
                ap = (*tp, "artifact", i)
                strings += [((*ap, "source"), a.source), ((*ap, "destination"), a.destination)]
                strings += [((*ap, "options", k), v) for k, v in a.options.items()]
                strings += [((*ap, "headers", k), v) for k, v in a.headers.items()]
            for path, text in strings:
                for ref in interpolate.references(text):
                    if why := interpolate.unresolvable(ref, ports=ports, env=env):
                        yield path, why
            for i, t in enumerate(task.template):
                if t.data is not None and (
                    why := check_template(t, workload=Workload(job_id, gname, tname))
                ):
                    yield (*tp, "template", i, "data"), why
    for path, c in _constraints(job_id, job):
        for text in (c.attribute, c.value):
            for ref in interpolate.references(text):
                if not ref.startswith(interpolate.NODE_PREFIXES):
                    yield path, f'"${{{ref}}}" is not a node attribute (attr.*, node.*, meta.*)'


def _constraints(job_id: str, job: Job) -> Iterable[tuple[tuple[str | int, ...], Any]]:
    base: tuple[str | int, ...] = ("job", job_id)
    for i, c in enumerate(job.constraint):
        yield (*base, "constraint", i), c
    for gname, group in job.group.items():
        for i, c in enumerate(group.constraint):
            yield (*base, "group", gname, "constraint", i), c
        for tname, task in group.task.items():
            for i, c in enumerate(task.constraint):
                yield (*base, "group", gname, "task", tname, "constraint", i), c
