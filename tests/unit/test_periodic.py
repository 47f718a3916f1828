"""Periodic jobs on the fake executor with a fake clock: launches, overlap, catch-up, force, GC."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.service.loop import Service
from reconciler.spec import cron
from reconciler.spec.load import parse_text
from tests.unit.conftest import Harness, job

T0 = 1_800_000_000.0  # the harness clock; a multiple of 10


def periodic(name: str = "p", every: str = "*/10 * * * * * *", run_for: float = 3,
             extra: str = "", typ: str = "batch") -> str:  # fmt: skip
    block = f'periodic {{\n crons = ["{every}"]\n {extra}\n }}'
    return job(name, typ=typ, env=f'FAKE_RUN_FOR = "{run_for}"', extra_job=block)


def children(h: Harness, parent: str = "p") -> dict[str, str]:
    with h.store.engine.connect() as c:
        rows = c.exec_driver_sql(
            "SELECT id, status FROM jobs WHERE parent_id = ? AND gc_at IS NULL ORDER BY id",
            (parent,),
        ).all()
    return {r[0]: r[1] for r in rows}


def job_events(h: Harness, job_id: str) -> list[tuple[str, str]]:
    with h.store.engine.connect() as c:
        rows = c.exec_driver_sql(
            "SELECT type, message FROM task_events WHERE job_id = ? AND group_name = ''"
            " ORDER BY id", (job_id,),
        ).all()  # fmt: skip
    return [(r[0], r[1]) for r in rows]


# ---- the language ----

@pytest.mark.parametrize(
    ("expr", "nomad"),
    [
        ("*/15 * * * *", "0 */15 * * * * *"),  # 5 fields: minute first
        ("*/15 * * * * *", "0 */15 * * * * *"),  # 6: a YEAR at the end, not seconds first
        ("*/15 * * * * * *", "*/15 * * * * * *"),  # 7: seconds first
        ("@daily", "0 0 0 * * * *"),
    ],
)
def test_cron_fields_mean_what_cronexpr_means(expr: str, nomad: str) -> None:
    assert cron.normalize(expr) == nomad


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ('cron = "* * * *"', 'Invalid cron spec "* * * *": missing field(s)'),
        ('cron = "* * * * *"\n crons = ["* * * * *"]', "Only cron or crons may be used"),
        ("prohibit_overlap = true", "Must specify a spec"),
        ('cron = "@every 5s"', "Invalid cron spec"),
        ('cron = "* * * * *"\n time_zone = "Mars/Olympus"', 'Invalid time zone "Mars/Olympus"'),
    ],
)
def test_bad_periodic_blocks_are_file_line_errors(block: str, message: str) -> None:
    text = job("p", typ="batch", extra_job=f"periodic {{\n {block}\n }}")
    r = parse_text(text, "jobs/p.hcl")
    assert not r.ok
    assert any(message in str(p) and str(p).startswith("jobs/p.hcl:") for p in r.problems), r.problems


def test_periodic_needs_batch_unless_disabled_as_in_nomad() -> None:
    r = parse_text(job("p", extra_job='periodic {\n cron = "* * * * *"\n }'), "p.hcl")
    assert any('Periodic can only be used with "batch" or "sysbatch"' in str(p) for p in r.problems)
    off = 'periodic {\n cron = "nonsense"\n enabled = false\n }'
    assert parse_text(job("p", extra_job=off), "p.hcl").ok  # Nomad validates enabled blocks only


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["*/7 * * * * * *", "*/3 * * * *", "0 0 * * * *", "@hourly"]),
                min_size=1, max_size=3),
       st.floats(1.6e9, 2.0e9))  # fmt: skip
def test_next_launch_is_the_earliest_of_all_crons(exprs: list[str], t: float) -> None:
    every = cron.next_after(tuple(exprs), "UTC", t)
    alone = [cron.next_after((e,), "UTC", t) for e in exprs]
    assert every is not None and every > t and every == min(a for a in alone if a is not None)


def test_cron_is_deprecated_with_nomads_warning_and_still_used() -> None:
    r = parse_text(job("p", typ="batch", extra_job='periodic {\n cron = "* * * * *"\n }'), "jobs/p.hcl")
    assert r.ok and r.jobs[0].job.periodic is not None and r.jobs[0].job.periodic.specs == ("* * * * *",)
    warned = [str(p) for p in r.problems if p.severity == "warning"]
    assert warned and warned[0].startswith("jobs/p.hcl:5: warning: job.p.periodic.cron: cron is deprecated"), warned
    assert "Use crons instead" in warned[0]
    quiet = parse_text(job("p", typ="batch", extra_job='periodic {\n crons = ["* * * * *"]\n }'), "p.hcl")
    assert quiet.ok and not quiet.problems


def _wall(zone: str, y: int, mo: int, d: int, h: int, mi: int, later_min: int = 0) -> float:
    """A wall time in `zone` (the first one where the clock repeats), plus minutes of real time."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone)).timestamp() + later_min * 60


