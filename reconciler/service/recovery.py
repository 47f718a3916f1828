"""How the loop outlives faults: a failed pass is retried with backoff and shows as Degraded;
an unexpected error is logged once with its traceback; a pass that runs too long is reported
with the loop thread's stack; a reader that holds the store's WAL back is warned about."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from reconciler import metrics
from reconciler.db.store import Store
from reconciler.faults import Backoff, transient_cause
from reconciler.service.health import Health

log = logging.getLogger("reconciler")
WAL_EVERY = 30.0  # seconds between checkpoints the service asks for
WAL_HELD_WARN = 300.0  # a reader holding the WAL back this long is worth a warning


class Recovery:
    def __init__(self, clock: Callable[[], float], stuck_after: float = 30.0) -> None:
        self.clock = clock
        self.health = Health()
        self.backoff = Backoff()
        self.stuck_after = stuck_after
        self.retry_at: float | None = None
        self.busy_since: float | None = None  # monotonic start of the work in hand
        self.loop_ident: int | None = None
        self._logged: set[str] = set()
        self._stuck_reported: float | None = None
        self._wal_checked = 0.0
        self._wal_held_since: float | None = None

    # ---- failed passes ----

    def waiting(self) -> bool:
        """A failed pass is waiting for its retry."""
        return self.retry_at is not None and self.clock() < self.retry_at

    def guard(self, work: Callable[[], object], on_fail: Callable[[], None]) -> bool:
        """Run part of a pass; a fault is waited out with backoff instead of raised."""
        try:
            work()
        except Exception as e:
            on_fail()
            self.failed(e)
            return False
        return True

    def recovered(self) -> None:
        """A whole pass went through: the fault is gone."""
        if self.retry_at is not None:
            self.retry_at = None
            self.backoff.reset()
            self.health.clear("fault", "pass")

    def failed(self, e: Exception) -> None:
        cause = transient_cause(e)
        if cause is not None:
            self.health.set("fault", cause, one_line(e))
            self.health.clear("pass")
        else:
            self.log_once("a pass failed (it is retried)", e)
            cause = "unexpected error in a pass"
            self.health.set("pass", cause, one_line(e))
            self.health.clear("fault")
        metrics.pass_failed(cause)
        self.retry_at = self.clock() + self.backoff.next()

    def log_once(self, what: str, e: BaseException) -> None:
        """An unexpected error with its traceback, once per kind and place (never a flood)."""
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else ""
        key = f"{what}|{type(e).__name__}|{where}"
        if key in self._logged:
            return
        self._logged.add(key)
        log.error("%s: %s", what, one_line(e), exc_info=e)

    # ---- stuck passes ----

    def busy(self) -> None:
        self.busy_since = time.monotonic()

    def idle(self) -> None:
        self.busy_since = None
        if self._stuck_reported is not None:
            self._stuck_reported = None
            self.health.clear("stuck")

    def check_stuck(self) -> bool:
        """Called from another thread: report, once, a pass running longer than `stuck_after`
        with the loop thread's stack. True while one is stuck."""
        since = self.busy_since
        if since is None or time.monotonic() - since < self.stuck_after:
            return False
        if self._stuck_reported == since:
            return True
        self._stuck_reported = since
        stack = self._stack()
        metrics.stuck()
        log.warning("a pass has run for over %gs; the loop thread is at:\n%s",
                    self.stuck_after, "".join(stack).rstrip())  # fmt: skip
        self.health.set("stuck", f"a pass has run for over {self.stuck_after:g}s",
                        innermost(stack))  # fmt: skip
        return True

    def where(self) -> str:
        """Where the loop thread is now (one line)."""
        return innermost(self._stack())

    def _stack(self) -> list[str]:
        frame = sys._current_frames().get(self.loop_ident or threading.get_ident())
        return traceback.format_stack(frame) if frame is not None else []

    def report(
        self, fds: tuple[int, int], per_task: int, unrecorded: int, passes: int
    ) -> dict[str, Any]:
        busy, retry = self.busy_since, self.retry_at
        return {
            **self.health.snapshot(), "pid": os.getpid(), "passes": passes,
            "busy_seconds": round(time.monotonic() - busy, 1) if busy is not None else 0.0,
            "retry_in": round(max(0.0, retry - self.clock()), 1) if retry is not None else None,
            "unrecorded_exits": unrecorded,
            "fds": {"in_use": fds[0], "limit": fds[1], "per_task": per_task},
        }  # fmt: skip

    # ---- the store's write-ahead log ----

    def check_wal(self, store: Store) -> None:
        """Checkpoint now and then (SQLite does too, every 1,000 pages, but only when a write
        happens to find no reader in the way); warn when a reader holds it back for long."""
        now = self.clock()
        if now - self._wal_checked < WAL_EVERY:
            return
        self._wal_checked = now
        try:
            pages, done = store.checkpoint()
        except Exception as e:
            if transient_cause(e) is None:
                self.log_once("checkpointing the store", e)
            return
        if done >= pages:
            self._wal_held_since = None
            self.health.clear("wal")
            return
        if self._wal_held_since is None:
            self._wal_held_since = now
        held = now - self._wal_held_since
        if held >= WAL_HELD_WARN:
            size = os.path.getsize(str(store.path) + "-wal") if store.path else 0
            self.health.set(
                "wal", "a reader holds the store's write-ahead log back",
                f"for {held / 60:.0f} min; {size >> 20} MB not checkpointed (end long "
                "read transactions, e.g. an idle `sqlite3` session)", degraded=False,
            )  # fmt: skip


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def innermost(stack: list[str]) -> str:
    """`file:line in function` of the innermost frame of a formatted stack."""
    if not stack:
        return "?"
    head = stack[-1].strip().splitlines()[0]  # File "x.py", line 3, in f
    parts = [p.strip() for p in head.split(",")]
    file = parts[0].removeprefix("File ").strip('"') if parts else "?"
    line = parts[1].removeprefix("line ") if len(parts) > 1 else "?"
    func = parts[2].removeprefix("in ") if len(parts) > 2 else "?"
    return f"{os.path.basename(file)}:{line} in {func}"
