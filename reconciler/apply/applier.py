"""The applier: performs a Plan through the executor and records every step in the store.

Its starts are in starts.py, the exits it is told of in exits.py, what they share in core.py.
"""

from __future__ import annotations

import contextlib
import dataclasses

from reconciler.apply.core import Running, handle_of
from reconciler.apply.exits import Exits
from reconciler.apply.starts import Starts
from reconciler.db.children import Launched
from reconciler.db.snapshot import Observed, SlotKey, SlotRecord
from reconciler.db.store import Event
from reconciler.errors import PermanentError
from reconciler.executor.base import StartError
from reconciler.plan import Action, Plan
from reconciler.spec.load import JobSpec
from reconciler.spec.template import TemplateError
from reconciler.taskconfig import task_config


class Applier(Starts, Exits):
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
        # A job whose starts run in the background keeps its status, version and attempt until
        # they are recorded: the pass that records them plans it again and writes them then.
        later = {a.key.job for b in self.bulks for a, _ in b.ready}
        attempt = {j: spec.digest for j, spec in plan.attempt.items() if j not in later}
        if attempt:  # bookkeeping after the starts: they are what the user waits for
            self.store.attempt(attempt, now)
        for a in plan.keep:
            if a.spec is not None:
                self.specs[a.key.job] = a.spec
        if plan.forget:
            self.store.forget(plan.forget)
            self._release_empty_allocs(plan.forget, observed)
        promote = tuple(j for j in plan.promote if j not in later)
        if promote:
            self.store.promote(promote, now)
            for job_id in promote:
                self.on_change(f"{job_id}: version applied")
        for job_id in (j for j in plan.canaries if j not in later):
            self.store.promote_canaries(job_id, now, "every canary healthy (auto_promote)")
            self.on_change(f"{job_id}: canaries promoted")
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
            if ((rec := observed.jobs.get(job_id)) is None or (rec.status, rec.reason) != st)
            and job_id not in later
        }
        if changed:
            self.store.set_status(changed, now)
        return bool(
            changed
            or plan.changes
            or plan.attempt
            or plan.promote
            or plan.canaries
            or plan.revert
            or plan.forget
            or plan.anchor
            or plan.launch
            or plan.collect
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

    def _stop(self, a: Action, observed: Observed, intent: str, now: float,
              first: tuple[Event, ...] = ()) -> None:  # fmt: skip
        """Stop a slot's task with its job's kill settings; `first`: events recorded before."""
        slot = observed.slots.get(a.key)
        if slot is None or slot.instance is None:
            return
        signal, timeout, delay = self._kill_settings(a.key, observed)
        handle = handle_of(a.key, slot.instance)
        events = [
            *first,
            Event("Killing", f"{a.reason}: sent {signal}, force kill after {timeout:g}s"),
        ]
        if delay:
            events.insert(len(first), Event("Waiting for shutdown delay", f"{delay:g}s"))
        self.store.stopping(a.key, intent, now, events)
        self.executor.stop(handle, signal, timeout, delay)
        self.on_change(f"{a.key}: stopping ({a.reason})")

    def _rerender(self, a: Action, observed: Observed, now: float) -> None:
        """Only what the templates render changed: write them again, and act as Nomad's
        template manager does on the ones whose output changed: any of change_mode restart
        restarts the task, else each distinct change_signal is sent; noop writes only."""
        slot = observed.slots.get(a.key)
        if a.spec is None or slot is None or slot.instance is None:
            return
        try:
            config = task_config(a.spec, a.key, self.node, self.attributes, self.variables,
                                 self.services, cores=slot.core_ids, ports=slot.ports)  # fmt: skip
            specs = a.spec.job.group[a.key.group].task[a.key.task].template
            again = [(t, c) for t, c in zip(specs, config.templates, strict=True) if not t.once]
            config = dataclasses.replace(config, templates=tuple(c for _, c in again))
            written = self.executor.render_templates(config, handle_of(a.key, slot.instance))
        except (StartError, TemplateError) as e:  # refused or failed: recorded, and the
            # running task keeps its previous files
            self.store.set_slot(a.key, now, spec_digest=a.task_digest)
            why = f"template {e}" if isinstance(e, TemplateError) else str(e)
            self.store.event(a.key, "Template Failed", why, now)
            self.on_change(f"{a.key}: template failed ({why})")
            return
        changed = [t for t, c in again if c.destination in written]
        self.store.set_slot(a.key, now, spec_digest=a.task_digest)
        if not changed:
            return
        if any(t.change_mode == "restart" for t in changed):
            reason = "Template with change_mode restart re-rendered"
            self._stop(Action(a.key, "template re-rendered"), observed, "template", now,
                       (Event("Restart Signaled", reason),))  # fmt: skip
            return
        signals = sorted({t.change_signal for t in changed if t.change_mode == "signal"})
        for sig in signals:
            with contextlib.suppress(ProcessLookupError, PermanentError):
                self.executor.signal(handle_of(a.key, slot.instance), sig)
        self.store.event(a.key, "Template Rendered",
                         f"signal {', '.join(signals)}" if signals else "noop", now)  # fmt: skip

    def operator_restart(self, key: SlotKey, observed: Observed) -> bool:
        slot = observed.slots.get(key)
        if slot is not None and slot.state == "pending" and slot.reschedule:
            # waiting to be rescheduled: placed again now, its count reset
            self.store.forget_reschedules(key, self.clock())
            self.store.event(key, "Restarting", "restart requested by operator", self.clock())
            return True
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


__all__ = ["Applier"]
