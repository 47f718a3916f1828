"""Task exits: the restart policy decides what a slot does next; a stop the service asked
for ends as its intent says; a leader's exit stops the rest of its group."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from reconciler import metrics, restarts
from reconciler.apply.core import Running, handle_of
from reconciler.apply.rescheduling import Rescheduling
from reconciler.db.snapshot import Observed, SlotKey, SlotRecord
from reconciler.db.store import Event
from reconciler.executor.base import ExitResult, TaskHandle

log = logging.getLogger("reconciler")


class Exits(Rescheduling):
    def on_exit(
        self, handle: TaskHandle, result: ExitResult, observed: Observed
    ) -> SlotRecord | None:
        """Record an exit and decide what the slot does next. The task stays known as running
        until that is written: when the store refuses, the caller keeps the exit and calls
        again (a write already done is not done twice: `finished` closes a run once).

        Returns the slot as now written when the exit left it waiting to start again and
        wrote nothing else (the restart policy's common case): the caller may plan from
        `observed` with it, without reading the store again. None otherwise."""
        run = self.running.get(handle.id)
        if run is None:
            return None
        after = self._on_exit(run, handle, result, observed)
        self.running.pop(handle.id, None)
        return after

    def _on_exit(
        self, run: Running, handle: TaskHandle, result: ExitResult, observed: Observed
    ) -> SlotRecord | None:
        now = self.clock()
        slot = self.rescheduled.pop(run.key, None) or observed.slots.get(run.key)
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
            elif intent == "reschedule":  # a sibling failed for good: placed again with it
                self.store.finished(
                    run.instance_id, outcome="killed", slot_state="pending",
                    next_start_at=slot.next_start_at or now, restarts=0, window_start=None,
                    reason=slot.reason, events=[terminated, killed], **common,
                )  # fmt: skip
            elif intent == "pause":
                self.store.finished(
                    run.instance_id,
                    outcome="killed",
                    slot_state="dead",
                    events=[terminated, killed],
                    **common,
                )
            else:  # update, restart, template, leader: start again at once, not counted
                msg = {
                    "update": "new version of the task",
                    "restart": "restart requested by operator",
                    "template": "template with change_mode restart re-rendered",
                }
                self.store.finished(
                    run.instance_id, outcome="killed", slot_state="pending", next_start_at=now,
                    reason=intent, events=[terminated, killed,
                                           Event("Restarting", msg.get(intent, intent))],
                    reschedule="" if intent == "restart" else None, **common,
                )  # fmt: skip
            self.on_change(f"{run.key}: stopped")
            return None
        policy = self._policy(run.key)
        if policy is None:
            self.store.finished(
                run.instance_id, outcome=outcome, slot_state=None, events=[terminated], **common
            )
            return None
        d = restarts.after_exit(
            successful=result.successful and not by_check,
            restarts=slot.restarts if slot else 0,
            window_start=slot.window_start if slot else None,
            policy=policy[0],
            restart_on_success=policy[1],
            now=now,
            jitter=self.jitter(),
        )
        if d.event == "Not Restarting" and self._reschedule(run, slot, d, terminated, outcome,
                                                            common, observed):
            return None  # fmt: skip
        if d.state != "pending":
            destroy()
        events = (
            [terminated] if d.event == "Terminated" else [terminated, Event(d.event, d.message)]
        )
        args: dict[str, Any] = dict(
            outcome=outcome, slot_state=d.state, next_start_at=d.next_start_at,
            restarts=d.restarts, window_start=d.window_start,
            reason="" if d.state == "complete" else d.message, events=events, **common,
        )  # fmt: skip
        if (
            d.state == "pending"
            and slot is not None
            and slot.instance is not None
            and slot.instance.id == run.instance_id
            and not self._is_leader(run.key)
        ):
            # to start again, its run open as read: written with the next start, after its
            # launch (or after this pass, or before the next read of the store)
            key: SlotKey | None = self.store.defer_finished(run.key, run.instance_id, **args)
        else:
            key = self.store.finished(run.instance_id, **args)
        if d.event == "Restarting" and key is not None:
            metrics.restarted()
        self.on_change(f"{run.key}: exited ({terminated.message}); {d.message}")
        if self._leader_exit(run.key, d.state, observed) or key is None or slot is None:
            return None
        if d.state != "pending":  # (a slot that ends gives its reservation back)
            return None
        return dataclasses.replace(
            slot, state=d.state, next_start_at=d.next_start_at, restarts=d.restarts,
            window_start=d.window_start, reason=d.message, instance=None, stop_intent="",
        )  # fmt: skip

    def _reschedule(
        self, run: Running, slot: SlotRecord | None, d: restarts.Decision, terminated: Event,
        outcome: str, common: dict[str, Any], observed: Observed,
    ) -> bool:  # fmt: skip
        """A task that failed for good fails its group instance, which its reschedule policy
        may place again. True when it does."""
        now = common["now"]
        if slot is None or (p := self._reschedule_at(run.key, slot.reschedule, now)) is None:
            return False
        self.store.finished(
            run.instance_id, outcome=outcome, slot_state="pending", next_start_at=p.at,
            restarts=0, window_start=None, reason=p.reason,
            events=[terminated, Event(d.event, d.message), p.note], reschedule=p.tracker,
            **common,
        )  # fmt: skip
        self._reschedule_siblings(run.key, p, observed, now)
        return True

    def _is_leader(self, key: SlotKey) -> bool:
        spec = self.specs.get(key.job)
        return spec is not None and spec.job.group[key.group].task[key.task].leader

    def _leader_exit(self, key: SlotKey, state: str, observed: Observed) -> bool:
        """A leader's exit stops the rest of its group; True when it was a leader's."""
        if not self._is_leader(key):
            return False
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
        return True

    # ---- operator actions ----
