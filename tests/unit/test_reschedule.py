"""reschedule: a group instance that failed for good is placed again on this node after the
policy's delay (Nomad's defaults: services forever, 30 s doubling up to 1 h; batch once after
5 s). The loop with the fake executor, the real store and a fake clock."""

from __future__ import annotations

from reconciler.executor.base import NodeConfig
from reconciler.reschedules import Tracker
from reconciler.service.loop import Service
from reconciler.spec import parse
from tests.unit.conftest import Harness, job
from tests.unit.test_checks import rows

FAILING = 'FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "3"'
ONE_TRY = 'restart {\n attempts = 1\n delay = "1s"\n interval = "10m"\n mode = "fail"\n}'
NO_RESTART = 'restart {\n attempts = 0\n mode = "fail"\n}'


def starts(h: Harness, prefix: str = "") -> int:
    return len([c for c in h.fake.started if c.id.startswith(prefix)])


def fail_for_good(h: Harness) -> None:
    """Run, fail, restart once after 1 s, fail again: Not Restarting."""
    h.step(1)
    h.step(1.5)
    h.step(1)


def test_a_service_is_rescheduled_after_30s_then_60s(h: Harness) -> None:
    h.write("w.hcl", job("w", env=FAILING, extra_group=ONE_TRY))
    h.step()
    fail_for_good(h)
    assert starts(h) == 2
    assert h.states() == {"w/g/0/t": "pending"}
    ev = h.events("w/g/0/t")
    assert ev[-2:] == ["Not Restarting", "Rescheduling"]
    slot = next(iter(h.store.observed().slots.values()))
    assert slot.reason == "rescheduling (reschedule 1)" and slot.restarts == 0
    h.step(29)
    assert starts(h) == 2
    h.step(1.5)
    assert starts(h) == 3 and h.states() == {"w/g/0/t": "running"}
    # fresh restart counters: one restart again before it fails for good
    slot = next(iter(h.store.observed().slots.values()))
    assert slot.restarts == 0
    fail_for_good(h)
    assert starts(h) == 4 and h.states() == {"w/g/0/t": "pending"}
    h.step(59)  # exponential: 60 s now
    assert starts(h) == 4
    h.step(1.5)
    assert starts(h) == 5
    assert Tracker.of(next(iter(h.store.observed().slots.values())).reschedule).total == 2


def test_max_delay_caps_the_delay(h: Harness) -> None:
    policy = 'reschedule {\n delay = "10s"\n max_delay = "15s"\n}'
    h.write("w.hcl", job("w", env=FAILING, extra_group=ONE_TRY + "\n" + policy))
    h.step()
    for delay in (10, 15, 15):  # 10, 20 capped at 15, 30 capped at 15
        before = starts(h)
        fail_for_good(h)
        h.step(delay - 1)
        assert starts(h) == before + 1
        h.step(1.5)
        assert starts(h) == before + 2


def test_a_batch_job_is_retried_once_after_5s_then_fails(h: Harness) -> None:
    h.write("b.hcl", job("b", typ="batch", env=FAILING, extra_group=NO_RESTART))
    h.step()
    h.step(1)
    assert h.states() == {"b/g/0/t": "pending"}
    assert h.job_status("b")[1] == "task b/g/0/t failed; rescheduling (reschedule 1 of 1)"
    h.step(4)
    assert starts(h) == 1
    h.step(1.5)
    assert starts(h) == 2
    h.step(1)
    assert h.states() == {"b/g/0/t": "failed"}
    h.step(3600)
    assert starts(h) == 2
    assert h.job_status("b")[0] == "failed"


def test_attempts_0_leaves_it_failed(h: Harness) -> None:
    h.write("w.hcl", job("w", env=FAILING, extra_group=NO_RESTART,
                         extra_job="reschedule {\n attempts = 0\n unlimited = false\n}"))  # fmt: skip
    h.step()
    h.step(1)
    assert h.states() == {"w/g/0/t": "failed"}
    h.step(3600)
    assert starts(h) == 1


