"""The planner is pure: properties over random desired and observed states."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.db.snapshot import InstanceRecord, JobRecord, Observed, SlotKey, SlotRecord
from reconciler.plan import Host, Plan, leaving, plan, task_digest
from reconciler.spec.load import Desired, parse_text

NOW = 1_800_000_000.0
HOST = Host({"attr.kernel.name": "linux"}, True)


def spec(name: str, count: int, variant: int):
    text = f"""
job "{name}" {{
  group "g" {{
    count = {count}
    task "a" {{
      driver = "exec"
      config {{ command = "/bin/a{variant}" }}
    }}
    task "b" {{
      driver = "exec"
      config {{ command = "/bin/b" }}
    }}
  }}
}}
"""
    return parse_text(text, f"jobs/{name}.hcl").jobs[0]


def desired_of(specs) -> Desired:
    return Desired(MappingProxyType({s.id: s for s in specs}), MappingProxyType({}))


STATES = ["pending", "running", "stopping", "complete", "failed", "dead"]


@st.composite
def world(draw):
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=4))
    specs = [spec(n, draw(st.integers(0, 4)), draw(st.integers(0, 1))) for n in names]
    slots = {}
    jobs = {}
    for n in draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=5)):
        jobs[n] = JobRecord(n, f"jobs/{n}.hcl", "ready", False, None, None, None)
        for idx in range(draw(st.integers(0, 5))):
            for task in ("a", "b"):
                state = draw(st.sampled_from(STATES))
                variant = draw(st.integers(0, 1))
                digest = task_digest(spec(n, 1, variant).job, "g", task)
                inst = None
                if state in ("running", "stopping"):
                    inst = InstanceRecord(
                        idx + 1, 100, 99, 1, "boot", "", "", NOW - 100, digest, ""
                    )
                key = SlotKey(n, "g", idx, task)
                slots[key] = SlotRecord(
                    key,
                    state,
                    digest,
                    "",
                    next_start_at=draw(st.sampled_from([None, NOW - 1, NOW + 5])),
                    instance=inst,
                )
    live = frozenset(s.instance.id for s in slots.values() if s.instance)
    return desired_of(specs), Observed(jobs, slots, live)


def wanted_keys(desired: Desired) -> set[SlotKey]:
    return {
        SlotKey(j.id, g, i, t)
        for j in desired.jobs.values()
        for g, grp in j.job.group.items()
        for i in range(grp.count)
        for t in grp.task
    }


@settings(max_examples=150, deadline=None)
@given(world())
def test_every_desired_instance_lands_in_exactly_one_bucket(w) -> None:
    desired, observed = w
    p = plan(desired, observed, HOST, NOW, allow_empty=True)
    placed: list[SlotKey] = [a.key for bucket in p.buckets().values() for a in bucket]
    for key in wanted_keys(desired):
        assert placed.count(key) == 1, (key, p)
    assert len(placed) == len(set(placed))


def simulate(p: Plan, observed: Observed) -> Observed:
    """What the store would hold once the plan's actions were taken (exits not yet seen)."""
    slots = dict(observed.slots)
    for a in p.start:
        inst = InstanceRecord(len(slots) + 1000, 1, 1, 1, "boot", "", "", NOW, a.task_digest,
                              a.spec.digest if a.spec else "")  # fmt: skip
        slots[a.key] = SlotRecord(
            a.key, "running", a.task_digest, inst.version_digest, instance=inst
        )
    for a in (*p.stop, *p.restart):
        slots[a.key] = replace(slots[a.key], state="stopping", stop_intent=a.intent)
    for a in p.rerender:
        slots[a.key] = replace(slots[a.key], spec_digest=a.task_digest)
    for k in p.forget:
        slots.pop(k, None)
    live = frozenset(s.instance.id for s in slots.values() if s.instance)
    return Observed(observed.jobs, slots, live)


