"""The service: one loop thread owns every state change; watch, exits and the control API only
wake it through a queue.

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

from reconciler import metrics, trace
from reconciler.apply import Applier
from reconciler.db.parsecache import ParseRows
from reconciler.db.snapshot import Observed
from reconciler.db.store import ProblemRow, Store, VersionRow
from reconciler.db.variables import VariableStore
from reconciler.executor.base import Executor, ExitResult, NodeConfig, TaskHandle
from reconciler.faults import raise_if_transient, transient_cause
from reconciler.plan import Host, Plan, admission, leaving, plan
from reconciler.service import descriptors, threads
from reconciler.service.checkpoints import Checkpointer
from reconciler.service.checks import Scheduler
from reconciler.service.children import Children
from reconciler.service.clock import SteadyClock
from reconciler.service.exits import Exits
from reconciler.service.gitinfo import GitInfo
from reconciler.service.inputs import TemplateInputs
from reconciler.service.recovery import Recovery
from reconciler.service.registry import Registrar
from reconciler.service.requests import Request, answer
from reconciler.spec import sharing
from reconciler.spec.load import Desired, JobSpec, Loader
from reconciler.spec.models import effective_update
from reconciler.taskconfig import variable_source
from reconciler.watch import Watcher

log = logging.getLogger("reconciler")
RESCAN_EVERY = 30.0
SETTLE = 0.5  # at most this long, a directory that is still changing is read again
READ_ONLY = ("health", "stats")  # requests that change nothing: no pass follows them


class Service(TemplateInputs, Exits):
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
                         started_at=clock(), gc_after=node.job_gc_threshold)  # fmt: skip
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
        self._states_of: dict[str, Tally[str]] = {}  # job -> its slots by state
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
        log.info("%s", line)

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

    def _next_timeout(self) -> float:
        now = self.clock()
        if self.recovery.retry_at is not None:
            return max(0.0, min(RESCAN_EVERY, self.recovery.retry_at - now))
        wake = self._last_scan + RESCAN_EVERY
        if self._budget_retry is not None:
            wake = min(wake, self._budget_retry)
        if (git := self.git.recheck_at(now)) is not None:
            wake = min(wake, git)
        for times in self._deadline_of.values():
            for t in times:
                if t > self._last_pass:  # a deadline the last pass saw must not spin the loop
                    wake = min(wake, t)
        return max(0.0, min(RESCAN_EVERY, wake - now))

    def _due(self, now: float) -> set[str]:
        """Jobs with a deadline since the last pass. Jobs whose deadlines a pass has seen
        already are dropped: what is kept is what lies ahead, not one entry per job."""
        due: set[str] = set()
        seen: list[str] = []
        for job, times in self._deadline_of.items():
            if max(times, default=0.0) <= self._last_pass:
                seen.append(job)
            elif any(self._last_pass < t <= now for t in times):
                due.add(job)
        for job in seen:
            del self._deadline_of[job]
        return due

    def _note_jobs(self, obs: Observed, scope: frozenset[str] | None) -> None:
        """What is kept per planned job between passes: its slots by state, and when it is due
        without any event (a delayed restart, a health check)."""
        if scope is None:
            self._deadline_of, self._states_of, self._states = {}, {}, Tally()
        else:
            for job in scope:
                self._deadline_of.pop(job, None)
                self._states.subtract(self._states_of.pop(job, {}))
        for s in obs.slots.values():
            if scope is not None and s.key.job not in scope:
                continue  # read along (a wide scope reads every job): its note stands
            self._states_of.setdefault(s.key.job, Tally())[s.state] += 1
            self._states[s.state] += 1
            due: list[float] = []
            if s.state == "pending" and s.next_start_at:
                due.append(s.next_start_at)
            if s.state == "running" and s.instance is not None:
                spec = self.applier.specs.get(s.key.job)
                rec = obs.jobs.get(s.key.job)
                upd = effective_update(spec.job, next(iter(spec.job.group.values()))) if spec else None
                rolling = rec if spec and rec and rec.applied_digest != spec.digest else None
                healthy_at = s.instance.started_at + upd.min_healthy_time + 0.01 if upd else 0.0
                if upd and (healthy_at > self._last_pass or rolling):
                    # a young instance frees max_parallel for the next one (also after a revert)
                    due.append(healthy_at)
                if upd and rolling:
                    due += [c.since + upd.min_healthy_time + 0.01  # checks good long enough
                            for c in obs.checks.get(s.key.alloc, ())]  # fmt: skip
                    if rolling.attempted_at:
                        due.append(rolling.attempted_at + upd.healthy_deadline + 0.01)
            if due:
                self._deadline_of.setdefault(s.key.job, []).extend(due)

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
            trace.flush()

    def _fill_commits(self) -> None:
        jobs = self._recorded.jobs if self._recorded else {}
        self.git.fill({job: spec.digest for job, spec in jobs.items()}, self.store.fill_commits)

    def _finish_starts(self) -> None:
        """Record the starts that ran in the background; their jobs are planned next."""
        if self.applier.bulks:
            self._touched |= self.applier.finish_starts()
            self._dirty = True
            self._after_exits = None  # (written since the exits' read)

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
                                    len(self._unrecorded), self.passes)  # fmt: skip

    # ---- one pass ----

    def scan(self) -> Desired:
        if self.watcher is not None:
            self.watcher.check()
        desired = self.loader.scan()
        trace.mark("loaded")
        raise_if_transient(desired.directory_ok, desired.directory_error)
        settle_by = time.monotonic() + SETTLE
        while desired is not self._recorded and not self.loader.settled():
            if time.monotonic() > settle_by:
                break
            time.sleep(0.004)  # still being written (a checkout in progress): read it again
            trace.mark("read_again")
            desired = self.loader.scan()
            raise_if_transient(desired.directory_ok, desired.directory_error)
        self._last_scan = self.clock()
        if desired is self._recorded:
            return desired
        # with the loader's own record of what its scans changed, only those jobs are compared
        candidates = self.loader.changed_since(self._recorded) if self._recorded else None
        changed = _changed_jobs(self._recorded, desired, candidates)
        self._note_changes(self._recorded, desired, changed, candidates)
        self.git.new_scan()
        # only what changed since the last recorded scan: 1 file, not 1,000
        versions = [VersionRow(s.id, s.digest, s.canonical, s.file) for s in changed]
        problems = [
            ProblemRow(p.file, p.line, p.column, p.path, p.message, p.severity)
            for p in desired.problems
        ]
        # written in the pass's first transaction (a start's, after its launch) or after it;
        # then the versions git gave no commit yet are remembered
        now = self.clock()
        self.store.defer_scan(versions, problems, now, self.git.commit_of,
                              written=lambda: self.git.recorded(versions, now))  # fmt: skip
        for p in desired.problems:
            text = str(p)
            if text not in self._seen_errors:
                log.warning("%s", text.splitlines()[0])
        self._seen_errors = {str(p) for p in desired.problems}
        metrics.file_problems(desired)
        self._recorded = desired
        return desired

    def _note_changes(self, before: Desired | None, after: Desired, changed: list[JobSpec],
                      candidates: frozenset[str] | None = None) -> None:
        """Which jobs a new desired state asks the next pass to plan. `candidates`: the only
        jobs that may differ between the two (None: any may)."""
        left = False
        if before is not None:
            olds = before.jobs.keys() if candidates is None else candidates & before.jobs.keys()
            left = any(job not in after.jobs for job in olds)
        if (
            before is None or not (before.directory_ok and after.directory_ok)
            or left or before.held != after.held
            or before.broken_files != after.broken_files
        ):  # fmt: skip
            self._full = True  # a job left or is held: only a plan of every job may stop it
            return
        self._touched |= {spec.id for spec in changed}

    _recorded: Desired | None = None
    _dirty = True
    _last_pass = 0.0

    @property
    def desired(self) -> Desired | None:
        """The last recorded scan: immutable, so other threads (the HTTP API) may read it."""
        return self._recorded

    def reconcile(self, force: bool = True) -> Plan | None:
        """One pass. Unforced, it is skipped when nothing it reads can have changed: the same
        desired state, no exit, no request and no deadline passed since the last pass (plan is
        pure, and depends on time only through those deadlines)."""
        started = time.perf_counter()
        if self._scan_due or self._recorded is None:
            before = self._recorded
            desired = self.scan()
            self._scan_due = False
            self._read_inputs()
            self._dirty |= desired is not before
        else:
            desired = self._recorded
        self._finish_starts()  # after the scan: it ran beside them
        now = self.clock()
        self._release_waits(now)
        due = self._due(now)
        if not (force or self._dirty or due):
            self._write_scan()
            return None
        full = force or self._full or bool(self._leaving)
        scope = None if full else frozenset(self._touched | due)
        self._full, self._touched, self._dirty = False, set(), False
        self._last_pass = now
        try:
            p, observed, scope = self._converge(desired, scope)
        except BaseException:
            self._full = self._dirty = True  # whatever this pass was to do, the next one does
            raise
        self._write_scan()
        self._note_jobs(observed, scope)
        for job, t in p.wake.items():  # periodic launches, garbage collection
            self._deadline_of.setdefault(job, []).append(t)
        self._note_waits()
        self._waiting = set(p.waiting) if scope is None else (self._waiting - scope) | p.waiting
        try:
            if self.registrar.sync(observed, self.applier.specs, scope):
                self._read_services()
        except Exception:
            log.exception("updating the service registry")
        if scope is None:
            merged = self.children.merged(desired)
            self._leaving = leaving(merged, observed)
            self._forget_gone(merged, observed)
        self.fds.refresh(self._tasks_held())  # (after the starts, not before them)
        metrics.pass_done(time.perf_counter() - started, self._states)
        if self._first_event is not None:
            metrics.pickup(time.monotonic() - self._first_event)
            self._first_event = None
        return p

    def _write_scan(self) -> None:
        """What the scan left to write after the starts: its record (unless a start's
        transaction took it) and the new parse-cache rows."""
        if self.store.flush_scan():
            trace.mark("scan_recorded")
        self.loader.flush_rows()

    def _forget_gone(self, desired: Desired, observed: Observed) -> None:
        """After a full pass: the applier keeps no spec of a job whose file is gone and of
        which no slot is left (a service that saw 1,000 jobs come and go holds none of them)."""
        with_slots = {k.job for k in observed.slots}
        specs = self.applier.specs
        gone = [j for j in specs if j not in desired.jobs and j not in with_slots]
        for job_id in gone:
            del specs[job_id]
        if gone:  # their models, held once for every job equal to them, may go too
            sharing.prune()

    def _converge(
        self, desired: Desired, scope: frozenset[str] | None
    ) -> tuple[Plan, Observed, frozenset[str] | None]:
        """Plan and apply until nothing more unlocks (lifecycle, restarts), at most 5 times."""
        changed = False
        desired = self.children.merged(desired)
        observed = self._observed_after_exits(scope) or self.store.observed(self.applier.live, scope)
        trace.mark("observed")
        for _ in range(5):
            if self._new_children:  # launched by the last plan: planned (and started) now
                desired = self.children.merged(self._recorded or desired)
                scope = None if scope is None else scope | self._new_children
                self._new_children = set()
                observed = self.store.observed(self.applier.live, scope)
            p = plan(desired, observed, self._host_now(), self.clock(),
                     allow_empty=self.allow_empty, scope=scope)  # fmt: skip
            trace.mark("planned")
            if any(a.reason.startswith("blocked: file descriptor") for a in p.blocked):
                self._budget_retry = self.clock() + 5.0
            for w in p.warnings:
                log.warning("%s", w)
            wrote = self.applier.apply(p, observed)
            trace.mark("applied")
            self.adopted += len(p.adopt)
            self.last_plan = p
            self.passes += 1
            changed = changed or p.changes > 0
            if self.applier.bulks:  # starts run on: the pass their end wakes plans this again
                self._full |= scope is None
                self._touched |= scope or set()
                break
            if wrote:
                observed = self.store.observed(self.applier.live, scope)
            if p.collect:  # collected children leave: only a plan of every job removes them
                desired = self.children.merged(self._recorded or desired)
                scope = None
                observed = self.store.observed(self.applier.live)
            if not (p.start or p.adopt or p.promote or p.revert or p.forget or p.attempt
                    or p.launch or p.collect):  # fmt: skip
                break
        self.change_passes += changed
        return p, observed, scope  # grown by launched children, or full after a collection

    def _tasks_held(self) -> int:
        """Tasks whose descriptors the service holds, or will once their start ends."""
        return len(self.applier.running) + sum(len(b.ready) for b in self.applier.bulks)

    def _host_now(self) -> Host:
        """The host with how many tasks may still start (descriptors)."""
        usage = self.fds.now(self._tasks_held())
        return descriptors.host_now(self.host, usage, self.executor.fds_per_task)


def _changed_jobs(
    before: Desired | None, after: Desired, candidates: frozenset[str] | None = None
) -> list[JobSpec]:
    """Jobs that are new, or whose spec or file differs from `before`; only `candidates` may."""
    old = before.jobs if before else {}
    specs = after.jobs.values() if candidates is None else (
        after.jobs[job] for job in sorted(candidates) if job in after.jobs)  # fmt: skip
    return [
        spec for spec in specs
        if (b := old.get(spec.id)) is None or (b.digest, b.file) != (spec.digest, spec.file)
    ]  # fmt: skip



