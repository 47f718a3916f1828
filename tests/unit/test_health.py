"""Check state machines with a fake clock: Consul's counters, Nomad's check_restart watcher,
and the deployment gate."""

from __future__ import annotations

from reconciler.plan import health
from reconciler.plan.health import CheckView, Thresholds, new_check, observe, poll, watch


def run(results: list[str], t: Thresholds) -> list[str]:
    s = new_check(t, 0.0)
    seen = []
    for i, r in enumerate(results, 1):
        s = observe(s, r, "", t, float(i))  # type: ignore[arg-type]
        seen.append(s.status)
    return seen


def test_first_result_counts_at_once_then_thresholds_govern() -> None:
    t = Thresholds(success_before_passing=3, failures_before_critical=2)
    assert run(["passing"], t) == ["passing"]
    assert run(["critical"], t) == ["critical"]
    out = run(["passing", "critical", "critical", "passing", "passing", "passing"], t)
    assert out == ["passing", "passing", "critical", "critical", "critical", "passing"]


def test_a_single_success_between_failures_resets_the_count() -> None:
    t = Thresholds(failures_before_critical=3)
    out = run(["passing", "critical", "critical", "passing", "critical", "critical", "critical"], t)
    assert out[-1] == "critical" and "critical" not in out[:-1]


def test_failures_before_warning_comes_first() -> None:
    t = Thresholds(failures_before_critical=3, failures_before_warning=1)
    assert run(["passing", "critical", "critical", "critical"], t) == [
        "passing", "warning", "warning", "critical",
    ]  # fmt: skip


def test_since_moves_only_on_a_transition() -> None:
    t = Thresholds()
    s = new_check(t, 0.0)
    s = observe(s, "passing", "ok", t, 5.0)
    s = observe(s, "passing", "ok", t, 15.0)
    assert (s.status, s.since) == ("passing", 5.0)
    s = observe(s, "critical", "boom", t, 25.0)
    assert (s.status, s.since, s.output) == ("critical", 25.0, "boom")


def test_limit_one_restarts_on_the_first_bad_poll_after_grace() -> None:
    w = watch(limit=1, grace=10.0, interval=5.0, ignore_warnings=False, now=0.0)
    w, restart = poll(w, "critical", 9.0)
    assert not restart
    w, restart = poll(w, "critical", 10.0)
    assert restart


def test_limit_three_needs_two_intervals_of_continuous_failure() -> None:
    w = watch(limit=3, grace=1.0, interval=1.0, ignore_warnings=False, now=0.0)
    decisions = []
    for now in (1.0, 2.0, 3.0):
        w, restart = poll(w, "critical", now)
        decisions.append(restart)
    assert decisions == [False, False, True]


def test_a_passing_poll_starts_the_count_again() -> None:
    w = watch(limit=3, grace=0.0, interval=10.0, ignore_warnings=False, now=0.0)
    w, _ = poll(w, "critical", 1.0)
    w, _ = poll(w, "passing", 15.0)
    w, r1 = poll(w, "critical", 21.0)
    w, r2 = poll(w, "critical", 40.0)
    w, r3 = poll(w, "critical", 41.0)
    assert (r1, r2, r3) == (False, False, True)


def test_pending_counts_as_unhealthy_warnings_only_without_ignore() -> None:
    w = watch(limit=1, grace=0.0, interval=10.0, ignore_warnings=False, now=0.0)
    assert poll(w, "pending", 0.5)[1]
    assert poll(w, "warning", 0.5)[1]
    w = watch(limit=1, grace=0.0, interval=10.0, ignore_warnings=True, now=0.0)
    assert not poll(w, "warning", 0.5)[1]


def test_deployment_gate_pending_blocks_readiness_ignored() -> None:
    checks = [
        CheckView("alive", "web", "passing", 12.0, "require_healthy"),
        CheckView("ready", "web", "critical", 3.0, "ignore"),
        CheckView("warm", "", "warning", 20.0, "ignore_warnings"),
    ]
    assert health.healthy_since(checks) == (20.0, None)
    blocked = [*checks, CheckView("db", "", "pending", 1.0, "require_healthy")]
    since, who = health.healthy_since(blocked)
    assert since is None and who is not None and who.name == "db"
    assert health.describe(who) == 'check "db" is pending'
