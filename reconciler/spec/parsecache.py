"""Parse results kept across service restarts, so a start with 1,000 unchanged job files parses
none of them (and does not load the HCL parser at all).

A result is found by a key that covers everything it was made from: the parser (a hash of
reconciler's spec sources and the versions of reconciler, python-hcl2, lark and pydantic), the file's name
and bytes, its var file's bytes, the service's NOMAD_VAR_* and the node's template_dirs. What a
file() call or a template source read is not known before the parse: each is kept in the row
with a hash of its bytes, and read again (confined as the parse confines it) before the row is
used. A row is text (JSON) with its own SHA-256: one that does not check, decode or validate is
ignored, never trusted, and the file is parsed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from reconciler.spec.desired import FileResult, JobSpec
from reconciler.spec.hclexpr import FunctionError
from reconciler.spec.hclfiles import JobDirectory
from reconciler.spec.models import Job
from reconciler.spec.problems import Problem

FORMAT = 1  # of a row's value


class Rows(Protocol):
    """Where rows are kept (the store: db/parsecache.py)."""

    def get_parses(self, keys: Sequence[str]) -> Mapping[str, tuple[str, str]]:
        """key -> (value, its SHA-256) for the keys found."""
        ...

    def put_parses(
        self, rows: Sequence[tuple[str, str, str]], keep: Collection[str] | None
    ) -> None:
        """Add (key, value, check) rows; with `keep`, every other row goes."""
        ...


@functools.lru_cache(maxsize=1)
def parser_version() -> str:
    """Changes whenever anything that turns text into a result may have changed."""
    return version_of(Path(__file__).parent)


def version_of(spec: Path) -> str:
    """The versions of the packages a parse and validation call, and every source under `spec`
    (gotemplate/ checks templates at validation)."""
    h = hashlib.sha256()
    # cron expressions, time zones and yamldecode too (an install may ship no .py)
    for dist in ("reconciler", "python-hcl2", "lark", "pydantic", "croniter", "tzdata", "PyYAML"):
        try:
            h.update(f"{dist}={importlib.metadata.version(dist)};".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist}=?;".encode())
    for source in sorted(spec.rglob("*.py")):
        h.update(str(source.relative_to(spec)).encode() + b"\0" + source.read_bytes() + b"\0")
    return h.hexdigest()


def key(
    name: str, digest: str, var_data: bytes, env: Mapping[str, str], roots: Sequence[str]
) -> str:
    """A row's key; `digest` is the SHA-256 of the file's bytes (hashed once, by the read)."""
    h = hashlib.sha256(parser_version().encode())
    for part in (name.encode(), digest.encode(), var_data, json.dumps(sorted(env.items())).encode(),
                 json.dumps(list(roots)).encode()):  # fmt: skip
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()


def fingerprints(directory: JobDirectory) -> list[tuple[str, str]] | None:
    """What the parse read, each with the SHA-256 of the bytes the parse itself read (not read
    again: a file changed since is then seen at the next scan); None when it read something
    that is not a plain file's bytes (fileset() lists a directory, fileexists() asks of a
    name) or read one file twice and got different bytes: such a result is not kept."""
    out = []
    for path in sorted(directory.read_paths):
        digest = directory.read_digests.get(path)
        if digest is None:
            return None
        out.append((path, digest))
    return out


def _digest_of(directory: JobDirectory, path: str) -> str | None:
    try:
        return hashlib.sha256(directory.read(path)).hexdigest()
    except (FunctionError, OSError):
        return None


def encode(result: FileResult, inputs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    value = json.dumps({
        "format": FORMAT,
        "path": result.path,
        "digest": result.digest,
        "jobs": [[s.id, s.file, s.canonical] for s in result.jobs],
        "problems": [[p.file, p.line, p.path, p.message, p.severity, p.column, p.excerpt]
                     for p in result.problems],
        "inputs": [list(i) for i in inputs],
    }, separators=(",", ":"))  # fmt: skip
    return value, hashlib.sha256(value.encode()).hexdigest()


def decode(value: str, check: str, directory: JobDirectory) -> tuple[FileResult, list[str]] | None:
    """A row's result and the paths it read, or None: the row is not to be used (corrupt,
    another format, or an input that changed)."""
    try:
        if hashlib.sha256(value.encode()).hexdigest() != check:
            return None
        row: Any = json.loads(value)
        if row["format"] != FORMAT:
            return None
        inputs = [(str(p), str(d)) for p, d in row["inputs"]]
        for path, digest in inputs:
            if _digest_of(directory, path) != digest:
                return None
        jobs = tuple(
            JobSpec(str(job_id), Job.model_validate_json(canonical), str(file),
                    hashlib.sha256(canonical.encode()).hexdigest(), canonical)
            for job_id, file, canonical in row["jobs"]
        )  # fmt: skip
        problems = tuple(
            Problem(str(f), _int(line), str(path), str(message), _severity(severity),
                    column=_int(column), excerpt=str(excerpt))
            for f, line, path, message, severity, column, excerpt in row["problems"]
        )  # fmt: skip
        return FileResult(str(row["path"]), str(row["digest"]), jobs, problems), [
            p for p, _ in inputs
        ]
    except Exception:  # any shape a damaged row may have: parse the file instead
        return None


def _int(x: Any) -> int | None:
    if x is None:
        return None
    if type(x) is not int:
        raise TypeError("not a whole number")
    return x


def _severity(x: Any) -> Any:
    if x not in ("error", "warning"):
        raise ValueError(f"not a severity: {x!r}")
    return x
