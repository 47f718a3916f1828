"""Nomad's restart tracker and constraint operators."""

from __future__ import annotations

import pytest

from reconciler.constraints import satisfied
from reconciler.restarts import after_exit
from reconciler.spec.models import Constraint, EffectiveRestart

POLICY = EffectiveRestart(attempts=2, interval=60, delay=10, mode="fail")


def test_restarts_within_policy_with_jitter() -> None:
    d = after_exit(successful=False, restarts=0, window_start=None, policy=POLICY,
                   restart_on_success=True, now=100, jitter=1.0)  # fmt: skip
    assert (d.state, d.next_start_at, d.restarts, d.window_start) == ("pending", 112.5, 1, 100)
    assert d.event == "Restarting"


def test_fail_mode_gives_up_after_attempts() -> None:
    d = after_exit(successful=False, restarts=2, window_start=90, policy=POLICY,
                   restart_on_success=True, now=100, jitter=0)  # fmt: skip
    assert d.state == "failed" and d.event == "Not Restarting"
    assert (
        'Exceeded allowed attempts 2 in interval 1m0s and mode is "fail"' in d.message
        or "1m" in d.message
    )


def test_window_resets_after_interval() -> None:
    d = after_exit(successful=False, restarts=2, window_start=0, policy=POLICY,
                   restart_on_success=True, now=100, jitter=0)  # fmt: skip
    assert d.state == "pending" and d.restarts == 1 and d.window_start == 100


def test_delay_mode_waits_for_the_window_end() -> None:
    pol = EffectiveRestart(attempts=1, interval=60, delay=1, mode="delay")
    d = after_exit(successful=False, restarts=1, window_start=80, policy=pol,
                   restart_on_success=True, now=100, jitter=0)  # fmt: skip
    assert d.state == "pending" and d.next_start_at == 140 and d.restarts == 0


def test_batch_success_completes_and_zero_attempts_never_restarts() -> None:
    d = after_exit(successful=True, restarts=0, window_start=None, policy=POLICY,
                   restart_on_success=False, now=1, jitter=0)  # fmt: skip
    assert d.state == "complete"
    zero = EffectiveRestart(attempts=0, interval=60, delay=1, mode="fail")
    d = after_exit(successful=False, restarts=0, window_start=None, policy=zero,
                   restart_on_success=True, now=1, jitter=0)  # fmt: skip
    assert d.state == "failed"


def test_unrecoverable_start_error() -> None:
    d = after_exit(successful=False, restarts=0, window_start=None, policy=POLICY,
                   restart_on_success=True, now=1, jitter=0, unrecoverable="bad binary")  # fmt: skip
    assert d.state == "failed" and "unrecoverable" in d.message


ATTRS = {"attr.kernel.name": "linux", "attr.kernel.version": "6.1.0", "attr.cpu.numcores": "2",
         "meta.tags": "a,b,c"}  # fmt: skip


@pytest.mark.parametrize(
    ("attribute", "operator", "value", "ok"),
    [
        ("${attr.kernel.name}", "=", "linux", True),
        ("${attr.kernel.name}", "!=", "linux", False),
        ("${attr.kernel.name}", "regexp", "^lin", True),
        ("${attr.kernel.version}", "version", ">= 5.10, < 7", True),
        ("${attr.kernel.version}", "semver", "> 6.2", False),
        ("${attr.cpu.numcores}", ">=", "2", True),
        ("${attr.cpu.numcores}", "<", "2", False),
        ("${attr.nope}", "is_set", "", False),
        ("${attr.nope}", "is_not_set", "", True),
        ("${attr.nope}", "=", "x", False),
        ("${meta.tags}", "set_contains", "a,c", True),
        ("${meta.tags}", "set_contains_any", "x,b", True),
        ("", "distinct_hosts", "true", True),
    ],
)
def test_constraint_operators(attribute: str, operator: str, value: str, ok: bool) -> None:
    c = Constraint(attribute=attribute, operator=operator, value=value)
    assert satisfied(c, ATTRS) is ok
