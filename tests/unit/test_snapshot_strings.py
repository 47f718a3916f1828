"""The pass's snapshot holds a running task's cgroup record and directory as the executor's
handle holds them (one string for both: ~0.6 kB a task), and reads a row that differs as it is."""

from __future__ import annotations

from reconciler.db.snapshot import SlotKey
from tests.unit.conftest import Harness, job


def test_the_snapshot_holds_the_handle_s_strings(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.write("b.hcl", job("b"))
    h.step()
    handle = h.fake.tasks["a/g/0/t"].handle
    for scope in (None, {"a"}):
        inst = h.store.observed(jobs=scope).slots[SlotKey("a", "g", 0, "t")].instance
        assert inst is not None
        assert inst.cgroup == handle.cgroup and inst.cgroup is handle.cgroup
        assert inst.task_dir is handle.task_dir


def test_a_row_that_differs_is_read_as_it_is(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.step()
    with h.store.pool.connection() as db:
        db.execute("UPDATE task_instances SET cgroup = 'moved', task_dir = '/elsewhere'")
    inst = h.store.observed().slots[SlotKey("a", "g", 0, "t")].instance
    assert inst is not None and (inst.cgroup, inst.task_dir) == ("moved", "/elsewhere")


def test_an_ended_run_leaves_nothing_behind(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.write("b.hcl", job("b"))
    h.step()
    assert len(h.store._paths) == 2
    h.remove("a.hcl")
    h.step()
    h.step()
    assert h.states() == {"b/g/0/t": "running"}
    h.store.observed()
    assert list(h.store._paths.values()) == [
        (h.fake.tasks["b/g/0/t"].handle.cgroup, h.fake.tasks["b/g/0/t"].handle.task_dir)]


def test_the_snapshot_holds_the_job_s_id_and_digest_as_its_spec_does(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.step()
    spec = h.service.desired_files()["a"]
    rec = h.store.observed().jobs["a"]
    assert rec.attempted_digest == spec.digest and rec.attempted_digest is spec.digest
    assert rec.id is spec.id
