"""`template { source }`: the template's text read from a file beside the job file.

Nomad reads `source` on the client, relative to the task directory, at render time. Job files
here are the truth and live in a directory people push with git, so a relative `source` names a
file relative to the job file's directory (inside the job directory, links included: a job file
cannot render /etc/shadow into a task). Its text becomes the template's `data`, so a changed
source file changes the job version and re-renders per `change_mode`, and the loader re-reads
the job file when the source file changes. A source in the task's own directories (`local/`,
`alloc/`, `secrets/`, `tmp/` or `${NOMAD_*}`: a file an artifact fetched, in Nomad) is refused.
"""

from __future__ import annotations

from typing import Any

from reconciler.spec.hclexpr import FunctionError
from reconciler.spec.hclfiles import JobDirectory

TASK_DIRS = ("local/", "alloc/", "secrets/", "tmp/")

Path = tuple[str | int, ...]


def resolve(body: dict[str, Any], directory: JobDirectory | None) -> list[tuple[Path, str]]:
    """Fill `data` of every template with a `source`, in place; the problems found."""
    problems: list[tuple[Path, str]] = []
    for job_id, job in _items(body.get("job")):
        for gname, group in _items(job.get("group")):
            for tname, task in _items(group.get("task")):
                templates = task.get("template")
                for i, t in enumerate(templates if isinstance(templates, list) else []):
                    if not isinstance(t, dict) or "source" not in t:
                        continue
                    path: Path = ("job", job_id, "group", gname, "task", tname, "template", i,
                                  "source")  # fmt: skip
                    if why := _fill(t, directory):
                        problems.append((path, why))
    return problems


def _items(val: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in val.items() if isinstance(v, dict)] if isinstance(val, dict) else []


def _fill(t: dict[str, Any], directory: JobDirectory | None) -> str:
    source = t["source"]
    if not isinstance(source, str) or not source:
        return "must be a path to a template file"
    if "data" in t:
        return "set exactly one of data or source"
    if source.startswith(TASK_DIRS) or "${" in source:
        return (f'"{source}" is in the task\'s directories: reconciler reads a template source '
                "from beside the job file (fetched files cannot be templates yet)")  # fmt: skip
    if directory is None:
        return "a template source is read from the job directory; none is known here"
    try:
        data = directory.read(source)
    except FunctionError as e:
        return str(e)
    try:
        t["data"] = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return f'"{source}" is not UTF-8 text'
    return ""
