"""Nomad's `reschedule` block (nomad/structs ReschedulePolicy): on one node a failed group
instance is placed again on that same node, after the policy's delay. Pure.

The block may sit in the job and in a group; the group's fields override the job's, which
override the job type's defaults (api/tasks.go Canonicalize). System and sysbatch jobs never
reschedule."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from reconciler.spec.fieldtypes import Duration, Strict
from reconciler.spec.units import format_duration

MIN_DELAY = 5.0  # ReschedulePolicyMinDelay
MIN_INTERVAL = 15.0  # ReschedulePolicyMinInterval
DELAY_FUNCTIONS = ("constant", "exponential", "fibonacci")


class Reschedule(Strict):
    attempts: int | None = Field(None, ge=0)
    interval: Duration | None = None
    delay: Duration | None = None
    delay_function: str | None = None  # checked on the merged policy, with Nomad's words
    max_delay: Duration | None = None
    unlimited: bool | None = None


@dataclass(frozen=True)
class EffectiveReschedule:
    attempts: int
    interval: float
    delay: float
    delay_function: str
    max_delay: float
    unlimited: bool

    @property
    def enabled(self) -> bool:
        return self.attempts > 0 or self.unlimited


# DefaultServiceJobReschedulePolicy, DefaultBatchJobReschedulePolicy
DEFAULTS: dict[str, EffectiveReschedule] = {
    "service": EffectiveReschedule(0, 0.0, 30.0, "exponential", 3600.0, True),
    "batch": EffectiveReschedule(1, 86400.0, 5.0, "constant", 0.0, False),
}


def effective(
    job_type: str, job_block: Reschedule | None, group_block: Reschedule | None
) -> EffectiveReschedule | None:
    """The policy a group's instances follow; None for job types that never reschedule."""
    base = DEFAULTS.get(job_type)
    if base is None:
        return None
    fields = dict(base.__dict__)
    for block in (job_block, group_block):
        if block is not None:
            fields.update({k: v for k, v in block.model_dump().items() if v is not None})
    return EffectiveReschedule(**fields)


def _d(seconds: float) -> str:
    return format_duration(seconds)


def problems(r: EffectiveReschedule) -> list[str]:
    """ReschedulePolicy.Validate's errors, in its words; a disabled policy is not checked."""
    if not r.enabled:
        return []
    out: list[str] = []
    if r.attempts > 0:
        if r.interval <= 0:
            out.append("Interval must be a non zero value if Attempts > 0")
        if r.unlimited:
            out.append(f"Reschedule Policy with Attempts = {r.attempts}, Interval = "
                       f"{_d(r.interval)}, and Unlimited = true is ambiguous; "
                       "If Attempts >0, Unlimited cannot also be set to true")  # fmt: skip
    precheck = True
    if r.delay < MIN_DELAY:
        out.append(f"Delay cannot be less than {_d(MIN_DELAY)} (got {_d(r.delay)})")
        precheck = False
    if r.delay_function not in DELAY_FUNCTIONS:
        out.append(f'Invalid delay function "{r.delay_function}", must be one of '
                   + ", ".join(f'"{f}"' for f in DELAY_FUNCTIONS))  # fmt: skip
        precheck = False
    if r.delay_function != "constant":
        if r.max_delay < MIN_DELAY:
            out.append(f"Max Delay cannot be less than {_d(MIN_DELAY)} (got {_d(r.max_delay)})")
            precheck = False
        if r.max_delay < r.delay:
            out.append(f"Max Delay cannot be less than Delay {_d(r.delay)} (got {_d(r.max_delay)})")
            precheck = False
    if not r.unlimited:
        if r.interval < MIN_INTERVAL:
            out.append(f"Interval cannot be less than {_d(MIN_INTERVAL)} (got {_d(r.interval)})")
        if precheck:
            out += _delay_params(r)
    return out


def _delay_params(r: EffectiveReschedule) -> list[str]:
    """validateDelayParams: can `attempts` reschedules fit in `interval` at all?"""
    ok, possible, recommended = _viable_attempts(r)
    if ok:
        return []
    tail = "" if r.delay_function == "constant" else f", and delay ceiling {_d(r.max_delay)}"
    how = f' and delay function "{r.delay_function}"' if not tail else (
        f', delay function "{r.delay_function}"')  # fmt: skip
    return [f"Nomad can only make {possible} attempts in {_d(r.interval)} with initial delay "
            f"{_d(r.delay)}{how}{tail}; Set the interval to at least {_d(round(recommended))} "
            f"to accommodate {r.attempts} attempts"]  # fmt: skip


def _viable_attempts(r: EffectiveReschedule) -> tuple[bool, int, float]:
    possible, recommended, valid = 0, 0.0, True
    if r.delay_function == "constant":
        recommended = r.attempts * r.delay
        if r.interval < recommended:
            possible, valid = int(r.interval // r.delay), False
    elif r.delay_function == "exponential":
        for i in range(r.attempts):
            nxt = 2**i * r.delay
            if nxt > r.max_delay:
                recommended += r.max_delay
            else:
                recommended = nxt
            if recommended < r.interval:
                possible += 1
        valid = possible >= r.attempts
    else:  # fibonacci
        slots = [r.delay, r.delay]
        ceiling = False
        for i in range(2, r.attempts):
            if ceiling:
                nxt = slots[i - 1] + r.max_delay
            else:
                nxt = slots[i - 1] + slots[i - 2]
                if nxt > r.max_delay:
                    nxt, ceiling = r.max_delay, True
            slots.append(nxt)
        recommended = slots[-1]
        if r.interval < recommended:
            valid = False
            possible = next((i for i, s in enumerate(slots) if s > r.interval), 0)
    return valid, max(possible, 0), recommended
