"""The service's own condition: OK, or Degraded with its causes. Read by `status` through the
control socket without waiting for the loop (a stuck pass must not hide itself), and logged once
per change, never once per retry."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from reconciler import metrics

log = logging.getLogger("reconciler")


@dataclass(frozen=True)
class Fault:
    kind: str  # what is affected: store, pass, stuck, wal, descriptors
    cause: str  # short, for people: "disk full", "store locked by another process"
    detail: str  # the error as raised, or where a pass is stuck
    since: float  # wall-clock time, for display
    degraded: bool  # False: a warning only (work goes on)


class Health:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()

    def set(self, kind: str, cause: str, detail: str = "", *, degraded: bool = True) -> None:
        with self._lock:
            old = self._faults.get(kind)
            if old is not None and old.cause == cause:
                self._faults[kind] = Fault(kind, cause, detail, old.since, degraded)
                return
            self._faults[kind] = Fault(kind, cause, detail, self.clock(), degraded)
        if old is not None:
            metrics.degraded(old.cause, False)
        metrics.degraded(cause, True)
        what = "degraded" if degraded else "warning"
        log.warning("%s: %s%s", what, cause, f" ({detail})" if detail else "")

    def clear(self, *kinds: str) -> None:
        for kind in kinds:
            with self._lock:
                old = self._faults.pop(kind, None)
            if old is not None:
                metrics.degraded(old.cause, False)
                log.info("recovered: %s (after %.0fs)", old.cause, self.clock() - old.since)

    def cause(self, kind: str) -> str | None:
        with self._lock:
            f = self._faults.get(kind)
        return f.cause if f else None

    @property
    def degraded(self) -> bool:
        with self._lock:
            return any(f.degraded for f in self._faults.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            faults = sorted(self._faults.values(), key=lambda f: f.since)
        return {
            "state": "degraded" if any(f.degraded for f in faults) else "ok",
            "faults": [asdict(f) for f in faults],
        }
