"""A job whose file is removed leaves nothing behind in the service once its tasks are gone:
not its model, its spec, its parse or what plans derived from it (a service that saw 1,600 jobs
come and go held every one of them: docs/operations.md "Memory")."""

from __future__ import annotations

import gc
import weakref

from tests.unit.conftest import Harness, job


def test_a_removed_job_leaves_nothing_behind(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.write("b.hcl", job("b", env='X = "b"'))
    h.step()
    assert h.states() == {"a/g/0/t": "running", "b/g/0/t": "running"}
    spec = h.service.desired_files()["b"]
    model = weakref.ref(spec.job)  # (its JobSpec, slotted, takes no weak reference)
    del spec
    h.remove("b.hcl")
    h.step()
    h.step()
    assert h.states() == {"a/g/0/t": "running"} and h.job_status("b")[0] == "removed"
    gc.collect()
    assert model() is None
    assert "b" not in h.service.applier.specs and "a" in h.service.applier.specs
    loader = h.service.loader
    assert [n for n in loader._by_digest if n.endswith("b.hcl")] == []
    assert [n for n in loader._var_of if n.startswith("b")] == []


def test_a_job_whose_file_comes_back_runs_as_before(h: Harness) -> None:
    h.write("b.hcl", job("b"))
    h.write("a.hcl", job("a"))
    h.step()
    h.remove("b.hcl")
    h.step()
    h.step()
    assert "b" not in h.service.applier.specs
    h.write("b.hcl", job("b"))
    h.step()
    assert h.states() == {"a/g/0/t": "running", "b/g/0/t": "running"}
    assert "b" in h.service.applier.specs
