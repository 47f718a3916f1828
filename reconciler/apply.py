"""Apply: perform a Plan through the executor and record every step in the store.

Also where task exits land: the restart policy decides what a slot does next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import metrics, restarts, trace
from reconciler.db.children import Launched
from reconciler.db.snapshot import InstanceRecord, JobRecord, Observed, SlotKey, SlotRecord
from reconciler.db.store import Event, Started, Store
from reconciler.errors import PermanentError
from reconciler.executor.base import (
    ArtifactError,
    Executor,
    ExitResult,
    NodeConfig,
    StartError,
    TaskConfig,
    TaskHandle,
)
from reconciler.faults import TransientFault, transient_cause
from reconciler.lifecycle import phase
from reconciler.plan import Action, Plan, admission
from reconciler.spec.load import JobSpec
from reconciler.spec.models import RUNS_TO_COMPLETION, EffectiveRestart, Job, effective_restart
from reconciler.spec.template import ServiceSource, TemplateError, VariableSource
from reconciler.taskconfig import task_config

log = logging.getLogger("reconciler")
# A slot whose artifacts are downloading is planned again this often, in case their completion
# is never heard of (the service restarted meanwhile); completion itself wakes it at once.
ARTIFACT_RECHECK = 10.0


@dataclass
class Running:
    instance_id: int
    key: SlotKey
    handle: TaskHandle


def handle_of(key: SlotKey, inst: InstanceRecord) -> TaskHandle:
    return TaskHandle(
        id=str(key), pid=inst.pid, shim_pid=inst.shim_pid, shim_start_ticks=inst.shim_start_ticks,
        boot_id=inst.boot_id, cgroup=inst.cgroup, task_dir=inst.task_dir,
        started_at=inst.started_at,
    )  # fmt: skip


@dataclass
class Applier:
    store: Store
    executor: Executor
    node: NodeConfig
    attributes: Mapping[str, str]
    clock: Callable[[], float]
    jitter: Callable[[], float] = random.random
    on_change: Callable[[str], None] = lambda _line: None
    # a child job was launched or dispatched / children were garbage-collected
    on_launch: Callable[[JobSpec], None] = lambda _spec: None
    on_collect: Callable[[tuple[str, ...]], None] = lambda _ids: None
    running: dict[str, Running] = field(default_factory=dict)  # by task handle id
    specs: dict[str, JobSpec] = field(default_factory=dict)  # effective spec per job
    variables: VariableSource | None = None  # Nomad Variables for templates
    services: ServiceSource | None = None  # the service registry for templates
    on_fetched: Callable[[str], None] = lambda _task_id: None  # called from a download thread
    fetching: dict[str, SlotKey] = field(default_factory=dict)  # by task id: downloads running

    @property
    def live(self) -> frozenset[int]:
        return frozenset(r.instance_id for r in self.running.values())

    # ---- a whole plan ----

    def apply(self, plan: Plan, observed: Observed) -> bool:
        """Perform the plan; True when anything was written."""
        now = self.clock()
        for job_id, why in plan.revert:
            self.store.reject(job_id, why, now)
            self.on_change(f"{job_id}: rolled back ({why})")
        for a in plan.adopt:
            self._adopt(observed.slots[a.key], observed, now)
        for a in plan.stop:
            self._stop(a, observed, a.intent or "remove", now)
        for a in plan.restart:
            self._stop(a, observed, "update", now)
        for a in plan.rerender:
            self._rerender(a, observed, now)
        for a in plan.start:
            if a.spec is not None:
                self.specs[a.key.job] = a.spec
        if plan.start:
            self._start_all(plan.start, observed, now)
        if plan.attempt:  # bookkeeping after the starts: they are what the user waits for
            self.store.attempt({j: spec.digest for j, spec in plan.attempt.items()}, now)
        for a in plan.keep:
            if a.spec is not None:
                self.specs[a.key.job] = a.spec
        if plan.forget:
            self.store.forget(plan.forget)
            self._release_empty_allocs(plan.forget, observed)
        if plan.promote:
            self.store.promote(plan.promote, now)
            for job_id in plan.promote:
                self.on_change(f"{job_id}: version applied")
        for anchor in plan.anchor:
            self.store.anchor(anchor.parent, anchor.at, anchor.digest, now, anchor.event)
            if anchor.event:
                self.on_change(f"{anchor.parent}: {anchor.event[1]}")
        for launch in plan.launch:
            parent = observed.jobs.get(launch.parent)
            digest = parent.periodic_digest if parent else ""
            self.launch(launch.spec, launch.parent, launch.kind, launch.event, now,
                        anchor=(launch.at, digest))  # fmt: skip
        if plan.collect:
            self.store.collect(plan.collect, now)
            self.on_collect(plan.collect)
            for job_id in plan.collect:
                self.on_change(f"{job_id}: garbage-collected")
        changed = {
            job_id: st
            for job_id, st in plan.status.items()
            if (rec := observed.jobs.get(job_id)) is None or (rec.status, rec.reason) != st
        }
        if changed:
            self.store.set_status(changed, now)
        return bool(
            changed or plan.changes or plan.attempt or plan.promote or plan.revert or plan.forget
            or plan.anchor or plan.launch or plan.collect
        )

    def launch(
        self, child: JobSpec, parent: str, kind: str, event: tuple[str, str], now: float, *,
        anchor: tuple[float, str] | None = None, meta: str = "", payload: bytes | None = None,
        token: str | None = None,
    ) -> bool:  # fmt: skip
        """Record a child job; the service adds it to the desired state. False when a child
        of that name exists already (two launches in one second)."""
        row = Launched(child.id, parent, kind, child.digest, child.canonical, child.file, meta,
                       payload, token)  # fmt: skip
        if not self.store.launch(row, now, event, anchor):
            return False
        self.on_launch(child)
        self.on_change(f"{parent}: launched {child.id} ({kind})")
        return True

    # ---- steps ----

    def _adopt(self, slot: SlotRecord, observed: Observed, now: float) -> None:
        inst = slot.instance
        assert inst is not None
        handle = handle_of(slot.key, inst)
        if self.executor.recover(handle):
            self.running[handle.id] = Running(inst.id, slot.key, handle)
            self.on_change(f"{slot.key}: adopted pid {inst.pid}")
            if slot.state == "stopping":  # half-done work from before the crash: finish it
                signal, timeout, _ = self._kill_settings(slot.key, observed)
                self.executor.stop(handle, signal, timeout)
            return
        self.store.finished(
            inst.id, exit_code=-1, signal=0, oom=False, finished_at=now, outcome="lost",
            error="the task was gone when the service restarted (machine rebooted?)", now=now,
            slot_state="pending", next_start_at=now, reason="lost",
            events=[Event("Failed Restoring Task", "task was not running; starting it again")],
        )  # fmt: skip
        self.on_change(f"{slot.key}: lost while the service was down; restarting")

    def _kill_settings(self, key: SlotKey, observed: Observed) -> tuple[str, float, float]:
        job = self._job_model(key.job, observed.jobs.get(key.job))
        if job is None or key.group not in job.group or key.task not in job.group[key.group].task:
            return "SIGINT", 5.0, 0.0
        task = job.group[key.group].task[key.task]
        delay = task.shutdown_delay or job.group[key.group].shutdown_delay
        return task.kill_signal or "SIGINT", task.kill_timeout, delay

    def _job_model(self, job_id: str, record: JobRecord | None) -> Job | None:
        if job_id in self.specs:
            return self.specs[job_id].job
        if record and record.applied_canonical:
            return Job.model_validate_json(record.applied_canonical)
        return None

    def _stop(self, a: Action, observed: Observed, intent: str, now: float,
              first: tuple[Event, ...] = ()) -> None:  # fmt: skip
        """Stop a slot's task with its job's kill settings; `first`: events recorded before."""
        slot = observed.slots.get(a.key)
        if slot is None or slot.instance is None:
            return
        signal, timeout, delay = self._kill_settings(a.key, observed)
        handle = handle_of(a.key, slot.instance)
        events = [*first, Event("Killing", f"{a.reason}: sent {signal}, force kill after {timeout:g}s")]
        if delay:
            events.insert(len(first), Event("Waiting for shutdown delay", f"{delay:g}s"))
        self.store.stopping(a.key, intent, now, events)
        self.executor.stop(handle, signal, timeout, delay)
        self.on_change(f"{a.key}: stopping ({a.reason})")

    def _rerender(self, a: Action, observed: Observed, now: float) -> None:
        slot = observed.slots.get(a.key)
        if a.spec is None or slot is None or slot.instance is None:
            return
        try:
            config = task_config(a.spec, a.key, self.node, self.attributes, self.variables,
                                 self.services, cores=slot.core_ids)  # fmt: skip
            self.executor.render_templates(config)
        except (StartError, TemplateError) as e:  # refused or failed: recorded, and the
            # running task keeps its previous files
            self.store.set_slot(a.key, now, spec_digest=a.task_digest)
            why = f"template {e}" if isinstance(e, TemplateError) else str(e)
            self.store.event(a.key, "Template Failed", why, now)
            self.on_change(f"{a.key}: template failed ({why})")
            return
        if a.signal:
            with contextlib.suppress(ProcessLookupError, PermanentError):
                self.executor.signal(handle_of(a.key, slot.instance), a.signal)
        self.store.set_slot(a.key, now, spec_digest=a.task_digest)
        self.store.event(
            a.key, "Template Rendered", f"signal {a.signal}" if a.signal else "noop", now
        )

    def _start_all(self, actions: tuple[Action, ...], observed: Observed, now: float) -> None:
        """Launch every start of the pass together, then record them in one transaction."""
        ready: list[tuple[Action, TaskConfig]] = []
        for a in actions:
            assert a.spec is not None
            try:
                config = task_config(a.spec, a.key, self.node, self.attributes, self.variables,
                                     self.services, cores=a.cores)  # fmt: skip
                config = self._with_payload(a.spec, a.key, config)
            except KeyError as e:
                self._start_failed(a, observed.slots.get(a.key), f"cannot resolve ${{{e.args[0]}}}",
                                   now, permanent=True, event="Failed Validation")  # fmt: skip
                continue
            except TemplateError as e:
                self._start_failed(a, observed.slots.get(a.key), f"template {e}", now,
                                   permanent=True, event="Template Failed")  # fmt: skip
                continue
            if not config.artifacts or self._artifacts_ready(a, config, observed, now):
                ready.append((a, config))
        trace.mark("configured")
        results = self.executor.start_all([c for _, c in ready])
        trace.mark("exec_reported")
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
                                   event="Driver Failure")  # fmt: skip
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
                                 (held.cpu, held.memory, held.cores), a.cores))  # fmt: skip
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
                               event="Failed Artifact Download")  # fmt: skip
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
                               events, now)  # fmt: skip
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

    def _policy(self, key: SlotKey) -> tuple[EffectiveRestart, bool] | None:
        spec = self.specs.get(key.job)
        if spec is None or key.group not in spec.job.group:
            return None
        group = spec.job.group[key.group]
        task = group.task.get(key.task)
        if task is None:
            return None
        ph = phase(task)
        on_success = (spec.job.type not in RUNS_TO_COMPLETION and ph in ("main", "sidecar")) or (
            ph == "poststart" and task.lifecycle is not None and task.lifecycle.sidecar
        )
        return effective_restart(spec.job, group, task), on_success

    def _start_failed(
        self, a: Action, slot: SlotRecord | None, error: str, now: float, *, permanent: bool,
        event: str,
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
        self.store.start_failed(
            a.key, a.task_digest, a.spec.digest, error, now, d.state, d.next_start_at,
            d.restarts, d.window_start, [Event(event, error), Event(d.event, d.message)],
        )  # fmt: skip
        self.on_change(f"{a.key}: failed to start: {error}")

    def _release_empty_allocs(self, keys: tuple[SlotKey, ...], observed: Observed) -> None:
        gone = {k.alloc for k in keys}
        for slot in observed.slots.values():
            if slot.key.alloc in gone and slot.key not in keys:
                gone.discard(slot.key.alloc)
        for alloc in gone:
            self.executor.release(alloc)

    # ---- exits ----

    def on_exit(self, handle: TaskHandle, result: ExitResult, observed: Observed) -> None:
        """Record an exit and decide what the slot does next. The task stays known as running
        until that is written: when the store refuses, the caller keeps the exit and calls
        again (a write already done is not done twice: `finished` closes a run once)."""
        run = self.running.get(handle.id)
        if run is None:
            return
        self._on_exit(run, handle, result, observed)
        self.running.pop(handle.id, None)

    def _on_exit(
        self, run: Running, handle: TaskHandle, result: ExitResult, observed: Observed
    ) -> None:
        now = self.clock()
        slot = observed.slots.get(run.key)
        with_signal = f", signal {result.signal}" if result.signal else ""
        oom = ", OOM killed" if result.oom_killed else ""
        dropped = (f"; {result.dropped_log_lines} lines of output dropped (log not writable)"
                   if result.dropped_log_lines else "")  # fmt: skip
        terminated = Event("Terminated", f"exit code {result.exit_code}{with_signal}{oom}"
                           + (f": {result.error}" if result.error else "") + dropped)  # fmt: skip
        outcome = "exited" if result.successful else "failed"
        common: dict[str, Any] = dict(
            exit_code=result.exit_code,
            signal=result.signal,
            oom=result.oom_killed,
            error=result.error,
            finished_at=result.finished_at or now,
            now=now,
        )

        def destroy() -> None:
            try:
                self.executor.destroy(handle, force=True)
            except Exception:
                log.exception("destroying %s", handle.id)

        # A task that will start again keeps its cgroup (emptied); others give it back.
        if slot is None or (slot.state == "stopping" and slot.stop_intent in ("remove", "pause")):
            destroy()
        # A check_restart kill is a failure the restart policy counts, as in Nomad.
        by_check = slot is not None and slot.state == "stopping" and slot.stop_intent == "check"
        if slot is not None and slot.state == "stopping" and not by_check:
            intent = slot.stop_intent
            killed = Event("Killed", "task was killed by reconciler")
            if intent == "remove":
                self.store.finished(
                    run.instance_id,
                    outcome="killed",
                    slot_state=None,
                    events=[terminated, killed],
                    **common,
                )
                self._release_empty_allocs((run.key,), observed)
            elif intent == "pause":
                self.store.finished(
                    run.instance_id,
                    outcome="killed",
                    slot_state="dead",
                    events=[terminated, killed],
                    **common,
                )
            else:  # update, restart, leader: start again at once, not counted as a failure
                msg = {
                    "update": "new version of the task",
                    "restart": "restart requested by operator",
                }
                self.store.finished(
                    run.instance_id, outcome="killed", slot_state="pending", next_start_at=now,
                    reason=intent, events=[terminated, killed,
                                           Event("Restarting", msg.get(intent, intent))],
                    **common,
                )  # fmt: skip
            self.on_change(f"{run.key}: stopped")
            return
        policy = self._policy(run.key)
        if policy is None:
            self.store.finished(
                run.instance_id, outcome=outcome, slot_state=None, events=[terminated], **common
            )
            return
        d = restarts.after_exit(
            successful=result.successful and not by_check,
            restarts=slot.restarts if slot else 0,
            window_start=slot.window_start if slot else None,
            policy=policy[0],
            restart_on_success=policy[1],
            now=now,
            jitter=self.jitter(),
        )
        if d.state != "pending":
            destroy()
        events = (
            [terminated] if d.event == "Terminated" else [terminated, Event(d.event, d.message)]
        )
        key = self.store.finished(
            run.instance_id, outcome=outcome, slot_state=d.state, next_start_at=d.next_start_at,
            restarts=d.restarts, window_start=d.window_start,
            reason="" if d.state == "complete" else d.message, events=events,
            **common,
        )  # fmt: skip
        if d.event == "Restarting" and key is not None:
            metrics.restarted()
        self.on_change(f"{run.key}: exited ({terminated.message}); {d.message}")
        self._leader_exit(run.key, d.state, observed)

    def _leader_exit(self, key: SlotKey, state: str, observed: Observed) -> None:
        spec = self.specs.get(key.job)
        if spec is None or not spec.job.group[key.group].task[key.task].leader:
            return
        now = self.clock()
        for slot in observed.slots.values():
            other = slot.key
            if (
                other.alloc == key.alloc
                and other != key
                and slot.state == "running"
                and slot.instance
            ):
                intent = "leader" if state == "pending" else "pause"
                signal, timeout, delay = self._kill_settings(other, observed)
                self.store.stopping(
                    other, intent, now, [Event("Leader Task Dead", f"leader {key.task} exited")]
                )
                self.executor.stop(handle_of(other, slot.instance), signal, timeout, delay)

    # ---- operator actions ----

    def operator_restart(self, key: SlotKey, observed: Observed) -> bool:
        slot = observed.slots.get(key)
        if slot is None or slot.state != "running" or slot.instance is None:
            return False
        self._stop(Action(key, "restart requested by operator"), observed, "restart", self.clock())
        return True

    def check_restart(self, keys: tuple[SlotKey, ...], reason: str, observed: Observed) -> None:
        """check_restart: stop the tasks; their exit goes through the restart policy."""
        now = self.clock()
        for key in keys:
            slot = observed.slots.get(key)
            if slot is not None and slot.state == "running":
                self._stop(Action(key, f"restarting ({reason})"), observed, "check", now,
                           (Event("Restart Signaled", reason),))  # fmt: skip

    def operator_signal(self, key: SlotKey, signal: str, observed: Observed) -> None:
        slot = observed.slots.get(key)
        if slot is None or slot.instance is None:
            raise ProcessLookupError(f"{key} is not running")
        self.executor.signal(handle_of(key, slot.instance), signal)
        self.store.event(
            key, "Signaling", f"{signal} sent by operator", self.clock(), slot.instance.id
        )


__all__ = ["Applier", "Running", "handle_of"]
