"""reconciler/reschedules.py and spec/reschedule.py, by property: the delay per function and
count, attempts within the interval, unlimited, the max_delay cap, Nomad's validation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.reschedules import MAX_PAST_EVENTS, Tracker, decide, next_delay
from reconciler.spec.reschedule import DEFAULTS, EffectiveReschedule, problems

delays = st.integers(5, 600).map(float)
policies = st.builds(
    EffectiveReschedule,
    attempts=st.integers(0, 8),
    interval=st.integers(0, 86400).map(float),
    delay=delays,
    delay_function=st.sampled_from(["constant", "exponential", "fibonacci"]),
    max_delay=st.integers(5, 7200).map(float),
    unlimited=st.booleans(),
)


def run(policy: EffectiveReschedule, failures: int, ran_for: float = 1.0) -> list[float | None]:
    """The delay of each reschedule of an instance that fails `ran_for` after each placement
    (None once it is no longer placed again)."""
    tracker, now, out = Tracker(), 1000.0, []
    for _ in range(failures):
        d = decide(policy, tracker, now)
        if not d.eligible:
            out.append(None)
            break
        out.append(d.delay)
        tracker, now = d.tracker, d.at + ran_for
    return out


@settings(max_examples=200, deadline=None)
@given(delay=delays, n=st.integers(1, 12))
def test_constant_keeps_the_delay(delay: float, n: int) -> None:
    p = EffectiveReschedule(0, 0.0, delay, "constant", 0.0, True)
    assert run(p, n) == [delay] * n


@settings(max_examples=200, deadline=None)
@given(delay=delays, cap=st.integers(5, 7200).map(float), n=st.integers(1, 14))
def test_exponential_doubles_up_to_max_delay(delay: float, cap: float, n: int) -> None:
    cap = max(cap, delay)
    p = EffectiveReschedule(0, 0.0, delay, "exponential", cap, True)
    assert run(p, n) == [min(delay * 2**k, cap) for k in range(n)]


@settings(max_examples=200, deadline=None)
@given(delay=delays, n=st.integers(1, 14))
def test_fibonacci_adds_the_last_two(delay: float, n: int) -> None:
    cap = 1e9
    p = EffectiveReschedule(0, 0.0, delay, "fibonacci", cap, True)
    fib = [delay, delay]
    while len(fib) < n:
        fib.append(fib[-1] + fib[-2])
    assert run(p, n) == fib[:n]


@settings(max_examples=300, deadline=None)
@given(p=policies, n=st.integers(1, 12), ran_for=st.integers(0, 10000).map(float))
def test_never_over_max_delay_and_disabled_is_never_placed(
    p: EffectiveReschedule, n: int, ran_for: float
) -> None:
    out = run(p, n, ran_for)
    if not p.enabled:
        assert out == [None]
        return
    for d in out:
        if d is not None and p.delay_function != "constant":
            assert d <= max(p.max_delay, p.delay)
    if p.unlimited:
        assert None not in out


@settings(max_examples=200, deadline=None)
@given(attempts=st.integers(1, 6), delay=delays, n=st.integers(1, 10))
def test_attempts_within_the_interval(attempts: int, delay: float, n: int) -> None:
    """Failing at once each time: `attempts` reschedules in the interval, then no more."""
    interval = delay * attempts * 10
    p = EffectiveReschedule(attempts, interval, delay, "constant", 0.0, False)
    out = run(p, n, ran_for=0.0)
    placed = [d for d in out if d is not None]
    assert len(placed) == min(attempts, n)
    if n > attempts:
        assert out[-1] is None


@settings(max_examples=100, deadline=None)
@given(attempts=st.integers(1, 4), delay=delays)
def test_reschedules_older_than_the_interval_do_not_count(attempts: int, delay: float) -> None:
    interval = delay * attempts * 2
    p = EffectiveReschedule(attempts, interval, delay, "constant", 0.0, False)
    # runs long between failures: every earlier reschedule has left the interval
    assert run(p, 10, ran_for=interval * 2) == [delay] * 10


def test_a_long_run_after_the_cap_starts_the_series_again() -> None:
    p = EffectiveReschedule(0, 0.0, 30.0, "exponential", 120.0, True)
    t = Tracker(((1000.0, 120.0),), 4)
    assert next_delay(p, t, 1000.0 + 60) == 120.0  # failed soon after: still capped
    assert next_delay(p, t, 1000.0 + 121) == 30.0  # ran longer than the cap: reset


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40))
def test_unlimited_keeps_a_bounded_tracker(n: int) -> None:
    p = DEFAULTS["service"]
    tracker, now = Tracker(), 0.0
    for _ in range(n):
        d = decide(p, tracker, now)
        tracker, now = d.tracker, d.at
    assert len(tracker.events) <= MAX_PAST_EVENTS + 1 and tracker.total == n
    assert Tracker.of(tracker.text()) == tracker


def test_batch_default_is_once() -> None:
    assert run(DEFAULTS["batch"], 3) == [5.0, None]


@settings(max_examples=300, deadline=None)
@given(p=policies)
def test_validation_is_total_and_disabled_is_not_checked(p: EffectiveReschedule) -> None:
    out = problems(p)
    assert all(isinstance(m, str) and m for m in out)
    if not p.enabled:
        assert out == []
    assert problems(DEFAULTS["service"]) == [] and problems(DEFAULTS["batch"]) == []
