"""What the job directory asks for: each file's result, and the jobs they define together."""

from __future__ import annotations

import functools
import json
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.spec.models import Job
from reconciler.spec.problems import Problem
from reconciler.spec.sharing import share


@dataclass(frozen=True, init=False, slots=True)
class JobSpec:
    """One valid job as read from one file."""

    id: str
    job: Job
    file: str
    digest: str
    packed: bytes  # the canonical JSON, deflated against a job of defaults (see `canonical`)

    def __init__(self, id: str, job: Job, file: str, digest: str, canonical: str | None = None,
                 *, packed: bytes | None = None) -> None:  # fmt: skip
        """`canonical` (or `packed`, as `dataclasses.replace` passes it) is the job's JSON."""
        if packed is None:
            if canonical is None:
                raise TypeError("JobSpec needs the job's canonical JSON")
            packed = _pack(canonical)
        # the id and digest interned: the pass's snapshot interns the ones it reads from the
        # store (db/store.py), and then holds these very strings
        object.__setattr__(self, "id", sys.intern(id))
        object.__setattr__(self, "job", share(job))  # its parts equal to other jobs' held once
        object.__setattr__(self, "file", file)
        object.__setattr__(self, "digest", sys.intern(digest))
        object.__setattr__(self, "packed", packed)

    @property
    def canonical(self) -> str:
        """The job as JSON (what `digest` hashes): read when a version is recorded or a parse
        kept, so it is held deflated (800 bytes -> ~100 for a small job)."""
        inflate = zlib.decompressobj(-15, zdict=_defaults())
        return (inflate.decompress(self.packed) + inflate.flush()).decode()


@functools.cache
def _defaults() -> bytes:
    """A job of defaults as canonical JSON: the words most jobs' JSON repeats."""
    task = {"driver": "exec", "config": {"command": "/bin/sh"}}
    return canonical_json(Job.model_validate({"group": {"g": {"task": {"t": task}}}})).encode()


def _pack(canonical: str) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _defaults())
    return deflate.compress(canonical.encode()) + deflate.flush()


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
    noted: frozenset[str] | None = None  # the files with problems, when known

    @property
    def problems(self) -> list[Problem]:
        if self.noted is not None:  # a few files of many: not a walk over every file
            return sorted(p for name in self.noted for p in self.files[name].problems)
        return sorted(p for f in self.files.values() for p in f.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def canonical_json(job: Job) -> str:
    return json.dumps(job.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def assemble(files: Mapping[str, FileResult]) -> Desired:
    """Per-file results -> Desired; a job defined by two files is held and both are told."""
    assembly = Assembly()
    assembly.update(files)
    return assembly.desired()


class Assembly:
    """Desired kept up to date file by file, so that one changed file among 10,000 costs what
    it touches: the jobs it defines (or defined), and the other files that define them too."""

    def __init__(self) -> None:
        self.raw: dict[str, FileResult] = {}  # each file as parsed
        self.final: dict[str, FileResult] = {}  # as Desired shows it (duplicates noted)
        # job id -> the files defining it, in order (a tuple: nearly always one file)
        self.owners: dict[str, tuple[str, ...]] = {}
        self.jobs: dict[str, JobSpec] = {}
        self.held: set[str] = set()
        self.broken: set[str] = set()
        self.noted: set[str] = set()  # files with problems

    def update(self, changes: Mapping[str, FileResult | None]) -> set[str]:
        """Files changed (None: gone). Returns the ids of the jobs that may have changed."""
        ids: set[str] = set()
        for name, result in changes.items():
            old = self.raw.pop(name, None)
            for spec in old.jobs if old is not None else ():
                ids.add(spec.id)
                names = tuple(n for n in self.owners[spec.id] if n != name)
                if names:
                    self.owners[spec.id] = names
                else:
                    del self.owners[spec.id]
            if result is not None:
                self.raw[name] = result
                for spec in result.jobs:
                    ids.add(spec.id)
                    names = self.owners.get(spec.id, ())
                    if name not in names:
                        self.owners[spec.id] = (*names, name)
        touched = dict.fromkeys(changes)
        for job_id in ids:
            touched.update(dict.fromkeys(self.owners.get(job_id, ())))
        for name in touched:
            result = self.raw.get(name)
            if result is None:
                self.final.pop(name, None)
                self.broken.discard(name)
                self.noted.discard(name)
                continue
            final = self.final[name] = self._noted(name, result)
            (self.broken.discard if final.ok else self.broken.add)(name)
            (self.noted.add if final.problems else self.noted.discard)(name)
        for job_id in ids:
            names = self.owners.get(job_id, ())
            (self.held.add if len(names) > 1 else self.held.discard)(job_id)
            if len(names) == 1:
                self.jobs[job_id] = next(
                    s for s in self.raw[next(iter(names))].jobs if s.id == job_id
                )
            else:
                self.jobs.pop(job_id, None)
        return ids

    def _noted(self, name: str, result: FileResult) -> FileResult:
        """A file's result with a problem for each job another file defines too."""
        twice = [s.id for s in result.jobs if len(self.owners.get(s.id, ())) > 1]
        if not twice:
            return result
        line = next((p.line for p in result.problems if p.line), None)
        notes = tuple(
            Problem(
                name, line, f"job.{job_id}", f"job is also defined in {others}; neither is applied"
            )
            for job_id in twice
            for others in [", ".join(sorted(n for n in self.owners[job_id] if n != name))]
        )
        jobs = tuple(s for s in result.jobs if s.id not in twice)
        return FileResult(result.path, result.digest, jobs, (*result.problems, *notes))

    def desired(self) -> Desired:
        """A snapshot: other threads may read it while the assembly moves on."""
        return Desired(
            MappingProxyType(dict(self.jobs)),
            MappingProxyType(dict(self.final)),
            frozenset(self.held),
            frozenset(self.broken),
            noted=frozenset(self.noted),
        )
