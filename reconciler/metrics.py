"""Prometheus metrics, served by `run --metrics-addr 127.0.0.1:PORT`."""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

TASKS = Gauge("reconciler_tasks", "Task slots by state", ["state"])
EXITS = Counter("reconciler_task_exits_total", "Task exits", ["outcome"])
RESTARTS = Counter("reconciler_task_restarts_total", "Task restarts scheduled by policy")
OOM = Counter("reconciler_oom_kills_total", "Tasks killed for exceeding their memory limit")
PASS = Histogram("reconciler_reconcile_seconds", "Duration of a reconcile pass",
                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))  # fmt: skip
PICKUP = Histogram("reconciler_pickup_seconds", "First file event to applied change",
                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))  # fmt: skip
FILE_PROBLEMS = Gauge("reconciler_job_file_problems", "Problems in job files", ["severity"])
DEGRADED = Gauge("reconciler_degraded", "1 while the service is degraded by this cause",
                 ["cause"])  # fmt: skip
PASS_FAILURES = Counter("reconciler_pass_failures_total", "Passes that failed, by cause",
                        ["cause"])  # fmt: skip
STUCK = Counter("reconciler_stuck_passes_total", "Passes that ran longer than the stuck threshold")
FDS = Gauge("reconciler_open_fds", "Descriptors the service has open")
FDS_LIMIT = Gauge("reconciler_open_fds_limit", "The service's descriptor limit (soft)")
CHECKS = Gauge(
    "reconciler_check_status",
    "Each registered check: 0 pending, 1 passing, 2 warning, 3 critical",
    ["job", "group", "index", "task", "service", "check"],
)
CHECK_CODES = {"pending": 0, "passing": 1, "warning": 2, "critical": 3}
STATES = ("pending", "running", "stopping", "complete", "failed", "dead")


def serve(addr: str) -> None:
    host, _, port = addr.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1")


def exited(result: Any) -> None:
    EXITS.labels("success" if result.successful else "failure").inc()
    if result.oom_killed:
        OOM.inc()


def restarted() -> None:
    RESTARTS.inc()


def pass_done(seconds: float, per_job: Iterable[Tally[str]]) -> None:
    """`per_job`: each job's task slots counted by state."""
    PASS.observe(seconds)
    counts: Tally[str] = Tally()
    for c in per_job:
        counts.update(c)
    for state in STATES:
        TASKS.labels(state).set(counts.get(state, 0))


def pickup(seconds: float) -> None:
    PICKUP.observe(seconds)


def file_problems(desired: Any) -> None:
    probs = desired.problems
    FILE_PROBLEMS.labels("error").set(sum(p.severity == "error" for p in probs))
    FILE_PROBLEMS.labels("warning").set(sum(p.severity == "warning" for p in probs))


def degraded(cause: str, on: bool) -> None:
    DEGRADED.labels(cause).set(1 if on else 0)


def pass_failed(cause: str) -> None:
    PASS_FAILURES.labels(cause).inc()


def stuck() -> None:
    STUCK.inc()


def descriptors(in_use: int, limit: int) -> None:
    FDS.set(in_use)
    FDS_LIMIT.set(limit)
def _check_labels(entry: Any) -> tuple[str, ...]:
    return (entry.job, entry.group, str(entry.idx), entry.task, entry.service, entry.name)


def check_status(entry: Any, status: str) -> None:
    CHECKS.labels(*_check_labels(entry)).set(CHECK_CODES.get(status, 0))


def check_removed(entry: Any) -> None:
    with contextlib.suppress(KeyError):
        CHECKS.remove(*_check_labels(entry))
