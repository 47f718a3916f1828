"""Handing freed heap memory back to the kernel (glibc's malloc_trim)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from typing import Any

from reconciler import trace


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


def anon_resident_kb() -> int:
    """Resident pages that are not a file's (the heap, pymalloc's arenas, stacks), in kB:
    /proc/self/statm's resident minus shared, one read of a short file."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return (int(fields[1]) - int(fields[2])) * (PAGE // 1024)
    except (OSError, ValueError, IndexError):
        return 0


PAGE = os.sysconf("SC_PAGE_SIZE")


class Trimmer:
    """Returns the heap's free pages to the kernel after a burst of work freed them: when the
    process's own resident memory grew by `slack_kb` since the last look, malloc_trim is
    called (1-7 ms; rare: once per burst). glibc gives back only the top of the heap on its
    own; what a burst (1,000 files parsed, planned and launched) freed below long-lived
    blocks stays resident until trimmed."""

    def __init__(self, slack_kb: int = 2048) -> None:
        self.slack_kb = slack_kb
        self.low = anon_resident_kb()
        self.trims = 0

    def check(self) -> bool:
        now = anon_resident_kb()
        if now - self.low < self.slack_kb:
            self.low = min(self.low, now)
            return False
        trace.mark("bg_trim")
        trim_heap()
        self.trims += 1
        self.low = anon_resident_kb()
        return True
