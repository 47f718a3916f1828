"""Latency stamps of a start's way through the service (file event or task exit -> exec), for
bench/latency.py. Off unless the environment names a file in RECONCILER_TRACE: then `mark`
keeps (name, wall-clock ns) in memory, and the loop appends them to that file after each pass
(`flush`), one JSON list a line. Off, a mark costs one test of a module global.
"""

from __future__ import annotations

import json
import os
import time

_PATH = os.environ.get("RECONCILER_TRACE", "")
_stamps: list[tuple[str, int]] = []


def mark(name: str) -> None:
    if _PATH:
        _stamps.append((name, time.time_ns()))  # one append: safe from any thread


def flush() -> None:
    """Write what was marked since the last flush (on the loop thread, after a pass)."""
    global _stamps
    if not _PATH or not _stamps:
        return
    done, _stamps = _stamps, []
    with open(_PATH, "a") as f:
        f.write(json.dumps(done) + "\n")
