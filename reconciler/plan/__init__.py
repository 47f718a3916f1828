"""Pure decisions: what should run, given what is wanted, what runs, the node and the time."""

from reconciler.plan.planner import (
    ACTIVE,
    Action,
    Host,
    Plan,
    leaving,
    plan,
    task_digest,
)

__all__ = ["ACTIVE", "Action", "Host", "Plan", "leaving", "plan", "task_digest"]
