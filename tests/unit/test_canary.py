"""Canary deployments (`update { canary }`) through the loop, the fake executor and the store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.db.snapshot import InstanceRecord, JobRecord, Observed, SlotKey, SlotRecord
from reconciler.executor.base import NodeConfig
from reconciler.plan import Host, plan, task_digest
from reconciler.service.loop import Service
from reconciler.spec.load import Desired, parse_text
from tests.unit.conftest import Harness, job

CANARY = 'update {{\n canary = 1\n min_healthy_time = "5s"\n healthy_deadline = "1m"\n {}\n}}'


def web(v: str, more: str = "", env: str = "", count: int = 2) -> str:
    return job(count=count, env=f'V = "{v}"\n {env}', extra_job=CANARY.format(more))


def versions(h: Harness) -> dict[str, str]:
    """Each running task instance's V."""
    return {k: t.config.env["V"] for k, t in sorted(h.fake.tasks.items()) if t.alive}


def deployed(h: Harness, more: str = "") -> None:
    """v1 of count 2 applied, then v2 written: its canary starts."""
    h.write("web.hcl", web("1", more))
    h.step()
    h.step(6)
    assert h.job_status("web") == ("ready", "")
    h.write("web.hcl", web("2", more))
    h.step()


def test_a_canary_starts_beside_the_old_instances_and_nothing_else_changes(h: Harness) -> None:
    deployed(h)
    assert versions(h) == {"web/g/0/t": "1", "web/g/1/t": "1", "web/g/2/t": "2"}
    assert h.fake.tasks["web/g/2/t"].config.env["NOMAD_ALLOC_INDEX"] == "2"
    assert h.job_status("web") == ("reconciling", "0/1 canaries healthy")
    h.step(6)
    status, reason = h.job_status("web")
    assert status == "reconciling" and "waiting for promotion (1/1 canaries healthy)" in reason
    h.step(120)  # waiting for promotion is not held to healthy_deadline
    h.step()
    assert h.job_status("web")[1] == reason
    assert versions(h) == {"web/g/0/t": "1", "web/g/1/t": "1", "web/g/2/t": "2"}
    assert len(h.fake.started) == 3


def test_promotion_updates_the_old_instances_then_stops_the_canary(h: Harness) -> None:
    deployed(h)
    early = h.service.request("promote", job="web")
    h.step()
    with pytest.raises(ValueError, match="0/1 canaries healthy"):
        early.result(1)
    h.step(6)
    reply = h.service.request("promote", job="web")
    h.step()
    assert reply.result(1)["canaries"] == 1
    # max_parallel = 1: one old instance at a time, the canary runs on meanwhile
    assert sorted(versions(h).values()) == ["1", "2", "2"]
    assert "web/g/2/t" in versions(h)
    for _ in range(4):
        h.step(6)
    assert versions(h) == {"web/g/0/t": "2", "web/g/1/t": "2"}
    assert h.states() == {"web/g/0/t": "running", "web/g/1/t": "running"}
    assert h.job_status("web") == ("ready", "")
    with h.store.engine.connect() as c:
        kinds = [r[0] for r in c.exec_driver_sql(
            "SELECT type FROM task_events WHERE job_id = 'web' AND idx IS NULL").all()]  # fmt: skip
    assert "Canaries Promoted" in kinds


def test_auto_promote_once_every_canary_is_healthy(h: Harness) -> None:
    deployed(h, "auto_promote = true")
    assert sorted(versions(h).values()) == ["1", "1", "2"]
    h.step(6)
    h.step()
    assert sorted(versions(h).values()) == ["1", "2", "2"]
    for _ in range(4):
        h.step(6)
    assert versions(h) == {"web/g/0/t": "2", "web/g/1/t": "2"}
    assert h.job_status("web") == ("ready", "")


def test_a_failing_canary_is_rolled_back_and_the_old_instances_are_untouched(
    h: Harness,
) -> None:
    more = "auto_revert = true"
    h.write("web.hcl", web("1", more))
    h.step()
    h.step(6)
    old = {k: t.handle.pid for k, t in h.fake.tasks.items()}
    h.write("web.hcl", web("2", more, env='FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "1"'))
    h.step()
    assert versions(h)["web/g/2/t"] == "2"
    for _ in range(6):
        h.step(20)
    assert versions(h) == {"web/g/0/t": "1", "web/g/1/t": "1"}
    assert {k: t.handle.pid for k, t in h.fake.tasks.items() if t.alive} == old
    assert "web/g/2/t" not in h.states()
    status, reason = h.job_status("web")
    assert status == "failed" and "rolled back" in reason


