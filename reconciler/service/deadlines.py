"""When the loop wakes without an event: the next rescan, a delayed restart, a young
instance becoming healthy, a rolling update's deadline. Kept per planned job between passes,
with its slots by state (the tasks gauge). Part of the Service (loop.py), kept in its own file
so that the loop stays readable."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable

from reconciler.apply import Applier
from reconciler.db.snapshot import Observed
from reconciler.service.gitinfo import GitInfo
from reconciler.service.recovery import Recovery
from reconciler.spec.models import effective_update

RESCAN_EVERY = 30.0
_STATES: dict[tuple[str, ...], tuple[str, ...]] = {}  # each jobs' slots' states, held once


class Deadlines:
    clock: Callable[[], float]
    recovery: Recovery
    applier: Applier
    git: GitInfo
    _budget_retry: float | None
    _last_scan: float
    _last_pass = 0.0
    _deadline_of: dict[str, list[float]]  # job -> when it is due without events
    _states_of: dict[str, tuple[str, ...]]  # job -> its slots' states
    _states: Tally[str]  # their sum: the tasks gauge

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
                self._states.subtract(self._states_of.pop(job, ()))
        states_of: dict[str, list[str]] = {}
        for s in obs.slots.values():
            if scope is not None and s.key.job not in scope:
                continue  # read along (a wide scope reads every job): its note stands
            states_of.setdefault(s.key.job, []).append(s.state)
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
        for job, states in states_of.items():
            # a job's slots' states, held once for every job with the same ones (most are
            # one task, running): not a Counter per job (~0.25 kB a task at 1,000)
            held = tuple(sorted(states))
            if len(_STATES) > 1000:  # (a cache: any count of jobs shares a few of these)
                _STATES.clear()
            self._states_of[job] = _STATES.setdefault(held, held)
