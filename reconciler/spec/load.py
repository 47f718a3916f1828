"""A directory of job files -> Desired: valid jobs plus every located problem of every file.

Parses are cached by content hash, so a rescan of unchanged files only stats them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from reconciler.spec import hcl, hclbody, interpolate, jobdir, services, template_source
from reconciler.spec.hclfiles import JobDirectory
from reconciler.spec.models import Job, JobFile
from reconciler.spec.normalize import IGNORED, normalize
from reconciler.spec.problems import Problem
from reconciler.spec.template import Workload, check_template

MAX_FILE_BYTES = 1 << 20
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
JOB_SUFFIXES = (".hcl", ".nomad")
VARS_SUFFIX = ".vars.hcl"
GIT_LOCKS = ("index.lock", "HEAD.lock")
LIST_EVERY = 300.0  # with a watcher, the whole directory is still listed this often
_NO_LINK = (0,) * 6  # the length of a key that is not a symlink's


def is_job_file(name: str) -> bool:
    """`*.hcl`, `*.nomad`, `*.nomad.hcl`. Var files (`*.vars.hcl`) are not job files, nor are
    dot files (vim's `.x.hcl.swp`, emacs' `.#x.hcl` lock links, the `.x.hcl.tmp` of an atomic
    rename), `*~` backups and `#x.hcl#` autosaves."""
    if name.startswith((".", "#")) or name.endswith(("~", ".swp", ".tmp", VARS_SUFFIX)):
        return False
    return name.endswith(JOB_SUFFIXES)


def is_watched_file(name: str) -> bool:
    """A file whose change can change a job: a job file, a var file, or a file a job file
    reads (a template source, a file() input): anything but dot files and editor temporaries."""
    return not name.startswith((".", "#")) and not name.endswith(("~", ".swp", ".tmp"))


def vars_file_for(job_file: str) -> str:
    """The var file of a job file, beside it: web.nomad.hcl, web.hcl, web.nomad -> web.vars.hcl."""
    stem = job_file
    for suffix in (".nomad.hcl", ".hcl", ".nomad"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + VARS_SUFFIX


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


def parse_text(text: str, file: str, inputs: hclbody.Inputs | None = None) -> FileResult:
    """One file's text -> its jobs and problems. Pure but for `inputs` (var files, file())."""
    inputs = inputs or hclbody.Inputs()
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
    if hclbody.needs_evaluation(parsed.tree):  # HCL2: variables, locals, functions, ...
        if not positions:  # the evaluator reads each expression's text: it needs positions
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
                    excerpt=hcl._excerpt(text, p.line, p.column)
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
            add(loc, _message(err, loc))
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
        ports = list(group.network.port)
        yield from services.problems(job_id, gname, group, gp)
        for label, port in group.network.port.items():
            if group.network.mode == "bridge" and port.to is None and port.static is None:
                yield (*gp, "network", "port", label), "a port needs static or to"
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


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        ignored = IGNORED.get(_kind_at(loc[:-1]), {})
        close = difflib.get_close_matches(str(loc[-1]), sorted(set(known) | set(ignored)), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        return f'unknown field "{loc[-1]}"{hint}'
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"').replace('"", ', "")
        return f"must be {expected}"
    simple = {
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "bool_type": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a block or map",
        "model_type": "must be a block",
        "float_type": "must be a number",
    }
    if kind in simple:
        msg = simple[kind]
        if isinstance(err.get("input"), str) and "${" in err["input"]:
            msg += f" (got {err['input'][:60]!r}: a runtime reference cannot be used here)"
        return msg
    if kind in ("greater_than_equal", "less_than_equal", "too_short", "too_long"):
        if kind == "too_short" and loc and loc[-1] in ("group", "task"):
            return f"needs at least one {loc[-1]} block"
        if kind == "too_long" and loc == ("job",):
            return "a file holds exactly one job"
        return str(err["msg"]).replace("Input should be", "must be")
    return str(err["msg"]).removeprefix("Value error, ")


_LABELLED_KEYS = {"job", "group", "task", "port"}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = JobFile
    i = 0
    while model is not None and i < len(loc):
        info = model.model_fields.get(str(loc[i]))
        if info is None:
            return None
        ann = info.annotation
        i += 1
        while get_origin(ann) in (dict, list) or (get_origin(ann) is not None and get_args(ann)):
            args = [a for a in get_args(ann) if a is not type(None)]
            if get_origin(ann) in (dict, list):
                ann = args[-1]
                i += 1
            else:
                ann = args[0]
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _kind_at(loc: tuple[Any, ...]) -> str:
    names = [x for x in loc if isinstance(x, str)]
    for i in range(len(names) - 1, -1, -1):
        if names[i] in _LABELLED_KEYS and i == len(names) - 2:
            return names[i]
        if names[i] in ("network", "resources", "template", "artifact"):
            return names[i]
    return ""


@dataclass
class Loader:
    """Scans one directory. Keeps parses keyed by content hash across scans.

    `scan` belongs to one thread; `warm` may run on another, ahead of the scan."""

    root: Path
    # NOMAD_VAR_* of the service's environment (read once, at start)
    env: Mapping[str, str] = field(
        default_factory=lambda: {k: v for k, v in os.environ.items() if k.startswith("NOMAD_VAR_")}
    )
    extra_roots: tuple[str, ...] = ()  # host dirs absolute template sources may name
    _by_stat: dict[str, tuple[Any, FileResult]] = field(default_factory=dict)
    _by_digest: dict[str, FileResult] = field(default_factory=dict)
    # job file name -> the other files its result was made from (var file, file() reads)
    _inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _last: Desired | None = None
    _last_key: dict[str, Any] | None = None
    _reading: threading.Lock = field(default_factory=threading.Lock)
    # what a watcher saw change (spec/jobdir.py): with it, a scan stats only those entries
    journal: jobdir.Journal = field(default_factory=jobdir.Journal)
    _listed: dict[str, jobdir.Key | None] | None = None  # every entry, as the last scan saw it
    _listed_at: float = 0.0  # when the directory was last listed in full
    _dir: tuple[int, ...] = ()  # the directory's identity and mtime then
    _changed: set[str] = field(default_factory=set)  # entries the last scan found changed
    _var_of: dict[str, str] = field(default_factory=dict)  # job file -> its var file's name
    _files: dict[str, FileResult] = field(default_factory=dict)  # the last scan's, unassembled
    _shown: dict[str, str] = field(default_factory=dict)  # file name -> as problems show it

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def _namer(self) -> Callable[[str], str]:
        """File name -> the name problems and history show (relative to the cwd if inside)."""
        shown = self.display(self.root)
        return (lambda n: n) if shown == "." else (lambda n: os.path.join(shown, n))

    def _entries(self) -> dict[str, jobdir.Key | None]:
        """Every job file and var file with its entry's key; raises OSError for the directory.
        With a watcher's journal only the entries it names (and symlinks, whose targets it
        cannot see) are looked at; the whole directory is listed at first, after missed
        events, when the directory was replaced, and every LIST_EVERY seconds."""
        names = self.journal.take()
        st = os.stat(self.root)
        ident = (st.st_ino, st.st_dev, st.st_mtime_ns)
        old = self._listed
        if (
            names is None or old is None or ident[:2] != self._dir[:2]
            or time.monotonic() - self._listed_at > LIST_EVERY
            or (not names and ident != self._dir)  # entries came or went, unseen
        ):  # fmt: skip
            entries = dict(jobdir.listing(self.root, is_watched_file))
            self._listed_at = time.monotonic()
            self._changed = {n for n in entries.keys() | (old or {}).keys()
                             if entries.get(n) != (old or {}).get(n)}  # fmt: skip
        else:
            entries = dict(old)
            links = {n for n, k in old.items() if k is not None and len(k) > len(_NO_LINK)}
            self._changed = set()
            for name in names | links:
                if not is_watched_file(name):
                    continue
                key = jobdir.stat_entry(self.root, name)
                if key != entries.get(name):
                    self._changed.add(name)
                if key is None:
                    entries.pop(name, None)
                else:
                    entries[name] = key
        self._listed, self._dir = entries, ident
        return entries

    def _keys(self, entries: Mapping[str, jobdir.Key | None]) -> dict[str, Any]:
        """Each job file's key: its entry's, with those of the files it was made from (its var
        file, what file() read)."""
        out: dict[str, Any] = {}
        var_of = self._var_of
        for name, key in entries.items():
            var = var_of.get(name)
            if var is None:
                if not is_job_file(name):
                    continue
                var = var_of[name] = vars_file_for(name)
            if name in self._inputs:
                out[name] = (key, self._inputs_key(name, entries))
            else:  # not read yet, or made from its var file alone
                out[name] = (key, (entries.get(var),))
        return out

    def _inputs_key(self, name: str, entries: Mapping[str, jobdir.Key | None]) -> tuple[Any, ...]:
        root = str(self.root)
        inputs = self._inputs.get(name, (vars_file_for(os.path.join(root, name)),))
        if inputs == (vars_file_for(os.path.join(root, name)),):
            self._inputs.pop(name, None)  # the common case: `_keys` knows it without paths
            return (entries.get(self._var_of.get(name) or vars_file_for(name)),)
        return tuple(
            entries.get(base)  # a var file: listed with the job files, no stat of its own
            if os.path.dirname(p) == root and is_watched_file(base := os.path.basename(p))
            else _stat_of(p)
            for p in inputs
        )

    def settled(self) -> bool:
        """Whether the directory still looks as the last scan found it (a `git checkout`
        still writing files does not)."""
        if any(os.path.lexists(os.path.join(self.root, ".git", f)) for f in GIT_LOCKS):
            return False  # git is writing the work tree (and moves HEAD last)
        journal = self.journal
        if journal.attached and self._listed is not None and self._last_key is not None:
            # Events may lag a write: what the last scan saw change, and the directory's own
            # mtime (an entry made, renamed or removed), are looked at directly.
            notes = journal.notes
            try:
                st = os.stat(self.root)
            except OSError:
                return False
            if (st.st_ino, st.st_dev, st.st_mtime_ns) != self._dir:
                return False
            for name in self._changed:
                if jobdir.stat_entry(self.root, name) != self._listed.get(name):
                    return False
            return notes == self._notes_seen
        try:
            return self._keys(dict(jobdir.listing(self.root, is_watched_file))) == self._last_key
        except OSError:
            return self._last_key is None

    _notes_seen = -1

    def scan(self) -> Desired:
        try:
            self._notes_seen = self.journal.notes
            entries = self._entries()
        except OSError as e:
            self._last_key = self._listed = None
            return Desired(
                MappingProxyType({}),
                MappingProxyType({}),
                directory_ok=False,
                directory_error=f"{self.root}: {e.strerror or e}",
            )
        keys = self._keys(entries)
        if self._last is not None and keys == self._last_key:
            return self._last
        named = self._namer()
        last = self._last_key
        if self._last is not None and last is not None and keys.keys() == last.keys():
            files, seen = dict(self._files), dict(last)  # the same entries: read the changed
            todo = [base for base, key in keys.items() if key != last[base]]
        else:
            files, seen, todo = {}, {}, sorted(keys)  # (sorting 10,000 names: 3 ms)
        for base in todo:
            key, name = keys[base], self._shown.get(base) or named(base)
            if key[0] is None:  # gone between listing and stat
                files.pop(name, None)
                seen.pop(base, None)
                continue
            cached = self._by_stat.get(name)
            if cached is not None and cached[0] == key:
                files[name] = cached[1]
                seen[base] = key
                continue
            with self._reading:  # a `warm` of this file finishes first, then is a cache hit
                result = self._read(self.root / base, name)
            files[name] = result
            seen[base] = key = (key[0], self._inputs_key(base, entries))  # known now
            self._by_stat[name] = (key, result)
        if len(self._by_stat) > len(files):
            self._by_stat = {k: v for k, v in self._by_stat.items() if k in files}
        self._shown = (
            {base: named(base) for base in seen} if len(todo) == len(keys) else self._shown
        )
        desired = assemble(files)
        self._last, self._last_key, self._files = desired, seen, files
        return desired

    def warm(self, path: Path) -> None:
        """Parse one file into the cache, so that the next scan finds it done."""
        if not is_job_file(path.name):
            return  # a var file: the scan reads its job file again
        with self._reading:
            self._read(path, self._namer()(path.name))

    def _read(self, path: Path, name: str) -> FileResult:
        def fail(message: str) -> FileResult:
            return FileResult(name, "", (), (Problem(name, None, "", message),))

        data = _read_limited(path)
        if isinstance(data, str):
            return fail(data)
        vars_path = vars_file_for(str(path))
        var_data = _read_limited(Path(vars_path)) if os.path.lexists(vars_path) else b""
        if isinstance(var_data, str):
            return fail(f"{self._namer()(os.path.basename(vars_path))}: {var_data}")
        digest = hashlib.sha256(data).hexdigest()
        env = repr(sorted(self.env.items())).encode()
        key = digest + hashlib.sha256(var_data + b"\0" + env).hexdigest() + name
        if (hit := self._by_digest.get(key)) is not None:
            return hit
        try:
            text = data.decode("utf-8-sig")
            var_text = var_data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            return fail(
                f"not UTF-8 text (byte 0x{(data + var_data)[e.start]:02x} at offset {e.start})"
            )
        if "\x00" in text or "\x00" in var_text:
            return fail("file contains a NUL byte: not a text file")
        var_name = self._namer()(os.path.basename(vars_path))
        directory = JobDirectory(str(self.root), str(path.parent), extra_roots=self.extra_roots)
        inputs = hclbody.Inputs(
            env=self.env,
            var_files=(hclbody.VarFile(var_name, var_text),) if var_data else (),
            var_file_hint=var_name,
            directory=directory,
        )
        try:
            result = parse_text(text, name, inputs)
        except Exception as e:  # a bug or an exhausted resource: this file only, not the scan
            return fail(f"could not be read ({type(e).__name__}: {e}); please report this")
        self._inputs[path.name] = (vars_path, *sorted(directory.read_paths))
        if directory.read_paths:
            return result  # file() contents are not in `key`: re-read when their stat changes
        if len(self._by_digest) > 20000:
            self._by_digest.clear()
        self._by_digest[key] = result
        return result


def _stat_of(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _read_limited(path: Path) -> bytes | str:
    """The bytes of a regular file, or why not (a message); never a blocking open."""
    try:
        data = jobdir.read(path.parent, path.name, MAX_FILE_BYTES)
    except jobdir.Refused as e:
        return str(e)
    if len(data) > MAX_FILE_BYTES:
        return f"file is larger than {MAX_FILE_BYTES // 1024} KiB; refused"
    return data


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


def load_paths(paths: Iterable[Path]) -> Desired:
    """For `validate`: files and directories named on the command line."""
    files: dict[str, FileResult] = {}
    for p in paths:
        if p.is_dir():
            files.update(Loader(p).scan().files)
        else:
            loader = Loader(p.parent)
            name = loader.display(p)
            files[name] = loader._read(p, name)
    return assemble(files)