@settings(max_examples=150, deadline=None)
@given(world())
def test_applying_a_plan_twice_is_a_no_op(w) -> None:
    desired, observed = w
    first = plan(desired, observed, HOST, NOW, allow_empty=True)
    after = simulate(first, observed)
    second = plan(desired, after, HOST, NOW, allow_empty=True)
    assert not second.stop and not second.restart and not second.forget
    assert not [a for a in second.start if a.key in {x.key for x in first.start}]


def _of(p: Plan, scope: frozenset[str]) -> tuple[object, ...]:
    """Everything a plan decides about the jobs in `scope`."""
    return (
        {name: [a for a in acts if a.key.job in scope] for name, acts in p.buckets().items()},
        [k for k in p.forget if k.job in scope], [j for j in p.promote if j in scope],
        [r for r in p.revert if r[0] in scope], {j: v for j, v in p.status.items() if j in scope},
        {j: v for j, v in p.attempt.items() if j in scope},
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(world(), st.data())
def test_a_scoped_plan_decides_what_the_full_plan_does_for_those_jobs(w, data) -> None:
    desired, observed = w
    scope = frozenset(data.draw(st.sets(st.sampled_from(["a", "b", "c", "d", "e"]))))
    full = plan(desired, observed, HOST, NOW)
    seen = Observed(
        {j: r for j, r in observed.jobs.items() if j in scope},
        {k: s for k, s in observed.slots.items() if k.job in scope},
        observed.live,
    )  # only the scope's rows, as the store reads them for a scoped pass
    part = plan(desired, seen, HOST, NOW, scope=scope)
    kept = scope & (set(desired.jobs) | desired.held)  # a scoped plan leaves removals alone
    assert _of(part, kept) == _of(full, kept)
    assert _of(part, scope - kept) == _of(Plan(), scope - kept)
    assert not part.warnings  # the "stop every job" guard is for full plans


def test_leaving_names_removed_jobs_until_they_are_gone() -> None:
    desired = desired_of([spec("a", 1, 0)])
    rec = JobRecord("b", "jobs/b.hcl", "ready", False, None, None, None)
    key = SlotKey("b", "g", 0, "a")
    slot = SlotRecord(key, "running", "x", "", instance=InstanceRecord(1, 1, 1, 1, "boot", "", "", NOW, "x", ""))
    assert leaving(desired, Observed({"b": rec}, {key: slot}, frozenset({1}))) == {"b"}
    assert leaving(desired, Observed({"b": replace(rec, status="removed")}, {}, frozenset())) == set()


def test_plan_is_deterministic_and_pure() -> None:
    desired = desired_of([spec("a", 3, 0)])
    assert plan(desired, Observed(), HOST, NOW) == plan(desired, Observed(), HOST, NOW)


def test_new_job_starts_every_instance_and_attempts_the_version() -> None:
    s = spec("a", 2, 0)
    p = plan(desired_of([s]), Observed(), HOST, NOW)
    assert sorted(str(a.key) for a in p.start) == ["a/g/0/a", "a/g/0/b", "a/g/1/a", "a/g/1/b"]
    assert p.attempt == {"a": s}


def test_removing_every_job_is_refused_without_allow_empty() -> None:
    s = spec("a", 1, 0)
    first = plan(desired_of([s]), Observed(), HOST, NOW)
    running = simulate(
        first, Observed({"a": JobRecord("a", "jobs/a.hcl", "ready", False, None, None, None)})
    )
    p = plan(desired_of([]), running, HOST, NOW)
    assert not p.stop and p.warnings
    p = plan(desired_of([]), running, HOST, NOW, allow_empty=True)
    assert len(p.stop) == 2


def test_blocked_by_constraint() -> None:
    r = parse_text(
        'job "x" {\n constraint {\n attribute = "${attr.cpu.arch}"\n value = "arm64"\n}\n'
        ' group "g" {\n task "t" {\n driver = "exec"\n config { command = "/x" }\n}\n}\n}',
        "x.hcl",
    )
    p = plan(desired_of(r.jobs), Observed(), Host({"attr.cpu.arch": "amd64"}, True), NOW)
    assert [str(a.key) for a in p.blocked] == ["x/g/0/t"] and not p.start
    assert p.status["x"][0] == "blocked" and "amd64" in p.status["x"][1]
