"""The filesystem functions of Nomad's jobspec (file, filebase64, fileexists, fileset, abspath,
basename, dirname, pathexpand), confined to the job directory.

Nomad runs them in the CLI as the submitting user. reconciler reads job files as root, so a
path is resolved against the job file's directory and must stay inside the job directory
(symlinks included): a job file cannot read /etc/shadow into a task's environment.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.spec import hcltypes as ht
from reconciler.spec.hclexpr import FunctionError

MAX_READ = 1 << 20
S = ht.to_string


@dataclass
class JobDirectory:
    """Reads for one job file; remembers what it read, so a changed file re-plans its jobs."""

    root: str  # the job directory: nothing outside it is readable
    base: str  # the job file's directory
    home: str = field(default_factory=lambda: os.environ.get("HOME", ""))  # for pathexpand
    read_paths: set[str] = field(default_factory=set)
    # path -> SHA-256 of the bytes read() returned, taken as they were read (None: two reads of
    # it differed); a path in read_paths but not here was only listed or asked about.
    read_digests: dict[str, str | None] = field(default_factory=dict)
    # Absolute paths inside these host directories are readable too (the node configuration's
    # `reconciler { template_dirs }`).
    extra_roots: tuple[str, ...] = ()

    def _resolve(self, path: str) -> str:
        return self._resolve_full(path)[1]

    def _resolve_full(self, path: str) -> tuple[str, str]:
        if "\x00" in path:
            raise FunctionError("a path cannot contain a NUL byte")
        full = os.path.normpath(os.path.join(self.base, path))
        real = os.path.realpath(full)
        root = os.path.realpath(self.root)
        allowed = [root] + [os.path.realpath(r) for r in self.extra_roots if os.path.isabs(path)]
        if not any(os.path.commonpath([real, top]) == top for top in allowed):
            where = " and the node's template_dirs" if self.extra_roots else ""
            raise FunctionError(f'"{path}" is outside the job directory {self.root}{where}; refused')
        self.read_paths.add(full)
        return full, real

    def read(self, path: str) -> bytes:
        full, real = self._resolve_full(path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise FunctionError(f'cannot read "{path}": {e.strerror or e}') from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FunctionError(f'"{path}" is not a regular file')
            chunks, size = [], 0
            while size <= MAX_READ:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > MAX_READ:
                raise FunctionError(f'"{path}" is larger than {MAX_READ // 1024} KiB')
            data = b"".join(chunks)
            digest = hashlib.sha256(data).hexdigest()
            if self.read_digests.setdefault(full, digest) != digest:
                self.read_digests[full] = None
            return data
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        real = self._resolve(path)
        try:
            mode = os.stat(real).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode):
            raise FunctionError(f'"{path}" is a directory, not a file')
        return True

    def fileset(self, path: str, pattern: str) -> list[str]:
        top = self._resolve(path)
        out: list[str] = []
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                rel = os.path.relpath(os.path.join(dirpath, name), top)
                if _glob_match(rel, pattern):
                    out.append(rel)
            if len(out) > 10000:
                raise FunctionError("more than 10000 files match")
        return sorted(out)

    def functions(self) -> dict[str, Callable[..., Any]]:
        def text(path: Any) -> str:
            data = self.read(S(path))
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise FunctionError(f'"{S(path)}" is not UTF-8 text; use filebase64()') from None

        return {
            "file": text,
            "filebase64": lambda p: base64.b64encode(self.read(S(p))).decode(),
            "fileexists": lambda p: self.exists(S(p)),
            "fileset": lambda p, pat: self.fileset(S(p), S(pat)),
            "abspath": lambda p: os.path.normpath(os.path.join(self.base, S(p))),
            "pathexpand": lambda p: _expand(S(p), self.home),
            "basename": lambda p: _basename(S(p)),
            "dirname": lambda p: _dirname(S(p)),
        }


def _glob_match(rel: str, pattern: str) -> bool:
    """doublestar globbing: `**` spans directories, `*` does not."""
    parts, pats = rel.split("/"), pattern.split("/")

    def match(i: int, j: int) -> bool:
        if j == len(pats):
            return i == len(parts)
        if pats[j] == "**":
            return any(match(k, j + 1) for k in range(i, len(parts) + 1))
        return i < len(parts) and fnmatch.fnmatchcase(parts[i], pats[j]) and match(i + 1, j + 1)

    return match(0, 0)


def _expand(path: str, home: str) -> str:
    if path == "~" or path.startswith("~/"):
        if not home:
            raise FunctionError("pathexpand(): the service has no HOME")
        return home + path[1:]
    return path


def _basename(path: str) -> str:  # Go's filepath.Base
    if path == "":
        return "."
    stripped = path.rstrip("/")
    return posixpath.basename(stripped) if stripped else "/"


def _dirname(path: str) -> str:  # Go's filepath.Dir
    d = posixpath.dirname(path)
    return posixpath.normpath(d) if d else "."
