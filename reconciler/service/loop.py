"""The service: one loop thread owns every state change; watch, exits and the control API only
wake it through a queue. A pass is in passes.py, its scan in scans.py, what wakes the loop
without an event in deadlines.py, exits in exits.py, templates' other inputs in inputs.py.

    watch ─┐
    exits ─┼─▶ queue ─▶ loop: scan → record → plan → apply
    control┘
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reconciler import trace
from reconciler.apply import Applier
from reconciler.db.parsecache import ParseRows
from reconciler.db.store import Store
from reconciler.db.variables import VariableStore
from reconciler.executor.base import Executor, ExitResult, NodeConfig, TaskHandle
from reconciler.faults import transient_cause
from reconciler.plan import Host, Plan, admission
from reconciler.service import descriptors, threads
from reconciler.service.checkpoints import Checkpointer
from reconciler.service.checks import Scheduler
from reconciler.service.children import Children
from reconciler.service.clock import SteadyClock
from reconciler.service.deadlines import RESCAN_EVERY
from reconciler.service.gitinfo import GitInfo
from reconciler.service.passes import Passes
from reconciler.service.recovery import Recovery
from reconciler.service.registry import Registrar
from reconciler.service.requests import Request, answer
from reconciler.spec.load import JobSpec, Loader
from reconciler.taskconfig import variable_source
from reconciler.watch import Watcher

log = logging.getLogger("reconciler")
READ_ONLY = ("health", "stats")  # requests that change nothing: no pass follows them


class Service(Passes):
    def __init__(
        self,
        jobs: Path,
        store: Store,
        executor: Executor,
        node: NodeConfig,
        *,
        clock: Callable[[], float] | None = None,
        allow_empty: bool = False,
        watch: bool = True,
        stuck_after: float = 30.0,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.executor = executor
        self.node = node
        self.clock = clock = clock or SteadyClock()
        self.allow_empty = allow_empty
        # parse results are kept in the store: a restart with unchanged files parses none
        self.loader = Loader(jobs, extra_roots=node.template_dirs, cache=ParseRows(store.pool))
        self.loader.defer_rows = True  # new parse-cache rows are written after the pass
        fp = executor.fingerprint()
        self.fingerprint = fp
        self.host = Host(dict(fp.attributes), fp.healthy,
                         admission.node_capacity(fp.attributes, node),
                         volumes={n: ro for n, (_, ro) in node.host_volumes.items()},
                         started_at=clock(), gc_after=node.job_gc_threshold,
                         reserved_ports=node.reserved_ports)  # fmt: skip
        self.checkpoints = Checkpointer(store)
        self.variables = VariableStore(store.path.parent)
        self.children = Children(store)
        self._init_inputs(store)
        self.applier = Applier(store, executor, node, self.host.attributes, clock,
                               on_change=self._say, on_fetched=self._download_ended,
                               on_started=lambda: self.queue.put(("started", None)),
                               on_launch=self._launched, on_collect=self._collected,
                               variables=variable_source(self.variables),
                               services=self.template_services)  # fmt: skip
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.checks = Scheduler(lambda t, r: self.queue.put(("checks", (t, r))), self._run_script,
                                clock=clock)
        self.registrar = Registrar(store, executor, self.host.attributes, self.checks, clock)
        self.git = GitInfo(jobs)
        journal = self.loader.journal  # the watcher tells the loader what changed
        self.watcher = Watcher(jobs, self._wake_scan, self._early, journal=journal) if watch else None
        self._warmer = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="warm", initializer=threads.name_this_thread,
            initargs=("warm",))  # fmt: skip
        self.stopping = threading.Event()
        self.passes = 0
        self.change_passes = 0  # reconcile() calls that changed something
        self.startup_seconds = 0.0
        self.adopted = 0
        self.last_plan: Plan | None = None
        self._scan_due = True
        self._last_scan = 0.0
        self._first_event: float | None = None
        self._threads: list[threading.Thread] = []
        self._seen_errors: set[str] = set()
        # What the next pass must plan: every job, or the jobs something happened to.
        self._full = True
        self._touched: set[str] = set()
        self._waiting: set[str] = set()  # jobs blocked for room: planned again when room frees
        self._new_children: set[str] = set()  # launched during this pass: planned in it too
        self._leaving: set[str] = set()  # jobs whose file is gone: plans stay full till they are
        self._deadline_of: dict[str, list[float]] = {}  # job -> when it is due without events
        self._states_of: dict[str, tuple[str, ...]] = {}  # job -> its slots' states
        self._states: Tally[str] = Tally()  # their sum: the tasks gauge
        # Faults: what the service is waiting out, and the exits it could not write yet (at
        # most one per task: a task whose exit is unwritten is not restarted).
        self.recovery = Recovery(clock, stuck_after)
        self.health = self.recovery.health
        self._unrecorded: dict[str, tuple[TaskHandle, ExitResult]] = {}
        self._ended_downloads: set[str] = set()  # task ids whose artifact download ended
        self._check_news: list[Any] = []  # (transitions, restart requests) from the checks
        self.descriptors: Callable[[], tuple[int, int]] = descriptors.usage
        self.fds = descriptors.Usage(lambda: self.descriptors(), executor.fds_per_task, clock)
        self._budget_retry: float | None = None  # starts held back: look again then

    # ---- wake-ups from other threads ----

    def _say(self, line: str) -> None:
        if self._held_lines is not None:
            self._held_lines.append(line)
        else:
            log.info("%s", line)

    _held_lines: list[str] | None = None  # a step's lines, logged after its pass (`step`)

    def _download_ended(self, task_id: str) -> None:
        """A task's artifact download ended (on a download thread): its start is due."""
        self.queue.put(("fetched", task_id))

    def _launched(self, child: JobSpec) -> None:
        self.children.add(child)
        self._touched.add(child.id)
        self._new_children.add(child.id)
        self._dirty = True

    def _collected(self, ids: tuple[str, ...]) -> None:
        self.children.drop(ids)

    def _wake_scan(self, first_event: float) -> None:
        self.queue.put(("scan", first_event))

    def _early(self, path: str) -> None:
        """A burst of file changes began: a start is likely. Prime the executor, and parse the
        first file while the burst settles."""
        self.executor.prime()
        if path:
            self._warmer.submit(self.loader.warm, Path(path))

    def touch(self, jobs: set[str]) -> None:
        """The next pass plans these jobs (a request acted on them)."""
        self._touched |= jobs

    def desired_files(self) -> Mapping[str, JobSpec]:
        """The jobs the job files define, as last scanned."""
        return self._recorded.jobs if self._recorded else {}

    def request(self, action: str, **args: Any) -> Future[Any]:
        req = Request(action, args)
        self.queue.put(("request", req))
        return req.reply

    # ---- lifecycle ----

    def start_threads(self) -> None:
        self._threads.append(threads.start(self._waiter, "exits"))
        self.checks.start()
        self.checkpoints.start()
        if self.watcher is not None:
            self.watcher.start()

    def run(self) -> None:
        """The loop thread. It returns only when the service is stopped: a fault in a pass is
        waited out (Degraded), never raised."""
        self.recovery.loop_ident = threading.get_ident()
        t0 = time.perf_counter()
        self.start_threads()
        self.recovery.busy()
        if self._guarded(self.reconcile):
            self.recovery.recovered()
        self.recovery.idle()
        self.startup_seconds = time.perf_counter() - t0
        self._guarded(self._report_startup)
        while not self.stopping.is_set():
            try:
                self.step(self._next_timeout())
            except Exception as e:  # outside a pass (the queue, the clock): keep going
                self.recovery.log_once("the service loop", e)
                self.stopping.wait(1.0)
        self._guarded(self._finish_starts)  # what runs in the background is recorded
        self._guarded(self.store.flush_exits)  # and exits a failed pass left unwritten
        if self.watcher is not None:
            self.watcher.stop()
        self.checks.stop()
        self.checkpoints.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.queue.put(("noop", None))

    def rescan_all(self) -> None:
        """Rescan and plan every job on the next pass (SIGHUP, `reload`)."""
        self._full = self._dirty = True
        self.queue.put(("scan", time.monotonic()))

    def _report_startup(self) -> None:
        p = self.last_plan
        if p is None:
            return
        obs = self.store.observed(self.applier.live)
        states = [s.state for s in obs.slots.values()]
        log.info(
            "ready in %.2fs: %d tasks running (%d adopted), %d pending, %d failed; "
            "%d job file errors",
            self.startup_seconds, states.count("running"), self.adopted, states.count("pending"),
            states.count("failed"), len(self._recorded.errors) if self._recorded else 0,
        )  # fmt: skip

    def step(self, timeout: float) -> None:
        """Wait for a wake-up (or the timeout), handle everything queued, reconcile once."""
        items: list[tuple[str, Any]] = []
        with contextlib.suppress(queue.Empty):
            items.append(self.queue.get(timeout=timeout))
            trace.mark("dequeued")
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        requests: list[Request] = [v for k, v in items if k == "request"]
        for k, v in items:
            if k == "scan":
                self._scan_due = True
                self._first_event = v if self._first_event is None else min(self._first_event, v)
            elif k == "exit":
                self._exited(v)
            elif k == "fetched":
                self._ended_downloads.add(v)  # kept until written
                self._dirty = True
            elif k == "started":  # starts that ran in the background: recorded next pass
                self._dirty = True
            elif k == "checks":
                self._check_news.append(v)  # kept until written, like exits
                self._dirty = True
        self._dirty |= any(r.action not in READ_ONLY for r in requests)
        if self._budget_retry is not None and self.clock() >= self._budget_retry:
            self._budget_retry, self._full, self._dirty = None, True, True
        self.recovery.busy()
        try:
            if self.recovery.waiting():
                for req in requests:  # answered (or refused with the fault) while waiting
                    answer(self, req)
                return
            # only exits to write: the pass may plan from what writing them left (exits.py)
            only_exits = not (self._ended_downloads or self._check_news) and not any(
                r.action not in READ_ONLY for r in requests)  # fmt: skip
            self._after_exits = None
            if only_exits and self._unrecorded:  # a restart's lines wait for its launch
                self._held_lines = []
            ok = (self._guarded(lambda: self._finish_starts_before(requests))
                  and self._guarded(self._record_exits) and self._guarded(self._record_fetches)
                  and self._guarded(self._record_checks))
            if not only_exits:
                self._after_exits = None
            for req in requests:
                answer(self, req)
            if ok:
                self._guarded(self._fill_commits)
                if self.clock() - self._last_scan >= RESCAN_EVERY:
                    self._scan_due = True
                if self._guarded(lambda: self.reconcile(force=False)):
                    self.recovery.recovered()
                    self.checkpoints.poke()
                    self.recovery.check_wal(self.store)
        finally:
            self.recovery.idle()
            held, self._held_lines = self._held_lines, None
            for line in held or ():
                log.info("%s", line)
            trace.flush()

    def _finish_starts_before(self, requests: list[Request]) -> None:
        """Starts in the background are recorded before an exit of one of their tasks, or a
        request that may act on them; a scan need not wait for them (reconcile)."""
        starting = self.applier.starting
        if starting and (any(r.action not in READ_ONLY for r in requests)
                         or any(hid in starting for hid in self._unrecorded)):  # fmt: skip
            self._finish_starts()

    def _run_script(self, handle: TaskHandle, argv: list[str], timeout: float) -> tuple[int, bytes]:
        r = self.executor.exec(handle, argv, timeout)
        return r.exit_code, r.output

    def _record_checks(self) -> None:
        """Check transitions from the scheduler: history, and check_restart's restarts. Kept
        while the store is unavailable; anything else wrong is logged and dropped."""
        if not self._check_news:
            return
        transitions = [t for ts, _ in self._check_news for t in ts]
        restarts = [r for _, rs in self._check_news for r in rs]
        restarted = {k.job for r in restarts for k in r.keys}
        self._touched |= {t.check.job for t in transitions} | restarted
        try:
            if transitions:
                self.store.record_transitions(transitions)
            self._check_news = [([], restarts)] if restarts else []
            if restarts:
                obs = self.store.observed(self.applier.live, restarted)
                for r in restarts:  # a repeat finds the task stopping already: no harm
                    self.applier.check_restart(r.keys, r.reason, obs)
        except Exception as e:
            if transient_cause(e) is not None:
                raise
            self.recovery.log_once("recording check results", e)
        self._check_news = []

    def _record_fetches(self) -> None:
        """Tasks whose artifact downloads ended may start now."""
        for task_id in sorted(self._ended_downloads):
            self._touched |= self.applier.artifacts_fetched([task_id])
            self._ended_downloads.discard(task_id)

    # ---- faults ----

    def _guarded(self, work: Callable[[], object]) -> bool:
        return self.recovery.guard(work, self._redo)

    def _redo(self) -> None:
        self._full = self._dirty = True  # whatever the failed pass was to do, the next one does

    def check_stuck(self) -> bool:
        return self.recovery.check_stuck()

    def where(self) -> str:
        return self.recovery.where()

    def report(self) -> dict[str, Any]:
        """The service's condition, for `status` (read from the control thread, lock-free)."""
        return self.recovery.report(self.descriptors(), self.executor.fds_per_task,
                                    len(self._unrecorded) + self.store.unwritten_exits(),
                                    self.passes)  # fmt: skip
