"""Nomad's restart tracker (client/allocrunner/taskrunner/restarts): pure decisions."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.spec.models import EffectiveRestart
from reconciler.spec.units import format_duration


@dataclass(frozen=True)
class Decision:
    state: str  # pending | complete | failed
    next_start_at: float | None
    restarts: int
    window_start: float | None
    event: str  # Restarting | Not Restarting | Terminated
    message: str


def after_exit(
    *,
    successful: bool,
    restarts: int,
    window_start: float | None,
    policy: EffectiveRestart,
    restart_on_success: bool,
    now: float,
    jitter: float,
    unrecoverable: str = "",
) -> Decision:
    """What happens to a task that ended. `jitter` in [0, 1) adds up to 25 % to the delay."""
    if unrecoverable:
        return Decision("failed", None, restarts, window_start, "Not Restarting",
                        f"Error was unrecoverable: {unrecoverable}")  # fmt: skip
    if successful and not restart_on_success:
        return Decision("complete", None, restarts, window_start, "Terminated", "Exit code 0")
    if window_start is None or now - window_start > policy.interval:
        window_start, restarts = now, 0
    restarts += 1
    if restarts > policy.attempts:
        if policy.mode == "fail":
            return Decision(
                "failed", None, restarts, window_start, "Not Restarting",
                f"Exceeded allowed attempts {policy.attempts} in interval "
                f"{format_duration(policy.interval)} and mode is \"fail\"",
            )  # fmt: skip
        at = window_start + policy.interval
        return Decision(
            "pending", at, 0, None, "Restarting",
            f"Exceeded allowed attempts {policy.attempts} in interval "
            f"{format_duration(policy.interval)}; waiting {format_duration(max(0.0, at - now))} "
            "(mode is \"delay\")",
        )  # fmt: skip
    delay = policy.delay * (1 + 0.25 * jitter)
    return Decision("pending", now + delay, restarts, window_start, "Restarting",
                    f"Restart within policy: in {format_duration(round(delay, 3))}")  # fmt: skip