def test_attempts_within_the_interval_are_counted(h: Harness) -> None:
    policy = ('reschedule {\n attempts = 2\n interval = "1h"\n delay = "5s"\n'
              ' delay_function = "constant"\n unlimited = false\n}')  # fmt: skip
    h.write("w.hcl", job("w", env=FAILING, extra_group=NO_RESTART + "\n" + policy))
    h.step()
    for _ in range(2):
        h.step(1)
        assert h.states() == {"w/g/0/t": "pending"}
        h.step(5.5)
    h.step(1)
    assert h.states() == {"w/g/0/t": "failed"}
    h.step(600)
    assert starts(h) == 3


def test_a_system_job_never_reschedules(h: Harness) -> None:
    h.write("s.hcl", job("s", typ="system", env=FAILING, extra_group=NO_RESTART))
    h.step()
    h.step(1)
    assert h.states() == {"s/g/0/t": "failed"}
    h.step(3600)
    assert starts(h) == 1


def test_the_schedule_survives_a_service_restart(h: Harness) -> None:
    h.write("w.hcl", job("w", env=FAILING, extra_group=NO_RESTART))
    h.step()
    h.step(1)
    assert h.states() == {"w/g/0/t": "pending"}
    h.fake.survivors = set()
    h.service = Service(h.jobs, h.store, h.fake, NodeConfig(), clock=h.clock, watch=False)
    h.step(10)
    assert starts(h) == 1
    h.step(21)
    assert starts(h) == 2
    h.step(1)  # fails again: the second reschedule waits 60 s, as before the restart
    h.step(55)
    assert starts(h) == 2
    h.step(6)
    assert starts(h) == 3


def test_siblings_are_stopped_and_placed_again_with_it(h: Harness) -> None:
    text = job("w", env=FAILING, extra_group=NO_RESTART).replace(
        '    task "t" {',
        '    task "side" {\n driver = "exec"\n config { command = "/bin/app" }\n }\n    task "t" {',
    )
    h.write("w.hcl", text)
    h.step()
    assert starts(h) == 2
    h.step(1)
    h.step(0.1)
    assert h.states() == {"w/g/0/side": "pending", "w/g/0/t": "pending"}
    assert "Sibling Task Failed" in h.events("w/g/0/side")
    h.step(31)
    assert starts(h) == 4
    assert h.states() == {"w/g/0/side": "running", "w/g/0/t": "running"}


def test_operator_restart_and_a_new_version_reset_the_count(h: Harness) -> None:
    h.write("w.hcl", job("w", env=FAILING, extra_group=NO_RESTART))
    h.step()
    h.step(1)
    assert h.states() == {"w/g/0/t": "pending"}
    fut = h.service.request("restart", keys=[["w", "g", 0, "t"]])
    h.step()
    assert fut.result() == {"restarted": ["w/g/0/t"]}
    h.step()
    assert starts(h) == 2
    h.step(1)  # fails again: the first reschedule again (30 s, not 60 s)
    slot = next(iter(h.store.observed().slots.values()))
    assert slot.reason == "rescheduling (reschedule 1)"
    h.write("w.hcl", job("w", env=FAILING + '\n V = "2"', extra_group=NO_RESTART))
    h.step()
    assert starts(h) == 3  # a new version starts at once, its count reset
    assert next(iter(h.store.observed().slots.values())).reschedule == ""


def test_a_permanent_start_error_is_rescheduled_too(h: Harness) -> None:
    h.write("w.hcl", job("w", env='FAKE_START_ERROR = "no such binary"'))
    h.step()
    assert h.states() == {"w/g/0/t": "pending"}
    assert h.events("w/g/0/t")[-3:] == ["Driver Failure", "Not Restarting", "Rescheduling"]
    h.step(31)
    h.step(61)
    ev = h.events("w/g/0/t")
    assert ev.count("Driver Failure") == 3 and ev.count("Rescheduling") == 3


def _problems(text: str) -> list[str]:
    return [f"{p.line}: {p.path}: {p.message}" for p in parse.parse_text(text, "j.hcl").problems]


