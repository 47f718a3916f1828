"""What the job directory asks for: each file's result, and the jobs they define together."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.spec.models import Job
from reconciler.spec.problems import Problem


@dataclass(frozen=True)
class JobSpec:
    """One valid job as read from one file."""

    id: str
    job: Job
    file: str
    digest: str
    canonical: str


@dataclass(frozen=True)
class FileResult:
    path: str
    digest: str
    jobs: tuple[JobSpec, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


@dataclass(frozen=True)
class Desired:
    """What the job directory asks for. `held` jobs keep whatever runs now (their file is
    broken or another file defines them too); `broken_files` tells the loop which recorded
    jobs to hold because their file no longer reads."""

    jobs: Mapping[str, JobSpec]
    files: Mapping[str, FileResult]
    held: frozenset[str] = frozenset()
    broken_files: frozenset[str] = frozenset()
    directory_ok: bool = True
    directory_error: str = ""

    @property
    def problems(self) -> list[Problem]:
        return sorted(p for f in self.files.values() for p in f.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def canonical_json(job: Job) -> str:
    return json.dumps(job.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def assemble(files: Mapping[str, FileResult]) -> Desired:
    """Per-file results -> Desired; a job defined by two files is held and both are told."""
    owners: dict[str, list[str]] = {}
    for name, result in files.items():
        for spec in result.jobs:
            owners.setdefault(spec.id, []).append(name)
    final: dict[str, FileResult] = dict(files)
    held: set[str] = set()
    for job_id, names in owners.items():
        if len(names) < 2:
            continue
        held.add(job_id)
        for name in names:
            others = ", ".join(n for n in names if n != name)
            r = final[name]
            line = next((p.line for p in r.problems if p.line), None)
            final[name] = FileResult(
                r.path,
                r.digest,
                tuple(s for s in r.jobs if s.id != job_id),
                (
                    *r.problems,
                    Problem(
                        name,
                        line,
                        f"job.{job_id}",
                        f"job is also defined in {others}; neither is applied",
                    ),
                ),
            )
    jobs = {s.id: s for r in final.values() for s in r.jobs if s.id not in held}
    broken = frozenset(n for n, r in final.items() if not r.ok)
    return Desired(MappingProxyType(jobs), MappingProxyType(final), frozenset(held), broken)
