"""One pass of the loop: scan if due, plan, apply, and again while a plan unlocks more
(lifecycle, restarts), then what the next pass needs (deadlines, waits, the registry). Part of
the Service (loop.py), kept in its own file so that the loop stays readable."""

from __future__ import annotations

import logging
import time

from reconciler import metrics, trace
from reconciler.db.snapshot import Observed
from reconciler.plan import Host, Plan, leaving, plan
from reconciler.service import descriptors
from reconciler.service.children import Children
from reconciler.service.deadlines import Deadlines
from reconciler.service.exits import Exits
from reconciler.service.inputs import TemplateInputs
from reconciler.service.registry import Registrar
from reconciler.service.scans import Scans
from reconciler.spec import sharing
from reconciler.spec.load import Desired

log = logging.getLogger("reconciler")


class Passes(Scans, Deadlines, TemplateInputs, Exits):
    children: Children
    registrar: Registrar
    fds: descriptors.Usage
    allow_empty: bool
    last_plan: Plan | None
    passes: int
    change_passes: int
    adopted: int
    _scan_due: bool
    _first_event: float | None
    _leaving: set[str]
    _new_children: set[str]
    _dirty = True

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
                    or p.launch or p.collect or p.canaries):  # fmt: skip
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

    def _finish_starts(self) -> None:
        """Record the starts that ran in the background; their jobs are planned next."""
        if self.applier.bulks:
            self._touched |= self.applier.finish_starts()
            self._dirty = True
            self._after_exits = None  # (written since the exits' read)
