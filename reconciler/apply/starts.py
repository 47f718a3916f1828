"""Starting tasks: every start of a pass is launched together (the executor overlaps their
kernel work) and recorded in one transaction; a start that fails goes through the restart
policy; artifacts are fetched in the background first.

A large batch can run in the background where the executor allows it: the loop goes on reading
the job files that keep arriving while the shims of the earlier ones do their set-up, and
records the batch (`finish_starts`) before it plans again. Until then nothing is recorded, as
for a batch the loop waits for: a crash in between leaves tasks the next start of their slots
ends (their cgroups are made again)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor

from reconciler import restarts, trace
from reconciler.apply.core import Bulk, Running
from reconciler.apply.rescheduling import Rescheduling, tracker_of
from reconciler.db.snapshot import Observed, SlotKey, SlotRecord
from reconciler.db.store import Event, Started
from reconciler.executor.base import ArtifactError, StartError, TaskConfig, TaskHandle
from reconciler.faults import TransientFault, transient_cause
from reconciler.plan import Action, admission
from reconciler.spec.load import JobSpec
from reconciler.spec.template import TemplateError
from reconciler.taskconfig import task_config

log = logging.getLogger("reconciler")
# A slot whose artifacts are downloading is planned again this often, in case their completion
# is never heard of (the service restarted meanwhile); completion itself wakes it at once.
ARTIFACT_RECHECK = 10.0
# From this many starts in one pass, an executor that allows it starts them in the background.
# Fewer are waited for: a single pickup or restart is recorded in the pass that started it.
BACKGROUND_FROM = 8


class Starts(Rescheduling):
    def _start_all(self, actions: tuple[Action, ...], observed: Observed, now: float) -> None:
        """Launch every start of the pass together, then record them in one transaction."""
        ready: list[tuple[Action, TaskConfig]] = []
        for a in actions:
            assert a.spec is not None
            try:
                config = task_config(a.spec, a.key, self.node, self.attributes, self.variables,
                                     self.services, cores=a.cores, ports=a.ports)  # fmt: skip
                config = self._with_payload(a.spec, a.key, config)
            except KeyError as e:
                self._start_failed(a, observed.slots.get(a.key), f"cannot resolve ${{{e.args[0]}}}",
                                   now, permanent=True, event="Failed Validation",
                                   observed=observed)  # fmt: skip
                continue
            except TemplateError as e:
                self._start_failed(a, observed.slots.get(a.key), f"template {e}", now,
                                   permanent=True, event="Template Failed",
                                   observed=observed)  # fmt: skip
                continue
            if not config.artifacts or self._artifacts_ready(a, config, observed, now):
                ready.append((a, config))
        trace.mark("configured")
        configs = [c for _, c in ready]
        if len(ready) >= BACKGROUND_FROM and self.executor.background_starts:
            future = self._starter().submit(self.executor.start_all, configs)
            future.add_done_callback(lambda _f: self.on_started())
            self.bulks.append(Bulk(ready, observed, future))
            return
        results = self.executor.start_all(configs)
        trace.mark("exec_reported")
        self._record_results(ready, results, observed, now)

    @property
    def starting(self) -> frozenset[str]:
        """Ids of the tasks whose start runs in the background, not recorded yet."""
        return frozenset(c.id for b in self.bulks for _, c in b.ready)

    def finish_starts(self) -> set[str]:
        """Wait for the starts running in the background and record them (as a pass that
        waited for them would have); returns their jobs, for the next plan."""
        jobs: set[str] = set()
        fault: Exception | None = None
        while self.bulks:
            bulk = self.bulks.pop(0)
            jobs |= {a.key.job for a, _ in bulk.ready}
            try:  # the results of every bulk are recorded before a fault is raised
                results = bulk.results.result()
                trace.mark("exec_reported")
                self._record_results(bulk.ready, results, bulk.observed, self.clock())
            except Exception as e:
                fault = fault or e
        if fault is not None:
            raise fault
        return jobs

    def _starter(self) -> ThreadPoolExecutor:
        if self._background is None:
            self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="starts")
        return self._background

    def _record_results(self, ready: list[tuple[Action, TaskConfig]],
                        results: list[TaskHandle | Exception], observed: Observed,
                        now: float) -> None:  # fmt: skip
        batch: list[Started] = []
        host_fault: TransientFault | None = None
        for (a, _), result in zip(ready, results, strict=True):
            slot = observed.slots.get(a.key)
            if isinstance(result, Exception) and (cause := transient_cause(result)):
                # The host, not the task (a full disk, no descriptors): not a failed start
                # against the restart policy; the pass is retried once the fault is gone.
                host_fault = host_fault or TransientFault(cause, f"starting {a.key}: {result}")
                continue
            if isinstance(result, Exception):
                permanent = isinstance(result, StartError)
                if not permanent:
                    log.error("starting %s: %s", a.key, result)
                self._start_failed(a, slot, str(result), now, permanent=permanent,
                                   event="Driver Failure", observed=observed)  # fmt: skip
                continue
            events = [Event("Received", "task received by reconciler")] if slot is None else []
            events += [Event("Task Setup", "building task directory"),
                       Event("Started", f"task started by reconciler (pid {result.pid})")]  # fmt: skip
            assert a.spec is not None
            new_spec = slot is None or slot.spec_digest != a.task_digest
            held = admission.of_task(a.spec.job.group[a.key.group].task[a.key.task])
            # started_at on the service's clock: health deadlines are measured against it
            handle = dataclasses.replace(result, started_at=now)
            batch.append(Started(a.key, a.task_digest, a.spec.digest, handle, events, new_spec,
                                 (held.cpu, held.memory, held.cores), a.cores, a.ports))  # fmt: skip
        if batch:
            self._record_starts(batch, now)
            trace.mark("start_recorded")
        if host_fault is not None:
            raise host_fault

    def _record_starts(self, batch: list[Started], now: float) -> None:
        try:
            ids = self.store.started(batch, now)
        except Exception:
            # A task nobody knows about would be started a second time by the next pass: stop
            # what cannot be recorded; it starts again once the store takes writes.
            for s in batch:
                assert isinstance(s.handle, TaskHandle)
                with contextlib.suppress(Exception):
                    self.executor.destroy(s.handle, force=True)
            log.warning("%d new tasks stopped again: their start could not be recorded",
                        len(batch))  # fmt: skip
            raise
        for s, inst_id in zip(batch, ids, strict=True):
            handle = s.handle
            assert isinstance(handle, TaskHandle)
            self.running[handle.id] = Running(inst_id, s.key, handle)
            self.on_change(f"{s.key}: started pid {handle.pid}")

    def _artifacts_ready(self, a: Action, config: TaskConfig, observed: Observed,
                         now: float) -> bool:  # fmt: skip
        """Artifacts are fetched in the background: until they are there, the slot waits
        (pending) and the pass goes on; a failed download goes through the restart policy."""
        slot = observed.slots.get(a.key)
        try:
            state = self.executor.fetch_artifacts(config, self.on_fetched)
        except ArtifactError as e:
            self.fetching.pop(config.id, None)
            self._start_failed(a, slot, str(e), now, permanent=False,
                               event="Failed Artifact Download", observed=observed)  # fmt: skip
            return False
        if state == "ready":
            self.fetching.pop(config.id, None)
            return True
        self.fetching[config.id] = a.key
        events = []
        if state == "started":
            events = [Event("Received", "task received by reconciler")] if slot is None else []
            events.append(Event("Downloading Artifacts", "Client is downloading artifacts"))
            self.on_change(f"{a.key}: downloading artifacts")
        assert a.spec is not None
        self.store.defer_start(a.key, a.task_digest, a.spec.digest, now + ARTIFACT_RECHECK,
                               events, now, a.ports)  # fmt: skip
        return False

    def artifacts_fetched(self, task_ids: list[str]) -> set[str]:
        """Downloads ended: their slots may start at once. Returns the jobs concerned."""
        now = self.clock()
        jobs = set()
        for tid in task_ids:
            key = self.fetching.get(tid)
            if key is not None and self.store.hurry(key, now):
                jobs.add(key.job)
            self.fetching.pop(tid, None)
        return jobs

    def _with_payload(self, spec: JobSpec, key: SlotKey, config: TaskConfig) -> TaskConfig:
        """A dispatched child's payload (kept in the store) for a task with dispatch_payload,
        written as Nomad's dispatch hook does: once per task (a restart finds the file as the
        task left it), and not at all when the payload is empty."""
        wants = spec.job.group[key.group].task[key.task].dispatch_payload
        if wants is None or self.store.has_run(*key):
            return config
        data = self.store.payload(key.job)
        if not data:
            return config
        return dataclasses.replace(config, payload=data, payload_file=wants.file)

    def _start_failed(
        self, a: Action, slot: SlotRecord | None, error: str, now: float, *, permanent: bool,
        event: str, observed: Observed,
    ) -> None:  # fmt: skip
        policy = self._policy(a.key)
        restarts_n = slot.restarts if slot and slot.spec_digest == a.task_digest else 0
        window = slot.window_start if slot and slot.spec_digest == a.task_digest else None
        if policy is None:
            d = restarts.Decision("failed", None, restarts_n, window, "Not Restarting", error)
        else:
            d = restarts.after_exit(
                successful=False, restarts=restarts_n, window_start=window, policy=policy[0],
                restart_on_success=policy[1], now=now, jitter=self.jitter(),
                unrecoverable=error if permanent else "",
            )  # fmt: skip
        assert a.spec is not None
        events = [Event(event, error), Event(d.event, d.message)]
        placed = (self._reschedule_at(a.key, tracker_of(slot, a.task_digest), now)
                  if d.event == "Not Restarting" else None)  # fmt: skip
        if placed is not None:  # the instance fails as a whole; its policy places it again
            d = restarts.Decision("pending", placed.at, 0, None, d.event, d.message)
            events.append(placed.note)
        self.store.start_failed(
            a.key, a.task_digest, a.spec.digest, error, now, d.state, d.next_start_at,
            d.restarts, d.window_start, events, a.ports,
        )  # fmt: skip
        if placed is not None:
            self.store.set_slot(a.key, now, reason=placed.reason, reschedule=placed.tracker)
            self._reschedule_siblings(a.key, placed, observed, now)
        self.on_change(f"{a.key}: failed to start: {error}")
