"""Pure decisions: what should run, given what is wanted, what runs, the node and the time."""

from reconciler.plan.digest import task_digest
from reconciler.plan.model import ACTIVE, Action, Host, Plan
from reconciler.plan.planner import leaving, plan

__all__ = ["ACTIVE", "Action", "Host", "Plan", "leaving", "plan", "task_digest"]