def test_a_newer_version_replaces_the_canaries(h: Harness) -> None:
    deployed(h)
    h.step(6)
    h.write("web.hcl", web("3"))
    h.step()
    h.step()
    assert versions(h) == {"web/g/0/t": "1", "web/g/1/t": "1", "web/g/2/t": "3"}
    assert h.job_status("web") == ("reconciling", "0/1 canaries healthy")  # it starts over
    h.step(6)
    assert "1/1 canaries healthy" in h.job_status("web")[1]


def test_a_service_restart_resumes_the_deployment(h: Harness) -> None:
    deployed(h)
    h.step(6)
    h.fake.survivors = {"web/g/0/t", "web/g/1/t", "web/g/2/t"}
    h.service = Service(h.jobs, h.store, h.fake, NodeConfig(), clock=h.clock, watch=False)
    h.step()
    h.step()
    assert len(h.fake.started) == 3  # re-adopted, nothing started again
    assert "waiting for promotion (1/1 canaries healthy)" in h.job_status("web")[1]
    reply = h.service.request("promote", job="web")
    h.step()
    assert reply.result(1)["canaries"] == 1
    # promoted: the restarted service carries it on from the store
    h.service = Service(h.jobs, h.store, h.fake, NodeConfig(), clock=h.clock, watch=False)
    h.fake.survivors = {k for k, t in h.fake.tasks.items() if t.alive}
    for _ in range(5):
        h.step(6)
    assert versions(h) == {"web/g/0/t": "2", "web/g/1/t": "2"}
    assert h.job_status("web") == ("ready", "")


def test_a_count_or_template_change_needs_no_canary(h: Harness) -> None:
    deployed(h)
    h.step(6)
    promote = h.service.request("promote", job="web")
    h.step()
    promote.result(1)
    for _ in range(4):
        h.step(6)
    h.write("web.hcl", web("2", count=3))
    h.step()
    assert versions(h) == {"web/g/0/t": "2", "web/g/1/t": "2", "web/g/2/t": "2"}
    h.step(6)
    assert h.job_status("web") == ("ready", "")


# ---- the planner alone: properties over random counts, canaries and promotion ----

NOW = 1_800_000_000.0


def _spec(count: int, command: str, canary: int, max_parallel: int):  # type: ignore[no-untyped-def]
    text = (f'job "j" {{\n update {{\n canary = {canary}\n max_parallel = {max_parallel}\n'
            f' min_healthy_time = "5s"\n }}\n group "g" {{\n count = {count}\n'
            f' task "t" {{\n driver = "exec"\n config {{ command = "{command}" }}\n }}\n }}\n}}\n')  # fmt: skip
    return parse_text(text, "jobs/j.hcl").jobs[0]


def _running(key: SlotKey, version, n: int) -> SlotRecord:  # type: ignore[no-untyped-def]
    digest = task_digest(version.job, "g", "t")
    inst = InstanceRecord(n, 100 + n, 99, 1, "boot", "", "", NOW - 100, digest, version.digest)
    return SlotRecord(key, "running", digest, version.digest, instance=inst)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2),
       st.booleans())  # fmt: skip
