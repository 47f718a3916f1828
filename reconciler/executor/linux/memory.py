"""Handing freed heap memory back to the kernel (glibc's malloc_trim)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def trim_heap() -> None:
    """Return the free pages at the top of every malloc arena. A large reply built on a
    short-lived thread leaves its arena holding them otherwise (glibc keeps freed memory)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        _libc().malloc_trim(0)


M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)


def one_heap() -> None:
    """Keep every thread's malloc on one arena. glibc gives each new thread that allocates an
    arena of its own, whose freed pages stay with it; the service's threads allocate under the
    interpreter lock anyway, so they gain nothing from several (1.6 MB of PSS at 1,000 tasks,
    docs/operations.md "Memory"). Called before the service starts its threads."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        _libc().mallopt(M_ARENA_MAX, 1)
