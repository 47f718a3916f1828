"""Prometheus metrics, served by `run --metrics-addr 127.0.0.1:PORT`.

The service counts into plain values here; prometheus_client (about 12 MB of the service's
memory) is imported only by `serve`, which registers a collector that renders these values on
each scrape. A service started without --metrics-addr never loads it."""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

_lock = threading.Lock()


class _Metric:
    """One metric family: its values by label values (`()` when it has no labels)."""

    __slots__ = ("help", "kind", "labels", "name", "values")

    def __init__(self, kind: str, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.kind, self.name, self.help, self.labels = kind, name, help, labels
        self.values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with _lock:
            self.values[labels] = self.values.get(labels, 0.0) + by

    def set(self, value: float, *labels: str) -> None:
        with _lock:
            self.values[labels] = float(value)

    def remove(self, *labels: str) -> None:
        with _lock:
            del self.values[labels]


class _Histogram:
    __slots__ = ("bounds", "counts", "help", "kind", "name", "sum")

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.kind, self.name, self.help = "histogram", name, help
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        with _lock:
            self.counts[bisect.bisect_left(self.bounds, value)] += 1
            self.sum += value


TASKS = _Metric("gauge", "reconciler_tasks", "Task slots by state", ("state",))
EXITS = _Metric("counter", "reconciler_task_exits_total", "Task exits", ("outcome",))
RESTARTS = _Metric("counter", "reconciler_task_restarts_total", "Task restarts scheduled by policy")
OOM = _Metric("counter", "reconciler_oom_kills_total",
              "Tasks killed for exceeding their memory limit")  # fmt: skip
PASS = _Histogram("reconciler_reconcile_seconds", "Duration of a reconcile pass",
                  (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))  # fmt: skip
PICKUP = _Histogram("reconciler_pickup_seconds", "First file event to applied change",
                    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))  # fmt: skip
FILE_PROBLEMS = _Metric("gauge", "reconciler_job_file_problems", "Problems in job files",
                        ("severity",))  # fmt: skip
DEGRADED = _Metric("gauge", "reconciler_degraded", "1 while the service is degraded by this cause",
                   ("cause",))  # fmt: skip
PASS_FAILURES = _Metric("counter", "reconciler_pass_failures_total",
                        "Passes that failed, by cause", ("cause",))  # fmt: skip
STUCK = _Metric("counter", "reconciler_stuck_passes_total",
                "Passes that ran longer than the stuck threshold")  # fmt: skip
FDS = _Metric("gauge", "reconciler_open_fds", "Descriptors the service has open")
FDS_LIMIT = _Metric("gauge", "reconciler_open_fds_limit", "The service's descriptor limit (soft)")
CHECKS = _Metric(
    "gauge",
    "reconciler_check_status",
    "Each registered check: 0 pending, 1 passing, 2 warning, 3 critical",
    ("job", "group", "index", "task", "service", "check"),
)
ALL: tuple[_Metric | _Histogram, ...] = (
    TASKS, EXITS, RESTARTS, OOM, PASS, PICKUP, FILE_PROBLEMS, DEGRADED, PASS_FAILURES, STUCK,
    FDS, FDS_LIMIT, CHECKS,
)  # fmt: skip
CHECK_CODES = {"pending": 0, "passing": 1, "warning": 2, "critical": 3}
STATES = ("pending", "running", "stopping", "complete", "failed", "dead")


def families() -> Iterator[Any]:
    """The metrics as prometheus_client metric families (imports it)."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.utils import floatToGoString

    with _lock:
        gauges = [(m, sorted(m.values.items())) for m in ALL if isinstance(m, _Metric)]
        histograms = [(m, list(m.counts), m.sum) for m in ALL if isinstance(m, _Histogram)]
    rendered: dict[str, Any] = {}
    for m, values in gauges:
        family_type = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
        family = family_type(m.name, m.help, labels=m.labels)
        for labels, value in values:
            family.add_metric(list(labels), value)
        rendered[m.name] = family
    for h, counts, total in histograms:
        cumulative, buckets = 0, []
        for bound, n in zip((*h.bounds, float("inf")), counts, strict=True):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        rendered[h.name] = HistogramMetricFamily(h.name, h.help, buckets=buckets, sum_value=total)
    for each in ALL:  # in the order they are declared
        yield rendered[each.name]


class _Collector:
    def collect(self) -> Iterator[Any]:
        return families()


def serve(addr: str) -> None:
    from prometheus_client import REGISTRY, start_http_server

    REGISTRY.register(_Collector())
    host, _, port = addr.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1")


def exited(result: Any) -> None:
    EXITS.inc("success" if result.successful else "failure")
    if result.oom_killed:
        OOM.inc()


def restarted() -> None:
    RESTARTS.inc()


def pass_done(seconds: float, states: Mapping[str, int]) -> None:
    """`states`: every task slot counted by state (the loop keeps the sum up to date)."""
    PASS.observe(seconds)
    for state in STATES:
        TASKS.set(states.get(state, 0), state)


def pickup(seconds: float) -> None:
    PICKUP.observe(seconds)


def file_problems(desired: Any) -> None:
    probs = desired.problems
    FILE_PROBLEMS.set(sum(p.severity == "error" for p in probs), "error")
    FILE_PROBLEMS.set(sum(p.severity == "warning" for p in probs), "warning")


def degraded(cause: str, on: bool) -> None:
    DEGRADED.set(1 if on else 0, cause)


def pass_failed(cause: str) -> None:
    PASS_FAILURES.inc(cause)


def stuck() -> None:
    STUCK.inc()


def descriptors(in_use: int, limit: int) -> None:
    FDS.set(in_use)
    FDS_LIMIT.set(limit)


def _check_labels(entry: Any) -> tuple[str, ...]:
    return (entry.job, entry.group, str(entry.idx), entry.task, entry.service, entry.name)


def check_status(entry: Any, status: str) -> None:
    CHECKS.set(CHECK_CODES.get(status, 0), *_check_labels(entry))


def check_removed(entry: Any) -> None:
    with contextlib.suppress(KeyError):
        CHECKS.remove(*_check_labels(entry))
