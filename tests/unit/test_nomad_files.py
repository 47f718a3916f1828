"""Job files written as Nomad's own e2e exec jobs are: accepted with warnings only, and a
broken copy is reported at the right file, line and field."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.spec.load import load_paths
from reconciler.spec.models import effective_reschedule

FILES = Path(__file__).parents[1] / "nomad_style"


def test_accepted_with_warnings_only() -> None:
    d = load_paths([FILES])
    assert {"isolation_check", "templated_service", "web", "e2e_locals"} <= set(d.jobs)
    assert not d.errors
    warned = {p.path for p in d.problems}
    assert {"job.isolation_check.datacenters",
            "job.templated_service.group.web.ephemeral_disk"} <= warned  # fmt: skip
    # reschedule is read, not ignored: this batch job is never placed again
    assert "job.isolation_check.reschedule" not in warned
    iso = d.jobs["isolation_check"].job
    policy = effective_reschedule(iso, iso.group["print"])
    assert policy is not None and not policy.enabled
    assert "job.templated_service.group.web.service" not in warned
    svc = d.jobs["templated_service"].job.group["web"].service[0]
    assert (svc.name, svc.port, svc.provider) == ("templated", "http", "nomad")
    t = d.jobs["templated_service"].job.group["web"].task["server"].template
    # a heredoc keeps its last newline, as HCL (and so Nomad) reads it
    assert t[0].data == 'APP_MODE=production\nALLOC={{ env "NOMAD_ALLOC_INDEX" }}\n'
    assert t[1].data is not None and t[1].data.startswith("<html>")


def test_broken_copy_names_file_line_and_field(tmp_path: Path) -> None:
    text = (FILES / "templated_service.nomad.hcl").read_text()
    broken = tmp_path / "templated_service.nomad.hcl"
    broken.write_text(text.replace('change_signal = "SIGHUP"', 'change_signal = "SIGHUPP"')
                      .replace("max_parallel     = 1", "max_paralel     = 1"))  # fmt: skip
    r = CliRunner().invoke(app, ["validate", str(broken)])
    assert r.exit_code == 1
    out = r.output
    assert f"{broken}:13: job.templated_service.update.max_paralel: unknown field" in out
    assert 'did you mean "max_parallel"' in out
    assert f"{broken}:53: job.templated_service.group.web.task.server.template.1" in out
    assert 'unknown signal "SIGHUPP"' in out
