"""The registry builds a job's services and checks again only when the job changed (its file,
its running instances), and what it keeps is what a fresh build gives; `${...}` in a service
sees the values the task itself was given."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.service.registry import Registrar
from tests.unit.conftest import Harness, job

CHECK = 'check {\n type = "tcp"\n interval = "2s"\n timeout = "1s"\n}'


def service_job(name: str, port: int, tag: str) -> str:
    return job(
        name,
        env='GREETING = "hi-${NOMAD_ALLOC_INDEX}"',
        extra_group=f'network {{\n port "http" {{ static = {port} }}\n}}',
        extra_task=f'service {{\n name = "{name}-api"\n port = "http"\n'
        f' tags = ["{tag}", "${{GREETING}}", "${{NOMAD_HOST_PORT_http}}"]\n{CHECK}\n}}',
    )


def fresh_builds(h: Harness) -> dict[str, Any]:
    reg = h.service.registrar
    fresh = Registrar(h.store, h.fake, reg.attributes, reg.scheduler, h.clock)
    observed = h.store.observed()
    return {
        job_id: fresh._desired(
            job_id, [s for s in observed.slots.values() if s.key.job == job_id], observed,
            h.service.applier.specs,
        )
        for job_id in ("a", "b")
    }  # fmt: skip


def test_a_pass_builds_only_the_jobs_that_changed(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.write("a.hcl", service_job("a", 23461, "v1"))
    h.write("b.hcl", service_job("b", 23462, "v1"))
    h.step()
    reg = h.service.registrar
    built: list[str] = []
    desired = reg._desired
    monkeypatch.setattr(reg, "_desired", lambda job_id, *a: built.append(job_id) or desired(job_id, *a))
    assert not reg.sync(h.store.observed(), h.service.applier.specs, None)
    assert built == []  # nothing changed: nothing built
    h.write("a.hcl", service_job("a", 23461, "v2"))
    h.step()
    assert "a" in built and "b" not in built
    assert {j: out for j, (_, out) in reg._built.items()} == fresh_builds(h)
    with h.store.engine.connect() as c:
        [(tags,)] = c.exec_driver_sql("SELECT tags FROM services WHERE job_id = 'a'").all()
    assert tags == '["v2", "hi-0", "23461"]'  # the task's own env, interpolated once
    built.clear()
    [b] = [t for t in h.fake.tasks if t.startswith("b/")]
    h.fake.finish(b, 1)
    h.step()
    h.step(20)  # restarted after its delay: a new instance, so b's check is built again
    assert "b" in built and "a" not in built
    assert {j: out for j, (_, out) in reg._built.items()} == fresh_builds(h)
