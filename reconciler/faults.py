"""Which errors the service outlives: a transient fault is waited out (backoff, Degraded), never
fatal. Decided from the error itself (errno, SQLite's error code), so it works for a fault that
comes up through any layer."""

from __future__ import annotations

import errno
import os
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

# errno -> the cause an operator reads in `status`
TRANSIENT_ERRNO = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EMFILE: "too many open files (process limit)",
    errno.ENFILE: "too many open files (system limit)",
    errno.EIO: "I/O error",
    errno.EROFS: "read-only filesystem",
    errno.ENOMEM: "out of memory",
}

# SQLite's primary result codes (the low byte of sqlite_errorcode)
_SQLITE = {
    5: "store locked by another process",  # SQLITE_BUSY
    6: "store locked by another process",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "store is read-only",  # SQLITE_READONLY
    10: "I/O error on the store",  # SQLITE_IOERR
    13: "disk full",  # SQLITE_FULL
    14: "cannot open the store's files",  # SQLITE_CANTOPEN
    15: "store locked by another process",  # SQLITE_PROTOCOL
}
_SQLITE_TEXT = {
    "database is locked": "store locked by another process",
    "database table is locked": "store locked by another process",
    "database or disk is full": "disk full",
    "disk i/o error": "I/O error on the store",
    "attempt to write a readonly database": "store is read-only",
    "unable to open database file": "cannot open the store's files",
}


class TransientFault(Exception):
    """Raised where a transient fault is recognised but the original error is not re-raised."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


def transient_cause(exc: BaseException) -> str | None:
    """The operator-facing cause when `exc` (or an error it came from) is a transient fault."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, TransientFault):
            return e.cause
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNO:
            return TRANSIENT_ERRNO[e.errno]
        if isinstance(e, sqlite3.Error):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _SQLITE:
                return _SQLITE[code & 0xFF]
            text = str(e).lower()
            for needle, cause in _SQLITE_TEXT.items():
                if needle in text:
                    return cause
        orig = getattr(e, "orig", None)  # SQLAlchemy wraps the driver's error
        if isinstance(orig, BaseException) and transient_cause(orig):
            return transient_cause(orig)
        e = e.__cause__ or e.__context__
    return None


@dataclass
class Backoff:
    """Delays for retrying a failing pass: doubling from `base` up to `cap`, each with up to
    `jitter` of itself added at random (many services on one store do not retry in step)."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.2
    rand: Callable[[], float] = field(default=random.random)
    failures: int = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures)
        self.failures = min(self.failures + 1, 32)
        return float(delay * (1 + self.jitter * self.rand()))

    def reset(self) -> None:
        self.failures = 0


_STRERROR = {os.strerror(n): cause for n, cause in TRANSIENT_ERRNO.items()}


def raise_if_transient(directory_ok: bool, directory_error: str) -> None:
    """A job directory unreadable for a host reason (no descriptors, an I/O error) is a fault
    to wait out, not a directory that is gone (which would hold every job)."""
    if directory_ok:
        return
    for text, cause in _STRERROR.items():
        if directory_error.endswith(text):
            raise TransientFault(cause, directory_error)