def test_before_promotion_only_canaries_start(
    old_count: int, new_count: int, canary: int, max_parallel: int, started: bool
) -> None:
    old, new = _spec(old_count, "/bin/a", canary, max_parallel), _spec(new_count, "/bin/b", canary, max_parallel)
    base = max(old_count, new_count)
    slots = {k: _running(k, old, i + 1)
             for i, k in enumerate(SlotKey("j", "g", i, "t") for i in range(old_count))}  # fmt: skip
    if started:  # some canaries already up, on the new version
        for i in range(base, base + canary - 1):
            slots[SlotKey("j", "g", i, "t")] = _running(SlotKey("j", "g", i, "t"), new, 50 + i)
    rec = JobRecord("j", "jobs/j.hcl", "reconciling", False, old.digest, new.digest,
                    old.canonical, attempted_at=NOW - 1)  # fmt: skip
    live = frozenset(s.instance.id for s in slots.values() if s.instance)
    p = plan(Desired({"j": new}, {}), Observed({"j": rec}, slots, live), Host(), NOW)
    canaries = {SlotKey("j", "g", i, "t") for i in range(base, base + canary)}
    assert not p.stop and not p.restart and not p.promote and not p.revert
    assert {a.key for a in p.start} == canaries - set(slots)
    assert all(a.spec is new for a in p.start)
    assert {a.key for a in p.keep} == set(slots)
    assert p.status["j"][0] == "reconciling"


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(0, 4))
def test_after_promotion_the_canaries_wait_for_the_update(
    count: int, canary: int, max_parallel: int, updated: int
) -> None:
    old, new = _spec(count, "/bin/a", canary, max_parallel), _spec(count, "/bin/b", canary, max_parallel)
    updated = min(updated, count)
    keys = [SlotKey("j", "g", i, "t") for i in range(count + canary)]
    slots = {k: _running(k, new if k.idx < updated or k.idx >= count else old, k.idx + 1)
             for k in keys}  # fmt: skip
    rec = JobRecord("j", "jobs/j.hcl", "reconciling", False, old.digest, new.digest,
                    old.canonical, attempted_at=NOW - 1, promoted=True)  # fmt: skip
    live = frozenset(s.instance.id for s in slots.values() if s.instance)
    p = plan(Desired({"j": new}, {}), Observed({"j": rec}, slots, live), Host(), NOW)
    canaries = set(keys[count:])
    if updated == count:  # every instance on the new version, healthy: done
        assert p.promote == ("j",) and {a.key for a in p.stop} == canaries
    else:
        assert not p.promote and not p.stop
        assert canaries <= {a.key for a in p.keep}
        parallel = max_parallel or count
        assert len(p.restart) == min(parallel, count - updated)
        assert all(a.key.idx < count for a in p.restart)


def test_canaries_are_for_service_jobs_only() -> None:
    batch = job(typ="batch", extra_job="update { canary = 1 }")
    result = parse_text(batch, "jobs/b.hcl")
    assert not result.jobs
    assert any('canary deployments are for "service" jobs only' in p.message
               for p in result.problems)  # fmt: skip
    assert parse_text(job(extra_job="update { canary = 1 }"), "jobs/s.hcl").jobs


def test_an_unpromoted_canary_is_registered_with_canary_tags(h: Harness) -> None:
    svc = ('service {\n name = "api"\n provider = "nomad"\n tags = ["live"]\n'
           ' canary_tags = ["canary"]\n}')  # fmt: skip
    for v in ("1", "2"):
        h.write("web.hcl", job(count=2, env=f'V = "{v}"', extra_task=svc,
                               extra_job=CANARY.format("")))  # fmt: skip
        h.step()
        h.step(6)

    def tags() -> dict[int, str]:
        with h.store.engine.connect() as c:
            return dict(c.exec_driver_sql("SELECT idx, tags FROM services WHERE job_id = 'web'")
                        .all())  # fmt: skip

    assert tags() == {0: '["live"]', 1: '["live"]', 2: '["canary"]'}
    h.service.request("promote", job="web")
    h.step()
    assert tags() == {0: '["live"]', 1: '["live"]', 2: '["live"]'}  # promoted: tags


def test_a_canary_is_healthy_once_its_checks_pass(h: Harness) -> None:
    import socket

    from tests.unit.test_checks import TCP, run_checks

    def version(v: str) -> str:
        return job(
            env=f'V = "{v}"', extra_job=CANARY.format(""),
            extra_group='network {\n port "http" {}\n}',
            extra_task=f'service {{\n name = "api"\n provider = "nomad"\n port = "http"\n{TCP % ""}\n}}',
        )  # fmt: skip

    def listen(key: str) -> socket.socket:
        job_id, group, idx, task = key.split("/")
        [(_label, port)] = h.store.observed().slots[SlotKey(job_id, group, int(idx), task)].ports
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.listen(16)
        return s

    h.write("web.hcl", version("1"))
    h.step()
    with listen("web/g/0/t"):
        run_checks(h, 8)
        assert h.job_status("web") == ("ready", "")
        h.write("web.hcl", version("2"))
        h.step()
        assert versions(h) == {"web/g/0/t": "1", "web/g/1/t": "2"}
        run_checks(h, 8)  # up long enough, but its check is critical: not healthy
        status, reason = h.job_status("web")
        assert status == "reconciling" and reason.startswith("0/1 canaries healthy")
        assert "alive" in reason and "web/g/1" in reason
        with listen("web/g/1/t"):
            run_checks(h, 10)
            assert "waiting for promotion (1/1 canaries healthy)" in h.job_status("web")[1]
