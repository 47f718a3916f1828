"""The service's descriptor budget. Each running task holds descriptors in the service (the
executor says how many); the store, the watcher and the sockets need some too. New starts are
held back before the limit is reached, so running out never breaks the store or the watcher."""

from __future__ import annotations

import dataclasses
import os
import resource

from reconciler import metrics
from reconciler.plan import Host

# The store, the watcher, the control and metrics sockets, launches in flight: measured at
# about 30 for a service with no task; the rest is headroom.
RESERVE = 64


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
