"""The start budget's descriptor count: not a listing of /proc/self/fd before every plan, but
exact whenever the budget gets close."""

from __future__ import annotations

from reconciler.service.descriptors import EXACT_BELOW, RECOUNT_EVERY, Usage


def test_plans_use_an_estimate_until_the_budget_gets_close() -> None:
    real = {"in_use": 2030, "counts": 0}
    now = [100.0]

    def count() -> tuple[int, int]:
        real["counts"] += 1
        return real["in_use"], 20_000

    u = Usage(count, 2, lambda: now[0])
    assert u.now(running=1000) == (2030, 20_000) and real["counts"] == 1  # the first: counted
    real["in_use"] += 2 * 50  # 50 tasks start
    assert u.now(running=1050) == (2130, 20_000) and real["counts"] == 1  # estimated
    u.refresh(running=1050)
    assert real["counts"] == 1  # counted less than RECOUNT_EVERY ago
    now[0] += RECOUNT_EVERY
    real["in_use"] += 7  # a few sockets the estimate cannot know of
    u.refresh(running=1050)
    assert real["counts"] == 2 and u.now(running=1050) == (2137, 20_000)
    # close to the limit every plan counts: a budget is never overstated where it matters
    near = 20_000 - 64 - 2 * (EXACT_BELOW - 1)  # in use that leaves room for < EXACT_BELOW
    real["in_use"] = near
    now[0] += RECOUNT_EVERY
    u.refresh(running=1050)
    before = real["counts"]
    assert u.now(running=1050) == (near, 20_000) and real["counts"] == before + 1
    real["in_use"] = near - 40  # descriptors freed outside any task
    assert u.now(running=1050) == (near - 40, 20_000) and real["counts"] == before + 2
