"""A directory of job files -> Desired: valid jobs plus every located problem of every file.

Parses are cached by content hash, so a rescan of unchanged files only stats them. What one file
becomes is spec/parse.py; how the files' results make one Desired is spec/desired.py.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reconciler.spec import jobdir, parsecache
from reconciler.spec.desired import Assembly, Desired, FileResult, JobSpec, assemble, canonical_json
from reconciler.spec.hclfiles import JobDirectory
from reconciler.spec.jobdir import (
    JOB_SUFFIXES,
    VARS_SUFFIX,
    is_job_file,
    is_watched_file,
    vars_file_for,
)
from reconciler.spec.keptparses import KeptParses, Read
from reconciler.spec.problems import Problem

__all__ = [  # what the rest of reconciler imports from here
    "JOB_SUFFIXES", "MAX_FILE_BYTES", "VARS_SUFFIX", "Desired", "FileResult", "JobSpec", "Loader",
    "assemble", "canonical_json", "is_job_file", "is_watched_file", "load_paths", "parse_text",
    "vars_file_for",
]  # fmt: skip

MAX_FILE_BYTES = 1 << 20

GIT_LOCKS = ("index.lock", "HEAD.lock")
LIST_EVERY = 300.0  # with a watcher, the whole directory is still listed this often


def parse_text(text: str, file: str, inputs: Any = None) -> FileResult:
    """spec/parse.py's, imported on the first parse: python-hcl2 and lark (~12 MB resident)
    are not loaded by a service whose files all come from the parse cache."""
    from reconciler.spec import parse

    return parse.parse_text(text, file, inputs)


@dataclass
class Loader(KeptParses):
    """Scans one directory. Keeps parses keyed by content hash across scans.

    With a watcher's journal a scan costs what changed: it looks at the entries the journal
    names, the job files those can change (a var file's, a file() input's readers), and keeps
    Desired up to date file by file (spec/desired.py, Assembly). Everything is looked at again
    only when the whole directory is listed.

    `scan` belongs to one thread; `warm` may run on another, ahead of the scan."""

    root: Path
    # NOMAD_VAR_* of the service's environment (read once, at start)
    env: Mapping[str, str] = field(
        default_factory=lambda: {k: v for k, v in os.environ.items() if k.startswith("NOMAD_VAR_")}
    )
    extra_roots: tuple[str, ...] = ()  # host dirs absolute template sources may name
    _by_stat: dict[str, tuple[Any, FileResult]] = field(default_factory=dict)
    # file name -> (its content key, the result): a file touched but not changed is not parsed
    _by_digest: dict[str, tuple[bytes, FileResult]] = field(default_factory=dict)
    # job file name -> the other files its result was made from (var file, file() reads)
    _inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _last: Desired | None = None
    _last_key: dict[str, Any] | None = None  # job file -> its key as the last scan read it
    _reading: threading.Lock = field(default_factory=threading.Lock)
    # what a watcher saw change (spec/jobdir.py): with it, a scan stats only those entries
    journal: jobdir.Journal = field(default_factory=jobdir.Journal)
    _listed: dict[str, jobdir.Key | None] | None = None  # every entry, as the last scan saw it
    _listed_at: float = 0.0  # when the directory was last listed in full
    _dir: tuple[int, ...] = ()  # the directory's identity and mtime then
    _changed: set[str] = field(default_factory=set)  # entries the last scan found changed
    _git: tuple[int, ...] = ()  # `_git_state` at the last scan
    _links: set[str] = field(default_factory=set)  # symlinks: their targets are not watched
    _var_of: dict[str, str] = field(default_factory=dict)  # job file -> its var file's name
    _shown: dict[str, str] = field(default_factory=dict)  # file name -> as problems show it
    # file() inputs: an entry of the directory -> the job files that read it; job files that
    # read outside it (stat'ed on every scan: no watcher sees them)
    _readers: dict[str, set[str]] = field(default_factory=dict)
    _external: set[str] = field(default_factory=set)
    _assembly: Assembly = field(default_factory=Assembly)
    # the last scans' Desired (weakly) and the ids of the jobs each may have changed
    _log: list[tuple[weakref.ref[Desired], frozenset[str]]] = field(default_factory=list)
    # parse results kept in the store across restarts (spec/parsecache.py); None: not kept
    cache: parsecache.Rows | None = None
    _rows: dict[str, str] = field(default_factory=dict)  # file -> its row's key
    _unsaved: list[tuple[str, str, str]] = field(default_factory=list)
    _fetched: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    _rows_added = True  # since the last full listing: rows no file uses may be left

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def _namer(self) -> Callable[[str], str]:
        """File name -> the name problems and history show (relative to the cwd if inside)."""
        shown = self.display(self.root)
        return (lambda n: n) if shown == "." else (lambda n: os.path.join(shown, n))

    def _entries(self) -> tuple[dict[str, jobdir.Key | None], set[str] | None]:
        """Every job file and var file with its entry's key, and the names that may have
        changed since the last scan (None: the directory was listed, look at every entry);
        raises OSError for the directory. With a watcher's journal only the entries it names
        (and symlinks, whose targets it cannot see) are looked at; the whole directory is listed
        at first, after missed events, when the directory was replaced, and every LIST_EVERY
        seconds."""
        names = self.journal.take()
        st = os.stat(self.root)
        ident = (st.st_ino, st.st_dev, st.st_mtime_ns)
        old = self._listed
        git, self._git = self._git, self._git_state()
        if (
            names is None or old is None or ident[:2] != self._dir[:2]
            or time.monotonic() - self._listed_at > LIST_EVERY
            or (not names and ident != self._dir)  # entries came or went, unseen
            or git != self._git  # git moved the work tree: its events may still be on the way
        ):  # fmt: skip
            entries = dict(jobdir.listing(self.root, is_watched_file))
            self._listed_at = time.monotonic()
            self._changed = {n for n in entries.keys() | (old or {}).keys()
                             if entries.get(n) != (old or {}).get(n)}  # fmt: skip
            self._links = {
                n for n, k in entries.items() if k is not None and len(k) > jobdir.PLAIN
            }
            self._listed, self._dir = entries, ident
            return entries, None
        entries = old  # kept up to date in place: only the loop thread reads it
        self._changed = set()
        for name in names | self._links:
            if not is_watched_file(name):
                continue
            key = jobdir.stat_entry(self.root, name)
            if key != entries.get(name):
                self._changed.add(name)
            if key is None:
                entries.pop(name, None)
            else:
                entries[name] = key
            (
                self._links.add
                if key is not None and len(key) > jobdir.PLAIN
                else self._links.discard
            )(name)
        self._dir = ident
        return entries, self._changed

    def _key_of(self, name: str, entries: Mapping[str, jobdir.Key | None]) -> Any:
        """A job file's key: its entry's, with those of the files it was made from (its var
        file, what file() read)."""
        var = self._var_of.get(name)
        if var is None:
            var = self._var_of[name] = vars_file_for(name)
        if name in self._inputs:
            return (entries.get(name), self._inputs_key(name, entries))
        return (entries.get(name), (entries.get(var),))  # not read yet, or its var file alone

    def _keys(self, entries: Mapping[str, jobdir.Key | None]) -> dict[str, Any]:
        """Every job file's key."""
        var_of = self._var_of
        return {
            name: self._key_of(name, entries)
            for name in entries
            if name in var_of or is_job_file(name)
        }

    def _affected(self, names: set[str], entries: Mapping[str, jobdir.Key | None]) -> set[str]:
        """The job files whose key changed entries may have changed."""
        last = self._last_key or {}
        out = set(self._external)
        for name in names:
            if is_job_file(name):
                out.add(name)
            elif name.endswith(VARS_SUFFIX):
                stem = name[: -len(VARS_SUFFIX)]
                out.update(
                    job for suffix in (".hcl", ".nomad", ".nomad.hcl")
                    if (job := stem + suffix) in entries or job in last
                )  # fmt: skip
            out.update(self._readers.get(name, ()))
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

    def _index_inputs(self, name: str) -> None:
        """Which entries a job file read (a watcher names them), and whether it read outside
        the directory (stat'ed on every scan)."""
        for readers in self._readers.values():
            readers.discard(name)
        self._external.discard(name)
        root = str(self.root)
        for p in self._inputs.get(name, ())[1:]:  # the var file first: known by its name
            base = os.path.basename(p)
            if os.path.dirname(p) == root and is_watched_file(base):
                self._readers.setdefault(base, set()).add(name)
            else:
                self._external.add(name)

    def _git_state(self) -> tuple[int, ...]:
        """The job directory's git index and HEAD, when it is a work tree: a checkout writes
        many files and then replaces the index, faster than their events may arrive."""
        out: tuple[int, ...] = ()
        for name in ("index", "HEAD"):
            try:
                st = os.stat(os.path.join(self.root, ".git", name))
                out += (st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                out += (0,)
        return out

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
            if self._git_state() != self._git:  # git finished after the scan: list it all
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
            entries, names = self._entries()
        except OSError as e:
            self._last_key = self._listed = None
            return Desired(
                MappingProxyType({}),
                MappingProxyType({}),
                directory_ok=False,
                directory_error=f"{self.root}: {e.strerror or e}",
            )
        last = self._last_key
        if self._last is None or last is None:  # from nothing
            self._assembly, self._log, last = Assembly(), [], {}
            self._shown = {}
        if names is None:  # listed in full: every job file is looked at
            keys = self._keys(entries)
        else:
            keys = {base: self._key_of(base, entries) for base in self._affected(names, entries)}
        todo = [
            base for base, key in keys.items()
            if key != last.get(base) and (key[0] is not None or base in last)
        ]  # fmt: skip
        gone = [base for base in last if base not in entries] if names is None else []
        if self._last is not None and self._last_key is not None and not todo and not gone:
            return self._last
        named = self._namer()
        changes: dict[str, FileResult | None] = {}
        order = sorted(todo) + gone  # (sorting 10,000 names: 3 ms, at the first scan)
        for at in range(0, len(order), 500):  # the parse cache is asked once per 500 files
            batch = order[at : at + 500]
            read = self._read_batch(batch, keys)
            for base in batch:
                key, name = keys.get(base, (None,)), self._shown.get(base) or named(base)
                if key[0] is None:  # gone (or between listing and stat)
                    changes[name] = None
                    last.pop(base, None)
                    self._shown.pop(base, None)
                    self._forget(base, name)
                    continue
                cached = self._by_stat.get(name)
                if cached is not None and cached[0] == key:
                    result = cached[1]
                else:
                    with self._reading:  # a `warm` of this file finishes first: a cache hit
                        result = self._read(self.root / base, name, read=read.get(base))
                    key = (key[0], self._inputs_key(base, entries))  # known now
                    self._by_stat[name] = (key, result)
                    self._index_inputs(base)
                changes[name], last[base], self._shown[base] = result, key, name
        self._fetched.clear()
        self._flush(listed=names is None)
        ids = self._assembly.update(changes)
        desired = self._assembly.desired()
        self._log = [*self._log[-15:], (weakref.ref(desired), frozenset(ids))]
        self._last, self._last_key = desired, last
        return desired

    def _forget(self, base: str, name: str) -> None:
        """A job file is gone: nothing kept for it stays (a directory whose files come and go
        holds only what its files are now)."""
        self._by_stat.pop(name, None)
        self._by_digest.pop(name, None)
        self._rows.pop(name, None)
        self._var_of.pop(base, None)
        if self._inputs.pop(base, None) is not None:
            self._index_inputs(base)
        self._external.discard(base)

    def changed_since(self, earlier: Desired) -> frozenset[str] | None:
        """The ids of the jobs that may differ between `earlier` (a scan's) and the last scan's
        Desired; None when that is not known (compare every job)."""
        ids: set[str] = set()
        for ref, changed in reversed(self._log):
            if ref() is earlier:
                return frozenset(ids)
            ids |= changed
        return None

    def warm(self, path: Path) -> None:
        """Parse one file into the cache, so that the next scan finds it done."""
        if not is_job_file(path.name):
            return  # a var file: the scan reads its job file again
        with self._reading:  # (the store is read by the loop thread only)
            self._read(path, self._namer()(path.name), lookup=False)

    def _bytes_of(self, path: Path) -> Read | str:
        """A job file's bytes, its var file's path and bytes; or why not (a message)."""
        data = _read_limited(path)
        if isinstance(data, str):
            return data
        vars_path = vars_file_for(str(path))
        var_data = _read_limited(Path(vars_path)) if os.path.lexists(vars_path) else b""
        if isinstance(var_data, str):
            return f"{self._namer()(os.path.basename(vars_path))}: {var_data}"
        return data, hashlib.sha256(data).hexdigest(), vars_path, var_data

    def _read(
        self, path: Path, name: str, lookup: bool = True, read: Read | None = None
    ) -> FileResult:
        def fail(message: str) -> FileResult:
            return FileResult(name, "", (), (Problem(name, None, "", message),))

        got = read if read is not None else self._bytes_of(path)
        if isinstance(got, str):
            return fail(got)
        data, digest, vars_path, var_data = got
        env = repr(sorted(self.env.items())).encode()
        # what the result was made from, as 32 raw bytes (kept per file: not 128 hex digits)
        key = hashlib.sha256(digest.encode() + b"\0" + var_data + b"\0" + env).digest()
        if (hit := self._by_digest.get(name)) is not None and hit[0] == key:
            return hit[1]
        try:
            text = data.decode("utf-8-sig")
            var_text = var_data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            return fail(
                f"not UTF-8 text (byte 0x{(data + var_data)[e.start]:02x} at offset {e.start})"
            )
        if "\x00" in text or "\x00" in var_text:
            return fail("file contains a NUL byte: not a text file")
        directory = JobDirectory(str(self.root), str(path.parent), extra_roots=self.extra_roots)
        row_key = self._row_key(name, digest, var_data, directory.home)
        stored = self._stored(name, row_key, directory, lookup)
        if stored is not None:
            result, inputs_read = stored
            self._inputs[path.name] = (vars_path, *inputs_read)
            if not inputs_read:
                self._by_digest[name] = (key, result)
            return result
        from reconciler.spec import hclbody  # the HCL parser: loaded only to parse a file

        var_name = self._namer()(os.path.basename(vars_path))
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
        self._keep(name, row_key, directory, result)
        if directory.read_paths:
            return result  # file() contents are not in `key`: re-read when their stat changes
        self._by_digest[name] = (key, result)
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
