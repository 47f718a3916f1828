"""The loader's side of the parse cache (spec/parsecache.py): a file's kept result looked up
before it is parsed, a new parse's row written with the scan that made it, rows no file uses
dropped at a full listing."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from reconciler.spec import parsecache
from reconciler.spec.desired import FileResult
from reconciler.spec.hclfiles import JobDirectory


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

    def _row_key(self, name: str, data: bytes, var_data: bytes, directory: JobDirectory) -> str:
        roots = (str(self.root), directory.home, *self.extra_roots)
        return parsecache.key(name, data, var_data, self.env, roots)

    def _stored(
        self, name: str, data: bytes, var_data: bytes, directory: JobDirectory, lookup: bool
    ) -> tuple[FileResult, list[str]] | None:
        if self.cache is None or not lookup:
            return None
        row_key = self._row_key(name, data, var_data, directory)
        try:
            row = self.cache.get_parses([row_key]).get(row_key)
        except Exception:  # the store is unavailable: parse (the loop reports the store)
            return None
        found = parsecache.decode(*row, directory) if row is not None else None
        if found is not None:
            self._rows[name] = row_key
        return found

    def _keep(self, name: str, data: bytes, var_data: bytes, directory: JobDirectory,
              result: FileResult) -> None:  # fmt: skip
        """A new parse's row, written with the scan's (`_flush`)."""
        if self.cache is None:
            return
        read = parsecache.fingerprints(directory)
        if read is None:
            return
        row_key = self._row_key(name, data, var_data, directory)
        self._rows[name] = row_key
        if len(self._unsaved) < 20_000:
            self._unsaved.append((row_key, *parsecache.encode(result, read)))

    def _flush(self, listed: bool) -> None:
        """Write new rows; after a full listing, drop the rows no file uses any more."""
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