LA, LH = "America/Los_Angeles", "Australia/Lord_Howe"


@pytest.mark.parametrize(
    ("zone", "expr", "start", "expected"),
    [  # cronexpr_test.go's DST cases (hashicorp/cronexpr), in real zones
        (LA, "2 2 * * * 2019", (2019, 3, 9, 1, 0), [(2019, 3, 9, 2, 2), (2019, 3, 11, 2, 2)]),
        (LA, "0 2 * * * 2019", (2019, 3, 9, 1, 0), [(2019, 3, 9, 2, 0), (2019, 3, 11, 2, 0)]),
        (LA, "0 1 * * * 2019", (2019, 3, 9, 0, 0), [(2019, 3, 9, 1, 0), (2019, 3, 10, 1, 0)]),
        (LA, "30 1 * * * 2019", (2019, 11, 3, 0, 0),
         [(2019, 11, 3, 0, 30, 60), (2019, 11, 3, 0, 30, 120), (2019, 11, 4, 1, 30)]),
        (LA, "0 2 * * * 2019", (2019, 11, 3, 0, 0), [(2019, 11, 3, 0, 0, 180), (2019, 11, 4, 2, 0)]),
        (LA, "30 1 * * * 2019", (2019, 11, 3, 0, 40, 120), [(2019, 11, 4, 1, 30)]),
        (LA, "30 * * * * 2019", (2019, 11, 3, 0, 0),
         [(2019, 11, 3, 0, 30), (2019, 11, 3, 0, 30, 60), (2019, 11, 3, 0, 30, 120),
          (2019, 11, 3, 2, 30)]),
        (LH, "31 1 * * * 2019", (2019, 4, 6, 0, 0),
         [(2019, 4, 6, 1, 31), (2019, 4, 7, 0, 31, 60), (2019, 4, 7, 0, 31, 90), (2019, 4, 8, 1, 31)]),
        (LH, "3 2 * * * 2019", (2019, 10, 5, 0, 0), [(2019, 10, 5, 2, 3), (2019, 10, 7, 2, 3)]),
        (LH, "31 2 * * * 2019", (2019, 10, 5, 0, 0), [(2019, 10, 5, 2, 31), (2019, 10, 7, 2, 31)]),
    ],
)  # fmt: skip
def test_dst_skips_and_repeats_as_cronexpr_does(
    zone: str, expr: str, start: tuple[int, ...], expected: list[tuple[int, ...]]
) -> None:
    t = _wall(zone, *start)
    for want in expected:
        t_next = cron.next_after((expr,), zone, t)
        assert t_next == _wall(zone, *want), (expr, datetime.fromtimestamp(t_next or 0, ZoneInfo(zone)))
        t = t_next


TRANSITIONS = [  # (zone, a day before a DST change)
    (LA, (2019, 3, 9)), (LA, (2019, 11, 2)), (LH, (2019, 4, 6)), (LH, (2019, 10, 5)),
    ("Europe/Berlin", (2026, 3, 28)), ("Europe/Berlin", (2026, 10, 24)),
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TRANSITIONS), st.integers(0, 23), st.integers(0, 59))
def test_launches_across_a_dst_change_are_exactly_cronexprs(
    where: tuple[str, tuple[int, int, int]], hour: int, minute: int
) -> None:
    """Against every minute of three days, walked in real time: a launch at each instant whose
    wall clock shows the time (twice where the clock repeats it), none where the clock skips
    it, and none in an hour that does not begin on the clock (cronexpr's rule)."""
    zone, (y, mo, d) = where
    tz = ZoneInfo(zone)
    start = datetime(y, mo, d, tzinfo=tz).timestamp()
    end = start + 3 * 86400
    want = []
    for t in range(int(start), int(end), 60):
        wall = datetime.fromtimestamp(t, tz)
        top = wall.replace(minute=0, tzinfo=None)
        begins = datetime.fromtimestamp(top.replace(tzinfo=tz).timestamp(), tz).replace(tzinfo=None) == top
        if (wall.hour, wall.minute) == (hour, minute) and begins:
            want.append(float(t))
    got: list[float] = []
    t_next = cron.next_after((f"{minute} {hour} * * *",), zone, start - 1)
    while t_next is not None and t_next < end:
        got.append(t_next)
        t_next = cron.next_after((f"{minute} {hour} * * *",), zone, t_next)
    assert got == want


