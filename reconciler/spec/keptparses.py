"""The loader's side of the parse cache (spec/parsecache.py): a file's kept result looked up
before it is parsed, a new parse's row written with the scan that made it, rows no file uses
dropped at a full listing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.spec import parsecache
from reconciler.spec.desired import FileResult
from reconciler.spec.hclfiles import JobDirectory

# a job file's bytes, their SHA-256 (the one hash of them a read makes), its var file's path
# and that file's bytes
Read = tuple[bytes, str, str, bytes]


class KeptParses:
    """Mixed into the Loader, whose fields these are."""

    root: Path
    env: Mapping[str, str]
    extra_roots: tuple[str, ...]
    cache: parsecache.Rows | None
    _reading: threading.Lock
    _rows: dict[str, str]  # file -> its row's key
    _unsaved: list[tuple[str, str, str]]
    _rows_added: bool
    _fetched: dict[str, tuple[str, str] | None]  # row key -> its row (None: no row)
    _by_stat: dict[str, tuple[Any, FileResult]]
    _shown: dict[str, str]

    def _namer(self) -> Callable[[str], str]:
        raise NotImplementedError  # the Loader's

    def _bytes_of(self, path: Path) -> Read | str:
        raise NotImplementedError  # the Loader's


    def _row_key(self, name: str, digest: str, var_data: bytes, home: str) -> str:
        if self.cache is None:
            return ""
        roots = (str(self.root), home, *self.extra_roots)
        return parsecache.key(name, digest, var_data, self.env, roots)

    def _fetch(self, files: Sequence[tuple[str, str, bytes]]) -> None:
        """The rows of a scan's files, asked for at once (not one query per file)."""
        self._fetched.clear()
        if self.cache is None or not files:
            return
        home = JobDirectory("", "").home  # (what each file's JobDirectory will have)
        keys = [self._row_key(name, digest, var_data, home) for name, digest, var_data in files]
        try:
            found = self.cache.get_parses(keys)
        except Exception:  # the store is unavailable: parse (the loop reports the store)
            found = {}
        self._fetched.update((k, found.get(k)) for k in keys)

    def _stored(
        self, name: str, row_key: str, directory: JobDirectory, lookup: bool
    ) -> tuple[FileResult, list[str]] | None:
        if self.cache is None or not lookup:
            return None
        if row_key in self._fetched:
            row = self._fetched.pop(row_key)
        else:
            try:
                row = self.cache.get_parses([row_key]).get(row_key)
            except Exception:  # the store is unavailable: parse (the loop reports the store)
                return None
        found = parsecache.decode(*row, directory) if row is not None else None
        if found is not None:
            self._rows[name] = row_key
        return found

    def _keep(self, name: str, row_key: str, directory: JobDirectory, result: FileResult) -> None:
        """A new parse's row, written with the scan's (`_flush`)."""
        if self.cache is None:
            return
        read = parsecache.fingerprints(directory)
        if read is None:
            return
        self._rows[name] = row_key
        if len(self._unsaved) < 20_000:
            self._unsaved.append((row_key, *parsecache.encode(result, read)))

    # set: a scan leaves its new rows to `flush_rows` (the service writes them after its pass,
    # not before the starts it makes); what was listed in full meanwhile is remembered
    defer_rows = False
    _listed_since = False

    def flush_rows(self) -> None:
        """Write what scans left to write (`defer_rows`)."""
        listed, self._listed_since = self._listed_since, False
        self._flush(listed, now=True)

    def _flush(self, listed: bool, now: bool = False) -> None:
        """Write new rows; after a full listing, drop the rows no file uses any more."""
        if self.defer_rows and not now:
            self._listed_since |= listed
            return
        if self.cache is None or not (self._unsaved or (listed and self._rows_added)):
            return
        with self._reading:  # (`warm` adds rows on its own thread)
            rows, self._unsaved = self._unsaved, []
            keep = set(self._rows.values()) if listed else None
        try:
            self.cache.put_parses(rows, keep)
        except Exception:  # the store is unavailable: the rows are only an optimisation
            return
        self._rows_added = not listed and (self._rows_added or bool(rows))

    def _read_batch(self, bases: list[str], keys: Mapping[str, Any]) -> dict[str, Read]:
        """The bytes of the files of `bases` this scan reads, their parse-cache rows asked for
        in one query."""
        if self.cache is None or len(bases) < 2:
            return {}
        named = self._namer()
        out: dict[str, Read] = {}
        wanted: list[tuple[str, str, bytes]] = []
        for base in bases:
            key, name = keys.get(base, (None,)), self._shown.get(base) or named(base)
            cached = self._by_stat.get(name)
            if key[0] is None or (cached is not None and cached[0] == key):
                continue
            got = self._bytes_of(self.root / base)
            if not isinstance(got, str):
                out[base] = got
                wanted.append((name, got[1], got[3]))
        with self._reading:
            self._fetch(wanted)
        return out