def test_nomads_validation_errors_at_the_block() -> None:
    text = job("w", extra_group='reschedule {\n delay = "1s"\n delay_function = "linear"\n}')
    assert _problems(text) == [
        "7: job.w.group.g.reschedule: Delay cannot be less than 5s (got 1s)",
        '7: job.w.group.g.reschedule: Invalid delay function "linear", must be one of '
        '"constant", "exponential", "fibonacci"',
    ]
    text = job("w", extra_job="reschedule {\n attempts = 3\n unlimited = true\n}")
    assert _problems(text) == [
        "4: job.w.reschedule: group g: Interval must be a non zero value if Attempts > 0",
        "4: job.w.reschedule: group g: Reschedule Policy with Attempts = 3, Interval = 0s, and "
        "Unlimited = true is ambiguous; If Attempts >0, Unlimited cannot also be set to true",
    ]
    text = job("w", typ="batch", extra_group='reschedule {\n attempts = 5\n interval = "20s"\n}')
    assert _problems(text) == [
        "7: job.w.group.g.reschedule: Nomad can only make 4 attempts in 20s with initial delay "
        '5s and delay function "constant"; Set the interval to at least 25s to accommodate 5 '
        "attempts"
    ]
    assert _problems(job("w", extra_group="reschedule {\n unlimited = false\n}")) == []
    assert _problems(job("w", extra_group="reschedule {\n atempts = 1\n}")) == [
        '8: job.w.group.g.reschedule.atempts: unknown field "atempts"; did you mean "attempts"?'
    ]


def test_group_fields_override_the_jobs() -> None:
    text = job("w", extra_job='reschedule {\n delay = "10s"\n max_delay = "2m"\n}',
               extra_group='reschedule {\n delay = "20s"\n}')  # fmt: skip
    spec = parse.parse_text(text, "j.hcl").jobs[0]
    from reconciler.spec.models import effective_reschedule

    r = effective_reschedule(spec.job, spec.job.group["g"])
    assert r is not None and (r.delay, r.max_delay, r.unlimited) == (20.0, 120.0, True)
    assert r.delay_function == "exponential"


def test_a_new_version_that_fails_for_good_is_rolled_back(h: Harness) -> None:
    update = 'update {\n auto_revert = true\n min_healthy_time = "1s"\n health_check = "task_states"\n}'
    h.write("w.hcl", job("w", extra_group=NO_RESTART, extra_job=update))
    h.step()
    h.step(2)
    h.step()
    assert h.job_status("w")[0] == "ready"
    h.write("w.hcl", job("w", env=FAILING, extra_group=NO_RESTART, extra_job=update))
    h.step()
    h.step(1)  # fails for good: rescheduled, and the version judged failing
    h.step()
    assert "Rolled Back" in h.events("w/g/0/t") or h.job_status("w")[0] == "failed"
    h.step(2)
    h.step()
    assert h.states() == {"w/g/0/t": "running"}
    assert "FAKE_EXIT_CODE" not in h.fake.started[-1].env


def test_status_says_when_it_is_rescheduled() -> None:
    import time

    from reconciler.cli.ops import _reason

    slot = {"state": "pending", "reason": "rescheduling (reschedule 2)",
            "next_start_at": time.time() + 28.2}  # fmt: skip
    assert _reason(slot) == "rescheduling in 28s (reschedule 2)"
    assert _reason({**slot, "state": "failed"}) == "rescheduling (reschedule 2)"


GROUP_SERVICE = 'service {\n name = "w"\n provider = "nomad"\n}'


def test_an_instance_waiting_to_be_rescheduled_has_no_services(h: Harness) -> None:
    """A restart keeps the group's service registered; a failure for good (Nomad: a failed
    allocation, its replacement yet to come) does not."""
    h.write("w.hcl", job("w", env=FAILING, extra_group=ONE_TRY + "\n" + GROUP_SERVICE))
    h.step()

    def registered() -> list[tuple[object, ...]]:
        return rows(h, "SELECT name FROM services")

    assert registered() == [("w",)]
    h.step(1)  # the first failure: restarting within policy, still registered
    assert h.states() == {"w/g/0/t": "pending"} and registered() == [("w",)]
    h.step(1.5)
    h.step(1)  # failed for good: waiting to be rescheduled
    assert h.events("w/g/0/t")[-1] == "Rescheduling"
    assert registered() == []