# ---- the service ----

def test_children_launch_on_schedule_with_their_own_history(h: Harness) -> None:
    h.write("p.hcl", periodic())
    h.step()
    assert h.states() == {}  # the parent runs nothing itself
    status, reason = h.job_status("p")
    assert status == "running" and reason.startswith("next launch ") and ":10 UTC" in reason
    h.step(10)
    first = f"p/periodic-{int(T0) + 10}"
    assert children(h) == {first: "ready"} or children(h) == {first: "reconciling"}
    assert h.states() == {f"{first}/g/0/t": "running"}
    env = h.fake.started[-1].env
    assert env["NOMAD_JOB_ID"] == first and env["NOMAD_JOB_PARENT_ID"] == "p"
    h.step(3)
    assert children(h) == {first: "complete"}
    assert h.events(f"{first}/g/0/t")[:2] == ["Received", "Task Setup"]
    h.step(7)
    assert list(children(h)) == [first, f"p/periodic-{int(T0) + 20}"]
    assert [e for e, _ in job_events(h, "p")] == ["Periodic Launch", "Periodic Launch"]


def test_prohibit_overlap_skips_and_records(h: Harness) -> None:
    h.write("p.hcl", periodic(run_for=25, extra="prohibit_overlap = true"))
    h.step()
    for _ in range(4):
        h.step(10)
    launched = list(children(h))
    assert launched == [f"p/periodic-{int(T0) + 10}", f"p/periodic-{int(T0) + 40}"]
    skipped = [m for e, m in job_events(h, "p") if e == "Periodic Launch Skipped"]
    assert len(skipped) == 2 and "still running (prohibit_overlap)" in skipped[0]


def test_force_launches_now_even_while_a_child_runs(h: Harness) -> None:
    h.write("p.hcl", periodic(run_for=100, extra="prohibit_overlap = true"))
    h.step()
    h.step(10)
    h.clock.advance(2)
    reply = h.service.request("periodic_force", job="p")
    h.step()
    assert reply.result(1) == {"child": f"p/periodic-{int(T0) + 12}"}
    assert len(children(h)) == 2
    h.write("s.hcl", job("s"))
    h.step()
    bad = h.service.request("periodic_force", job="s")
    h.step()
    with pytest.raises(ValueError, match="can't force launch non-periodic job"):
        bad.result(1)


def test_launches_missed_while_down_give_one_catch_up_named_now(h: Harness) -> None:
    h.write("p.hcl", periodic(run_for=1))
    h.step()
    h.step(10)
    assert len(children(h)) == 1
    # the service is down from +11 s to +45 s: launches at +20, +30 and +40 fall in between
    h.clock.advance(35)
    h.service = Service(h.jobs, h.store, h.fake, h.service.node, clock=h.clock, watch=False)
    h.step()
    launched = list(children(h))
    assert launched == [f"p/periodic-{int(T0) + 10}", f"p/periodic-{int(T0) + 45}"]
    kinds = [m for e, m in job_events(h, "p") if e == "Periodic Launch"]
    assert "catch-up launch after downtime" in kinds[-1]
    h.step(5)  # back on schedule, named for its scheduled time
    assert list(children(h))[-1] == f"p/periodic-{int(T0) + 50}"


def test_a_changed_expression_reschedules_from_now(h: Harness) -> None:
    h.write("p.hcl", periodic())
    h.step()
    h.step(5)
    h.write("p.hcl", periodic(every="0 0 * * * *"))  # hourly
    h.step()
    h.step(10)
    assert children(h) == {}
    assert "next launch" in h.job_status("p")[1] and ":00:00 UTC" in h.job_status("p")[1]


