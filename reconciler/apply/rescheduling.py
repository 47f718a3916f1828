"""A group instance that failed for good (a task's restart policy said "Not Restarting") is
placed again after its reschedule policy's delay (Nomad's reschedule, on one node: the same
slots, fresh restart counters). Shared by exits and failed starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reconciler import reschedules
from reconciler.apply.core import Core, handle_of
from reconciler.db.snapshot import Observed, SlotKey, SlotRecord
from reconciler.db.store import Event
from reconciler.spec.models import effective_reschedule
from reconciler.spec.units import format_duration

RESCHEDULING = "rescheduling"  # the reason of the slots of an instance waiting to be placed again


@dataclass(frozen=True)
class Placement:
    at: float  # when the instance starts again
    reason: str  # the slots' reason meanwhile: "rescheduling (reschedule 2)"
    note: Event  # the history's line for it
    tracker: str  # what the next decision needs, as stored


class Rescheduling(Core):
    def _reschedule_at(self, key: SlotKey, tracker: str, now: float) -> Placement | None:
        """Whether the failed instance of `key` is placed again, and when; None: it stays
        failed (a policy that allows no more, or a system job)."""
        spec = self.specs.get(key.job)
        if spec is None or key.group not in spec.job.group:
            return None
        policy = effective_reschedule(spec.job, spec.job.group[key.group])
        r = reschedules.decide(policy, reschedules.Tracker.of(tracker), now)
        if policy is None or not r.eligible:
            return None
        n = r.tracker.total
        of = "" if policy.unlimited else f" of {policy.attempts}"
        note = Event("Rescheduling", "alloc was rescheduled because it failed: placed again in "
                     f"{format_duration(round(r.delay, 3))} (reschedule {n}{of})")  # fmt: skip
        return Placement(r.at, f"{RESCHEDULING} (reschedule {n}{of})", note, r.tracker.text())

    def _reschedule_siblings(
        self, key: SlotKey, p: Placement, observed: Observed, now: float
    ) -> None:
        """The instance fails as a whole: its other tasks are stopped (running) and all wait
        to start again with it."""
        for other in observed.slots.values():
            if other.key.alloc != key.alloc or other.key == key:
                continue
            running = other.state == "running" and other.instance is not None
            why = (Event("Sibling Task Failed", f'Task\'s sibling "{key.task}" failed'),)
            self.store.rescheduled(
                other.key, p.at, p.reason, p.tracker, why if running else (), now
            )
            if running and other.instance is not None:
                self.rescheduled[other.key] = dataclasses.replace(
                    other, state="stopping", stop_intent="reschedule", next_start_at=p.at,
                    reason=p.reason, reschedule=p.tracker,
                )  # fmt: skip
                signal, timeout, delay = self._kill_settings(other.key, observed)
                self.executor.stop(handle_of(other.key, other.instance), signal, timeout, delay)
        self.on_change(f"{key}: failed; {p.reason} in {format_duration(round(max(0.0, p.at - now), 3))}")


def tracker_of(slot: SlotRecord | None, digest: str | None = None) -> str:
    """A slot's reschedules so far; none for a new version of its task."""
    if slot is None or (digest is not None and slot.spec_digest != digest):
        return ""
    return slot.reschedule
