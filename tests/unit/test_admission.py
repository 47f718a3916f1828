"""Resource admission in the planner: Nomad's fit check on one node."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reconciler.db.snapshot import InstanceRecord, JobRecord, Observed, SlotKey, SlotRecord
from reconciler.plan import Host, admission, plan, task_digest
from reconciler.spec.load import Desired, parse_text
from reconciler.spec.node import parse_cpuset

NOW = 1_800_000_000.0
# 2 cores of 1000 MHz, 1000 MB; 100 MB reserved for the system
ATTRS = {"attr.cpu.numcores": "2", "attr.cpu.totalcompute": "2000",
         "attr.memory.totalbytes": str(1000 << 20)}  # fmt: skip
CAP = admission.capacity(ATTRS, admission.Usage(0, 100, 0))
HOST = Host(ATTRS, True, CAP)


def job(name: str, memory: int = 300, count: int = 1, cpu: int = 100, cores: int = 0,
        tasks: int = 1) -> object:  # fmt: skip
    res = f"cores = {cores}" if cores else f"cpu = {cpu}"
    body = "".join(
        f'task "t{i}" {{\n driver = "exec"\n config {{ command = "/bin/t" }}\n'
        f" resources {{\n {res}\n memory = {memory}\n }}\n}}\n"
        for i in range(tasks)
    )
    r = parse_text(f'job "{name}" {{\n group "g" {{\n count = {count}\n {body} }}\n}}', f"{name}.hcl")
    assert r.ok, r.problems
    return r.jobs[0]


def desired(*specs: object) -> Desired:
    return Desired(MappingProxyType({s.id: s for s in specs}), MappingProxyType({}))  # type: ignore[attr-defined]


def running(spec: object, idx: int = 0, task: str = "t0", iid: int = 1) -> SlotRecord:
    j = spec.job  # type: ignore[attr-defined]
    key = SlotKey(spec.id, "g", idx, task)  # type: ignore[attr-defined]
    need = admission.of_task(j.group["g"].task[task])
    d = task_digest(j, "g", task)
    inst = InstanceRecord(iid, 10, 9, 1, "boot", "", "", NOW - 50, d, spec.digest)  # type: ignore[attr-defined]
    return SlotRecord(key, "running", d, spec.digest, instance=inst, cpu=need.cpu,  # type: ignore[attr-defined]
                      memory=need.memory, cores=need.cores)  # fmt: skip


def test_the_job_that_does_not_fit_is_blocked_with_nomads_words() -> None:
    a, b, c = job("a", 400), job("b", 400), job("c", 400)
    p = plan(desired(a, b, c), Observed(), HOST, NOW)
    assert sorted(str(x.key) for x in p.start) == ["a/g/0/t0", "b/g/0/t0"]
    assert [str(x.key) for x in p.blocked] == ["c/g/0/t0"]
    assert p.blocked[0].reason.startswith("Resources exhausted: memory")
    assert p.status["c"][0] == "blocked" and "memory" in p.status["c"][1]
    assert p.waiting == frozenset({"c"})


def test_room_freed_by_another_job_lets_the_blocked_one_start() -> None:
    a, c = job("a", 400), job("c", 400)
    b = job("b", 400)
    rec = {j: JobRecord(j, f"{j}.hcl", "ready", False, None, None, None) for j in "abc"}
    slots = {s.key: s for s in (running(a, iid=1), running(b, iid=2))}
    full = Observed(rec, slots, frozenset({1, 2}))
    assert plan(desired(a, b, c), full, HOST, NOW).blocked
    # b's file is gone and its task has exited: its slot no longer holds room
    slots.pop(SlotKey("b", "g", 0, "t0"))
    p = plan(desired(a, c), Observed(rec, slots, frozenset({1})), HOST, NOW, allow_empty=True)
    assert [str(x.key) for x in p.start] == ["c/g/0/t0"] and not p.blocked


def test_a_scoped_plan_counts_what_other_jobs_hold() -> None:
    a, c = job("a", 400), job("c", 400)
    slot = running(a)
    seen = Observed({}, {}, frozenset(), held=(slot.cpu, 800, 0))  # a, b hold 800 MB
    p = plan(desired(a, c), seen, HOST, NOW, scope=frozenset({"c"}))
    assert p.blocked and not p.start


def test_count_100000_is_blocked_whole_without_building_its_slots() -> None:
    big = job("big", 300, count=100_000, cpu=1)
    p = plan(desired(big), Observed(), HOST, NOW)
    assert not p.start
    assert len(p.blocked) == 1 and "all 100000 instances" in p.blocked[0].reason
    assert p.status["big"] == ("blocked", p.status["big"][1])
    assert "Resources exhausted: cpu (the job needs 100000 MHz" in p.status["big"][1]


def test_a_group_instance_is_placed_whole_or_not_at_all() -> None:
    two = job("two", 300, tasks=2)  # 600 MB per instance
    p = plan(desired(job("a", 400), two), Observed(), HOST, NOW)
    assert [str(x.key) for x in p.start] == ["a/g/0/t0"]
    assert sorted(str(x.key) for x in p.blocked) == ["two/g/0/t0", "two/g/0/t1"]


def test_cores_are_exclusive_and_take_their_mhz_from_the_cpu_pool() -> None:
    one = job("one", 100, cores=1)
    p = plan(desired(one, job("two", 100, cores=1), job("three", 100, cores=1)),
             Observed(), HOST, NOW)  # fmt: skip
    assert len(p.start) == 2 and "Resources exhausted: cores" in p.blocked[0].reason
    # one core taken: 1000 MHz left for cpu
    p = plan(desired(one, job("web", 100, cpu=1500)), Observed(), HOST, NOW)
    assert [str(x.key) for x in p.start] == ["one/g/0/t0"]
    assert "Resources exhausted: cpu" in p.blocked[0].reason


def test_an_update_that_no_longer_fits_keeps_the_old_version_running() -> None:
    old = job("a", 400)
    new = job("a", 1000)
    rec = {"a": JobRecord("a", "a.hcl", "ready", False, old.digest, old.digest, None)}  # type: ignore[attr-defined]
    slot = running(old)
    p = plan(desired(new), Observed(rec, {slot.key: slot}, frozenset({1})), HOST, NOW)
    assert not p.restart and not p.stop
    assert p.status["a"][0] == "blocked" and "memory" in p.status["a"][1]


def test_no_capacity_means_no_admission() -> None:
    p = plan(desired(job("big", 300, count=1000)), Observed(), Host(ATTRS, True), NOW)
    assert len(p.start) == 1000


def test_reserved_cores_leave_the_pool() -> None:
    assert parse_cpuset("0-1,3") == (0, 1, 3)
    cap = admission.capacity(ATTRS, admission.Usage(0, 0, len(parse_cpuset("1"))))
    assert cap is not None and cap.available == admission.Usage(1000, 1000, 1)


# ---- the property: whatever is asked, starts never reserve more than the node has ----

@st.composite
def worlds(draw):  # type: ignore[no-untyped-def]
    specs = [
        job(n, draw(st.sampled_from([10, 100, 300, 700])), draw(st.integers(0, 3)),
            draw(st.sampled_from([1, 100, 900])), draw(st.sampled_from([0, 0, 1])),
            draw(st.integers(1, 2)))
        for n in draw(st.lists(st.sampled_from("abcd"), unique=True, max_size=4))
    ]  # fmt: skip
    slots: dict[SlotKey, SlotRecord] = {}
    iid = 0
    for s in specs:
        for idx in range(draw(st.integers(0, 2))):
            for t in s.job.group["g"].task:  # type: ignore[attr-defined]
                iid += 1
                slot = running(s, idx, t, iid)
                state = draw(st.sampled_from(["running", "pending", "complete", "failed"]))
                slots[slot.key] = SlotRecord(
                    slot.key, state, slot.spec_digest, slot.version_digest,
                    instance=slot.instance if state == "running" else None,
                    cpu=slot.cpu, memory=slot.memory, cores=slot.cores,
                )  # fmt: skip
    live = frozenset(s.instance.id for s in slots.values() if s.instance)
    return desired(*specs), Observed({}, slots, live)


def _reserved(slots: dict[SlotKey, admission.Usage]) -> admission.Usage:
    assert CAP is not None
    u = admission.total(slots.values())
    return admission.Usage(u.cpu + u.cores * CAP.mhz_per_core, u.memory, u.cores)


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_never_more_reserved_than_available(w) -> None:  # type: ignore[no-untyped-def]
    assert CAP is not None
    want, observed = w
    before = {k: admission.of_slot(s) for k, s in observed.slots.items()}
    assume(not _reserved(before).exceeds(CAP.available))
    p = plan(want, observed, HOST, NOW, allow_empty=True)
    after = dict(before)
    for a in p.start:
        assert a.spec is not None
        after[a.key] = admission.of_task(a.spec.job.group[a.key.group].task[a.key.task])
    assert not _reserved(after).exceeds(CAP.available), (p.start, p.blocked)


def test_the_secrets_tmpfs_is_memory_as_nomad_allocates_it() -> None:
    from reconciler.db.snapshot import SlotKey as Key
    from reconciler.executor.base import NodeConfig
    from reconciler.taskconfig import task_config

    text = ('job "s" {\n group "g" {\n task "t" {\n driver = "exec"\n config { command = "/bin/t" }\n'
            ' resources {\n memory = 100\n memory_max = 200\n secrets = 8\n }\n }\n }\n}')  # fmt: skip
    r = parse_text(text, "s.hcl")
    assert r.ok, r.problems
    spec = r.jobs[0]
    assert admission.of_task(spec.job.group["g"].task["t"]).memory == 108
    cfg = task_config(spec, Key("s", "g", 0, "t"), NodeConfig(), ATTRS)
    assert (cfg.memory_mb, cfg.memory_max_mb, cfg.secrets_mb) == (108, 208, 8)
    assert (cfg.env["NOMAD_MEMORY_LIMIT"], cfg.env["NOMAD_MEMORY_MAX_LIMIT"]) == ("108", "208")
    plain = parse_text(text.replace(" secrets = 8\n", ""), "p.hcl").jobs[0]
    assert task_config(plain, Key("p", "g", 0, "t"), NodeConfig(), ATTRS).secrets_mb == 1
    assert not parse_text(text.replace("secrets = 8", "secrets = -1"), "n.hcl").ok