def test_finished_children_are_collected_after_the_threshold_never_while_running(
    h: Harness,
) -> None:
    h.service.host = replace(h.service.host, gc_after=60)
    h.write("p.hcl", periodic(every="0 0 * * * *", run_for=100))
    h.step()
    h.service.request("periodic_force", job="p")
    h.step()
    child = next(iter(children(h)))
    h.step(90)  # still running after 90 s: kept
    assert child in children(h)
    h.step(10)  # complete at +100
    assert children(h) == {child: "complete"}
    h.step(59)
    assert child in children(h)
    h.step(2)
    assert children(h) == {}
    assert h.states() == {} and h.job_status(child)[0] == "removed"
    assert "Started" in h.events(f"{child}/g/0/t")  # its history stays


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789*/,-?LW# @abcdefghijklmnopqrstuvwxyzHR", max_size=40))
def test_any_expression_is_a_cron_or_a_clear_error(text: str) -> None:
    try:
        out = cron.normalize(text)
    except cron.CronError as e:
        assert str(e)
    else:
        assert len(out.split()) == 7


# ---- dispatch ----

PARAM = job("w", typ="batch", extra_job=(
    'parameterized {\n payload = "required"\n meta_required = ["who"]\n'
    ' meta_optional = ["extra"]\n }'
), extra_task='dispatch_payload { file = "in.txt" }', env='FAKE_RUN_FOR = "1"')  # fmt: skip


def dispatch(h: Harness, **args: object) -> object:
    reply = h.service.request("dispatch", job="w", **args)
    h.step()
    return reply.result(1)


def test_dispatch_checks_in_nomads_order_and_words(h: Harness) -> None:
    h.write("w.hcl", PARAM)
    h.step()
    assert h.job_status("w")[0] == "running" and h.states() == {}
    cases = [
        ({"meta": {"who": "a"}}, "Payload is not provided but required"),
        ({"meta": {"who": "a"}, "payload": ("x" * 16385).encode().hex()},
         "Payload exceeds maximum size; 16385 > 16384"),
        ({"meta": {"who": "a", "bad": "1"}, "payload": "00"},
         "unpermitted metadata keys: ['bad']"),
        ({"meta": {}, "payload": "00"}, "did not provide required meta keys: ['who']"),
    ]  # fmt: skip
    for args, message in cases:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            dispatch(h, **args)
    reply = h.service.request("dispatch", job="nothere")
    h.step()
    with pytest.raises(KeyError, match="not found"):
        reply.result(1)
    assert children(h, "w") == {}


def test_dispatch_runs_a_child_with_meta_payload_and_a_token(h: Harness) -> None:
    h.write("w.hcl", PARAM)
    h.step()
    first = dispatch(h, meta={"who": "al-ice"}, payload=b"data".hex(), token="t")
    child = first["child"]  # type: ignore[index]
    assert child.startswith(f"w/dispatch-{int(T0)}-") and len(child.rsplit("-", 1)[1]) == 8
    started = h.fake.started[-1]
    assert started.env["NOMAD_META_who"] == "al-ice" and started.env["NOMAD_META_extra"] == ""
    assert started.payload == b"data" and started.payload_file == "in.txt"
    assert started.env["NOMAD_JOB_PARENT_ID"] == "w"
    again = dispatch(h, meta={"who": "bob"}, payload=b"x".hex(), token="t")
    assert again == {"child": child, "existing": True}
    h.step(1)
    assert children(h, "w") == {child: "complete"}


def test_the_payload_is_written_once_per_task_not_at_every_restart(h: Harness) -> None:
    """Nomad's dispatch hook is done after its first run: a restart finds local/ as the task
    left it (client/allocrunner/taskrunner/dispatch_hook.go)."""
    h.write("w.hcl", PARAM.replace('FAKE_RUN_FOR = "1"', 'FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "1"'))
    h.step()
    child = dispatch(h, meta={"who": "a"}, payload=b"data".hex())["child"]  # type: ignore[index]
    runs = lambda: [c for c in h.fake.started if c.id.startswith(child)]  # noqa: E731
    assert [(c.payload, c.payload_file) for c in runs()] == [(b"data", "in.txt")]
    for _ in range(4):
        h.step(20)
    assert len(runs()) >= 2, h.states()  # it failed and was restarted
    assert all(c.payload_file == "" for c in runs()[1:])


def test_an_id_prefix_template_names_the_child_as_nomad_does(h: Harness) -> None:
    h.write("w.hcl", PARAM)
    h.step()
    child = dispatch(h, meta={"who": "a"}, payload="00", prefix="nightly")["child"]  # type: ignore[index]
    assert child.startswith(f"w/dispatch-nightly-{int(T0)}-")
    with pytest.raises(ValueError, match="id prefix template"):
        dispatch(h, meta={"who": "a"}, payload="00", prefix="a/b")
