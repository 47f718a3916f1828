"""One scheduler for every check of the service: a thread with a selector and a heap of due
times. tcp and http probes are non-blocking sockets (probes.py); script checks run inside
their task through the executor on a small bounded pool, the only probes that spawn.

Results go through the pure state machines of `reconciler.plan.health`; only transitions leave
this thread (to the loop, which records them), and check_restart decisions with them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from reconciler import metrics
from reconciler.db.registry import CheckEntry, Transition
from reconciler.db.snapshot import SlotKey
from reconciler.executor.base import TaskHandle
from reconciler.plan import health
from reconciler.plan.health import Result
from reconciler.service import threads
from reconciler.service.probes import OUTPUT_LIMIT, Probe, Target

log = logging.getLogger("reconciler")
WATCH_EVERY = 1.0  # Nomad's check watcher polls every second
Key = tuple[object, ...]


@dataclass(frozen=True)
class CheckSpec:
    """Everything the scheduler needs to run one registered check."""

    entry: CheckEntry
    interval: float
    timeout: float
    thresholds: health.Thresholds
    target: Target | None = None  # tcp and http
    handle: TaskHandle | None = None  # script: the task it runs in
    argv: tuple[str, ...] = ()
    restart_limit: int = 0
    restart_grace: float = 1.0
    ignore_warnings: bool = False
    restart: tuple[SlotKey, ...] = ()  # tasks check_restart restarts
    instance_id: int | None = None


@dataclass(frozen=True)
class RestartRequest:
    keys: tuple[SlotKey, ...]
    check: str
    reason: str


@dataclass
class _Live:
    spec: CheckSpec
    state: health.CheckState
    gen: int
    watch: health.RestartWatch | None
    busy: bool = False


ScriptRunner = Callable[[TaskHandle, list[str], float], tuple[int, bytes]]


class Scheduler:
    def __init__(
        self, post: Callable[[list[Transition], list[RestartRequest]], None],
        run_script: ScriptRunner, *, clock: Callable[[], float] = time.time,
        script_workers: int = 2,
    ) -> None:  # fmt: skip
        self._post = post
        self._run_script = run_script
        self._clock = clock
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._updates: list[tuple[Collection[str] | None, dict[Key, CheckSpec]]] = []
        self._finished: list[tuple[Key, int, Result, str]] = []
        self._live: dict[Key, _Live] = {}
        self._heap: list[tuple[float, int, Key, int]] = []
        self._inflight: dict[int, tuple[Probe, Key, int]] = {}
        self._seq = itertools.count()
        self._gen = itertools.count(1)
        self._scripts = ThreadPoolExecutor(
            script_workers, thread_name_prefix="script-check",
            initializer=threads.name_this_thread, initargs=("script-check",))  # fmt: skip
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_watch = 0.0

    # ---- from other threads ----

    def update(self, jobs: Collection[str] | None, specs: Mapping[Key, CheckSpec]) -> None:
        """The checks of `jobs` (every job when None) are now exactly `specs`."""
        with self._lock:
            self._updates.append((jobs, dict(specs)))
        self._wake()

    def start(self) -> None:
        self._thread = threads.start(self._run, "checks")

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        self._scripts.shutdown(wait=False, cancel_futures=True)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    # ---- the scheduler thread ----

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(self._timeout())
            except Exception:
                log.exception("check scheduler")
                time.sleep(0.5)
        for probe, _, _ in list(self._inflight.values()):
            probe.finish("critical", "reconciler: stopping")

    def _timeout(self) -> float:
        now = self._clock()
        wake = now + 60.0
        if self._heap:
            wake = min(wake, self._heap[0][0])
        for probe, _, _ in self._inflight.values():
            wake = min(wake, probe.deadline)
        if any(c.watch is not None for c in self._live.values()):
            wake = min(wake, self._next_watch)
        return max(0.0, wake - now)

    def run_once(self, timeout: float) -> None:
        """Wait for sockets (at most `timeout`), then do everything that is due."""
        for ready, _ in self._sel.select(timeout):
            if ready.data is None:
                with contextlib.suppress(BlockingIOError):
                    while self._wake_r.recv(4096):
                        pass
            else:
                ready.data.step()
        now = self._clock()
        transitions: list[Transition] = []
        self._apply_updates(now)
        with self._lock:
            finished, self._finished = self._finished, []
        for done_key, gen, result, output in finished:
            self._result(done_key, gen, result, output, now, transitions)
        for pid, (probe, _, _) in list(self._inflight.items()):
            if probe.deadline <= now:
                probe.finish("critical", f"reconciler: timed out after {probe.target.kind} timeout")
            if probe.phase == "done":
                self._inflight.pop(pid, None)
        while self._heap and self._heap[0][0] <= now:
            _, _, due_key, gen = heapq.heappop(self._heap)
            live = self._live.get(due_key)
            if live is not None and live.gen == gen and not live.busy:
                self._launch(due_key, live, now)
        restarts = self._watch(now) if now >= self._next_watch else []
        if transitions or restarts:
            self._post(transitions, restarts)

    def _apply_updates(self, now: float) -> None:
        with self._lock:
            updates, self._updates = self._updates, []
        for jobs, specs in updates:
            for key in [k for k, c in self._live.items()
                        if (jobs is None or c.spec.entry.job in jobs) and k not in specs]:  # fmt: skip
                self._drop(key)
            for key, spec in specs.items():
                live = self._live.get(key)
                if live is not None and live.spec.entry.identity == spec.entry.identity:
                    live.spec = spec
                    continue
                if live is not None:
                    self._drop(key)
                self._add(key, spec, now)

    def _add(self, key: Key, spec: CheckSpec, now: float) -> None:
        w = None
        if spec.restart_limit > 0:
            w = health.watch(spec.restart_limit, spec.restart_grace, spec.interval,
                             spec.ignore_warnings, now)  # fmt: skip
            self._next_watch = min(self._next_watch or now + WATCH_EVERY, now + WATCH_EVERY)
        live = _Live(spec, health.new_check(spec.thresholds, now), next(self._gen), w)
        self._live[key] = live
        # Nomad: the first probe at half an interval, then an interval after each result
        heapq.heappush(self._heap, (now + spec.interval / 2, next(self._seq), key, live.gen))
        metrics.check_status(spec.entry, "pending")

    def _drop(self, key: Key) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            metrics.check_removed(live.spec.entry)

    def _launch(self, key: Key, live: _Live, now: float) -> None:
        spec, gen = live.spec, live.gen
        live.busy = True

        def done(result: Result, output: str) -> None:
            with self._lock:
                self._finished.append((key, gen, result, output))
            if threading.current_thread() is not self._thread:
                self._wake()

        if spec.target is not None:
            probe = Probe(self._sel, spec.target, now + spec.timeout, done)
            if probe.phase != "done":
                self._inflight[id(probe)] = (probe, key, gen)
            return
        assert spec.handle is not None
        handle, argv, timeout = spec.handle, list(spec.argv), spec.timeout

        def script() -> None:
            try:
                code, out = self._run_script(handle, argv, timeout)
            except Exception as e:
                done("critical", f"reconciler: {e}")
                return
            text = out[-OUTPUT_LIMIT:].decode("utf-8", "replace")
            done("passing" if code == 0 else "warning" if code == 1 else "critical", text)

        self._scripts.submit(script)

    def _result(self, key: Key, gen: int, result: Result, output: str, now: float,
                out: list[Transition]) -> None:  # fmt: skip
        live = self._live.get(key)
        if live is None or live.gen != gen:
            return
        live.busy = False
        spec = live.spec
        before = live.state
        live.state = health.observe(before, result, output, spec.thresholds, now)
        if live.state.status != before.status:
            out.append(Transition(spec.entry, before.status, live.state.status, output, now,
                                  spec.instance_id))  # fmt: skip
            metrics.check_status(spec.entry, live.state.status)
        heapq.heappush(self._heap, (now + spec.interval, next(self._seq), key, gen))

    def _watch(self, now: float) -> list[RestartRequest]:
        """check_restart: poll every watched check once a second, like Nomad's watcher."""
        self._next_watch = now + WATCH_EVERY
        requests: list[RestartRequest] = []
        restarting: set[SlotKey] = set()
        for live in self._live.values():
            if live.watch is None:
                continue
            live.watch, restart = health.poll(live.watch, live.state.status, now)
            if not restart or restarting & set(live.spec.restart):
                continue
            live.watch = None  # watched again when the task starts again
            restarting |= set(live.spec.restart)
            name = live.spec.entry.name
            requests.append(RestartRequest(live.spec.restart, name,
                                           f'healthcheck: check "{name}" unhealthy'))  # fmt: skip
        return requests

    # ---- for tests and `services` ----

    def status(self, key: Key) -> str | None:
        live = self._live.get(key)
        return live.state.status if live else None
