"""Reserved `cores` are exclusive: the planner gives each task instance concrete core ids, the
lowest free ones, never the node's reserved cores nor one another live task holds; a restart
keeps its ids, a task that ends gives them back."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.db.snapshot import InstanceRecord, Observed, SlotKey, SlotRecord
from reconciler.executor.base import NodeConfig
from reconciler.plan import Host, admission, plan, task_digest
from reconciler.spec.load import Desired, JobSpec, parse_text
from reconciler.taskconfig import runtime_env, task_config
from tests.unit.conftest import Harness, job

NOW = 1_800_000_000.0
# 4 cores of 1000 MHz, 4000 MB
ATTRS = {"attr.cpu.numcores": "4", "attr.cpu.totalcompute": "4000",
         "attr.memory.totalbytes": str(4000 << 20)}  # fmt: skip


def host(reserved: tuple[int, ...] = ()) -> Host:
    cap = admission.capacity(ATTRS, admission.Usage(0, 0, len(reserved)), reserved)
    return Host(ATTRS, True, cap)


def spec(name: str, cores: int = 1, tasks: int = 1, count: int = 1) -> JobSpec:
    res = f"cores = {cores}" if cores else "cpu = 100"
    body = "".join(
        f'task "t{i}" {{\n driver = "exec"\n config {{ command = "/bin/t" }}\n'
        f" resources {{\n {res}\n memory = 10\n }}\n}}\n"
        for i in range(tasks)
    )
    r = parse_text(f'job "{name}" {{\n group "g" {{\n count = {count}\n {body} }}\n}}', f"{name}.hcl")
    assert r.ok, r.problems
    return r.jobs[0]


def desired(*specs: JobSpec) -> Desired:
    return Desired(MappingProxyType({s.id: s for s in specs}), MappingProxyType({}))


def holding(s: JobSpec, ids: tuple[int, ...], state: str = "running", idx: int = 0,
            task: str = "t0", iid: int = 1) -> SlotRecord:  # fmt: skip
    key = SlotKey(s.id, "g", idx, task)
    d = task_digest(s.job, "g", task)
    inst = InstanceRecord(iid, 10, 9, 1, "boot", "", "", NOW - 50, d, s.digest)
    return SlotRecord(key, state, d, s.digest, instance=inst if state == "running" else None,
                      memory=10, cores=len(ids), core_ids=ids)  # fmt: skip


def cores_of(p: object) -> dict[str, tuple[int, ...]]:
    return {str(a.key): a.cores for a in p.start}  # type: ignore[attr-defined]


def test_two_tasks_get_different_cores_and_a_third_waits() -> None:
    p = plan(desired(spec("a"), spec("b"), spec("c"), spec("d"), spec("e")), Observed(), host(), NOW)
    assert cores_of(p) == {"a/g/0/t0": (0,), "b/g/0/t0": (1,), "c/g/0/t0": (2,), "d/g/0/t0": (3,)}
    assert [str(a.key) for a in p.blocked] == ["e/g/0/t0"]
    assert p.blocked[0].reason.startswith("Resources exhausted: cores")


def test_the_nodes_reserved_cores_are_never_given() -> None:
    p = plan(desired(spec("a", cores=2)), Observed(), host(reserved=(0, 2)), NOW)
    assert cores_of(p) == {"a/g/0/t0": (1, 3)}


def test_cores_held_by_running_tasks_of_other_jobs_are_skipped() -> None:
    a, b = spec("a"), spec("b")
    slot = holding(a, (0,))
    p = plan(desired(a, b), Observed({}, {slot.key: slot}, frozenset({1})), host(), NOW)
    assert cores_of(p) == {"b/g/0/t0": (1,)}
    # a scoped plan sees the store's global set, not only its own jobs' slots
    seen = Observed({}, {}, frozenset(), held=(0, 10, 2), held_cores=frozenset({0, 2}))
    p = plan(desired(a, b), seen, host(), NOW, scope=frozenset({"b"}))
    assert cores_of(p) == {"b/g/0/t0": (1,)}


def test_a_restart_keeps_its_cores() -> None:
    a = spec("a")
    pending = dataclasses.replace(holding(a, (2,), state="pending"), next_start_at=NOW - 1)
    p = plan(desired(a), Observed({}, {pending.key: pending}), host(), NOW)
    assert cores_of(p) == {"a/g/0/t0": (2,)}  # not 0, the lowest free one


def test_a_restart_that_asks_for_more_cores_keeps_its_own_and_adds_the_lowest_free() -> None:
    old = holding(spec("a", cores=1), (3,), state="pending")
    a2 = spec("a", cores=2)
    p = plan(desired(a2), Observed({}, {old.key: old}), host(), NOW)
    assert cores_of(p) == {"a/g/0/t0": (0, 3)}


def test_cores_come_back_when_a_task_ends() -> None:
    a, b = spec("a", cores=4), spec("b")
    done = holding(a, (0, 1, 2, 3), state="complete")
    p = plan(desired(b), Observed({}, {done.key: done}), host(), NOW, allow_empty=True)
    assert cores_of(p) == {"b/g/0/t0": (0,)}


def test_each_task_of_a_group_instance_gets_its_own_cores() -> None:
    p = plan(desired(spec("a", cores=1, tasks=2, count=2)), Observed(), host(), NOW)
    assert cores_of(p) == {"a/g/0/t0": (0,), "a/g/0/t1": (1,), "a/g/1/t0": (2,), "a/g/1/t1": (3,)}


def test_nomad_cpu_cores_and_limit_as_nomad_sets_them() -> None:
    assert admission.core_list((7, 0, 5, 6)) == "0,5-7"
    assert admission.core_list((1, 2, 4)) == "1-2,4"
    a = spec("a", cores=2)
    env = runtime_env(a, SlotKey("a", "g", 0, "t0"), ATTRS, (1, 2))
    assert env["NOMAD_CPU_CORES"] == "1-2"
    assert env["NOMAD_CPU_LIMIT"] == "2000"  # the cores' MHz (Nomad's bandwidth)
    cfg = task_config(a, SlotKey("a", "g", 0, "t0"), NodeConfig(), ATTRS, cores=(1, 2))
    assert cfg.core_ids == (1, 2) and cfg.cpu_shares == 2000
    plain = runtime_env(spec("b", cores=0), SlotKey("b", "g", 0, "t0"), ATTRS)
    assert plain["NOMAD_CPU_CORES"] == " " and plain["NOMAD_CPU_LIMIT"] == "100"


# ---- the property: over passes that start, end and restart tasks, no core is ever held by
# two live tasks, and none of the node's reserved cores is ever held ----

@st.composite
def scenarios(draw):  # type: ignore[no-untyped-def]
    jobs = [spec(n, draw(st.integers(0, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 2)))
            for n in draw(st.lists(st.sampled_from("abcdef"), unique=True, min_size=1, max_size=6))]  # fmt: skip
    reserved = tuple(sorted(draw(st.sets(st.integers(0, 3), max_size=2))))
    events = draw(st.lists(st.sampled_from(["running", "pending", "complete", "failed"]),
                           min_size=3, max_size=12))  # fmt: skip
    return jobs, reserved, events


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_no_core_is_ever_held_twice_nor_reserved(sc) -> None:  # type: ignore[no-untyped-def]
    jobs, reserved, events = sc
    h = host(reserved)
    want = desired(*jobs)
    slots: dict[SlotKey, SlotRecord] = {}
    iid = 0
    for step, outcome in enumerate(events):
        p = plan(want, Observed({}, dict(slots), frozenset(
            s.instance.id for s in slots.values() if s.instance)), h, NOW + step)  # fmt: skip
        for a in p.start:  # apply: what starts holds what the planner chose
            assert a.spec is not None
            task = a.spec.job.group[a.key.group].task[a.key.task]
            assert len(a.cores) == task.resources.cores
            iid += 1
            slots[a.key] = dataclasses.replace(
                holding(a.spec, a.cores, idx=a.key.idx, task=a.key.task, iid=iid),
                core_ids=a.cores, cores=len(a.cores))  # fmt: skip
        live = [s for s in slots.values() if s.state in admission.HOLDING]
        held = [c for s in live for c in s.core_ids]
        assert len(held) == len(set(held)), live
        assert not set(held) & set(reserved)
        if live:  # one task moves on: exits for good, waits to restart, or keeps running
            k = sorted(s.key for s in live)[step % len(live)]
            slots[k] = dataclasses.replace(slots[k], state=outcome, instance=None,
                                           next_start_at=NOW + step)  # fmt: skip


# ---- through the service and its store: the ids are recorded, kept, and given back ----

def test_the_store_records_the_cores_and_a_restart_keeps_them(h: Harness) -> None:
    h.service.host = dataclasses.replace(h.service.host, attributes=ATTRS,
                                         capacity=admission.capacity(ATTRS))  # fmt: skip
    h.service.applier.attributes = ATTRS
    one = job("one", extra_task="resources {\n cores = 1\n }")
    h.write("a.hcl", one)
    h.write("b.hcl", job("two", extra_task="resources {\n cores = 2\n }"))
    h.step()
    obs = h.store.observed()
    got = {str(k): s.core_ids for k, s in obs.slots.items()}
    assert got == {"one/g/0/t": (0,), "two/g/0/t": (1, 2)}
    assert obs.held_cores == frozenset({0, 1, 2})
    started = {c.id: c for c in h.fake.started}
    assert started["two/g/0/t"].core_ids == (1, 2)
    assert started["two/g/0/t"].env["NOMAD_CPU_CORES"] == "1-2"
    # two exits and restarts after its delay: it comes back on the same cores
    h.fake.finish("two/g/0/t", exit_code=1)
    h.step()
    assert h.store.observed().slots[SlotKey("two", "g", 0, "t")].state == "pending"
    h.write("c.hcl", job("three", extra_task="resources {\n cores = 1\n }"))
    h.step(60)
    obs = h.store.observed()
    assert {str(k): s.core_ids for k, s in obs.slots.items()} == {
        "one/g/0/t": (0,), "two/g/0/t": (1, 2), "three/g/0/t": (3,)}  # fmt: skip
    runs_of_two = [c.core_ids for c in h.fake.started if c.id == "two/g/0/t"]
    assert runs_of_two == [(1, 2), (1, 2)]
    # one is removed: its core is free again
    h.remove("a.hcl")
    h.step()
    h.step()
    assert h.store.observed().held_cores == frozenset({1, 2, 3})
