"""The service's descriptor budget. Each running task holds descriptors in the service (the
executor says how many); the store, the watcher and the sockets need some too. New starts are
held back before the limit is reached, so running out never breaks the store or the watcher."""

from __future__ import annotations

import dataclasses
import os
import resource
from collections.abc import Callable

from reconciler import metrics
from reconciler.plan import Host

# The store, the watcher, the control and metrics sockets, launches in flight: measured at
# about 30 for a service with no task; the rest is headroom.
RESERVE = 64
# Counted before a plan whenever the estimate leaves room for fewer tasks than this
EXACT_BELOW = 256
RECOUNT_EVERY = 1.0  # seconds: after a pass, the count is taken again at most this often


def usage() -> tuple[int, int]:
    """(descriptors open now, the soft limit)."""
    try:
        in_use = len(os.listdir("/proc/self/fd")) - 1  # not the listing's own
    except OSError:
        in_use = 0
    return in_use, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def starts_allowed(in_use: int, limit: int, per_task: int) -> int | None:
    """How many more tasks may start; None when the limit is no concern."""
    if limit == resource.RLIM_INFINITY or per_task <= 0:
        return None
    return max(0, (limit - RESERVE - in_use) // per_task)


def blocked_reason(in_use: int, limit: int) -> str:
    return f"file descriptor limit: {in_use} of {limit} in use; raise LimitNOFILE"


def host_now(host: Host, usage: tuple[int, int], per_task: int) -> Host:
    """`host` with how many tasks may still start, and why no more."""
    in_use, limit = usage
    metrics.descriptors(in_use, limit)
    budget = starts_allowed(in_use, limit, per_task)
    if budget is None:
        return host
    why = blocked_reason(in_use, limit)
    return dataclasses.replace(host, start_budget=budget, budget_reason=why)


class Usage:
    """Descriptors in use, for the plans' start budget, without a listing of /proc/self/fd
    before every plan (the kernel builds an entry per descriptor: ~2 ms at 2,000, so 1,000
    running tasks would make every pickup and restart wait for it). The count is taken after a
    pass, at most every RECOUNT_EVERY; before a plan it is estimated from it and the tasks
    started or ended since (`per_task` each), and taken again when that estimate leaves room
    for fewer than EXACT_BELOW more tasks."""

    def __init__(self, count: Callable[[], tuple[int, int]], per_task: int,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.count, self.per_task, self.clock = count, per_task, clock
        self._counted: tuple[int, int] | None = None  # (in use, limit) when last counted
        self._running = 0  # running tasks then
        self._at = 0.0

    def now(self, running: int) -> tuple[int, int]:
        """(descriptors in use, the soft limit) for a plan, with `running` tasks now."""
        if self._counted is not None:
            in_use, limit = self._counted
            estimate = in_use + self.per_task * (running - self._running)
            budget = starts_allowed(estimate, limit, self.per_task)
            if budget is None or budget >= EXACT_BELOW:
                return estimate, limit
        return self._take(running)

    def refresh(self, running: int) -> None:
        """After a pass: count again if the last count is older than RECOUNT_EVERY."""
        if self._counted is None or self.clock() - self._at >= RECOUNT_EVERY:
            self._take(running)

    def _take(self, running: int) -> tuple[int, int]:
        self._counted, self._running, self._at = self.count(), running, self.clock()
        return self._counted
