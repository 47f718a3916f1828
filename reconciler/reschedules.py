"""When a failed group instance is placed again (Nomad's Allocation.NextDelay,
NextRescheduleTime, RescheduleEligible and the scheduler's updateRescheduleTracker): pure.

The tracker is what the next decision needs: the reschedules so far (their time and delay,
trimmed as Nomad trims them) and how many there were in all (for display)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from reconciler.spec.reschedule import EffectiveReschedule

MAX_PAST_EVENTS = 5  # maxPastRescheduleEvents: what an unlimited policy keeps


@dataclass(frozen=True)
class Tracker:
    events: tuple[tuple[float, float], ...] = ()  # (when it was placed again, its delay)
    total: int = 0  # reschedules since the version started (or `reconciler restart`)

    def text(self) -> str:
        if not self.events and not self.total:
            return ""
        return json.dumps({"n": self.total, "e": [list(e) for e in self.events]},
                          separators=(",", ":"))  # fmt: skip

    @classmethod
    def of(cls, text: str) -> Tracker:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(tuple((float(a), float(d)) for a, d in data.get("e", ())), int(data.get("n", 0)))


@dataclass(frozen=True)
class Decision:
    eligible: bool
    at: float  # when the replacement starts
    delay: float
    tracker: Tracker  # as it will be once the replacement is placed


def next_delay(policy: EffectiveReschedule, tracker: Tracker, failed_at: float) -> float:
    """Allocation.NextDelay: the delay function over the last reschedules, capped by
    max_delay; once capped, an instance that ran longer than the cap before failing starts
    the series again."""
    events = tracker.events
    delay = policy.delay
    if not events:
        return delay
    if policy.delay_function == "exponential":
        delay = events[-1][1] * 2
    elif policy.delay_function == "fibonacci":
        if len(events) >= 2:
            n1, n2 = events[-1][1], events[-2][1]
            # a series that hit the ceiling and was reset starts again
            delay = n1 if n2 == policy.max_delay and n1 == policy.delay else n1 + n2
    else:
        return delay
    if policy.max_delay > 0 and delay > policy.max_delay:
        delay = policy.max_delay
        if failed_at - events[-1][0] > delay:
            delay = policy.delay
    return delay


def decide(policy: EffectiveReschedule | None, tracker: Tracker, failed_at: float) -> Decision:
    """Whether an instance that failed at `failed_at` is placed again, when, and the tracker
    its replacement carries."""
    if policy is None or not policy.enabled:
        return Decision(False, failed_at, 0.0, tracker)
    delay = next_delay(policy, tracker, failed_at)
    if policy.unlimited:
        eligible = True
    elif not tracker.events:
        eligible = policy.attempts > 0
    else:
        attempted = sum(1 for at, _ in tracker.events if failed_at - at < policy.interval)
        eligible = attempted < policy.attempts and delay < policy.interval
    at = failed_at + delay
    if policy.attempts > 0:  # only what lies within the interval counts
        kept = tuple(e for e in tracker.events
                     if policy.interval > 0 and at - e[0] <= policy.interval)  # fmt: skip
    else:
        kept = tracker.events[-MAX_PAST_EVENTS:]
    return Decision(eligible, at, delay, Tracker((*kept, (at, delay)), tracker.total + 1))
