"""Nomad Variables: the encrypted store, the template functions with Nomad's workload identity,
and a changed variable re-rendering (or restarting) what reads it, per change_mode."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.db.variables import VariableError, VariableStore
from reconciler.spec.gotemplate import Host, TemplateError, Workload, check, render
from reconciler.spec.load import parse_text
from reconciler.taskconfig import variable_source
from tests.unit.conftest import Harness, job

WEB = Workload("web", "g", "t")


def test_store_round_trip_encrypted_at_rest(tmp_path: Path) -> None:
    store = VariableStore(tmp_path)
    assert store.get("nomad/jobs/web") is None and store.list() == []
    m1 = store.put("nomad/jobs/web", {"password": "s3cret-value", "user": "app"})
    m2 = store.put("nomad/jobs/web", {"password": "other"})
    assert m2.create_index == m1.create_index and m2.modify_index > m1.modify_index
    var = store.get("nomad/jobs/web")
    assert var is not None and dict(var.items) == {"password": "other"}
    assert b"other" not in (tmp_path / "variables.db").read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / "variables.key").st_mode) == 0o600
    assert [m.path for m in store.list("nomad/")] == ["nomad/jobs/web"]
    assert store.versions() == {"nomad/jobs/web": m2.modify_index}
    assert store.purge("nomad/jobs/web") and not store.purge("nomad/jobs/web")
    assert store.get("nomad/jobs/web") is None


def test_a_row_moved_to_another_path_does_not_decrypt(tmp_path: Path) -> None:
    store = VariableStore(tmp_path)
    store.put("nomad/jobs/a", {"k": "v"})
    with sqlite3.connect(tmp_path / "variables.db") as c:
        c.execute("UPDATE variables SET path = 'nomad/jobs/b'")
    with pytest.raises(VariableError, match="does not decrypt"):
        store.get("nomad/jobs/b")


@pytest.mark.parametrize(
    ("path", "why"),
    [("", "invalid path"), ("a b", "invalid path"), ("nomad", "reserved top-level"),
     ("nomad/other", "only paths at"), ("nomad/job-templates", "reserved directory"),
     ("x" * 129, "invalid path")],
)  # fmt: skip
def test_nomad_path_rules(tmp_path: Path, path: str, why: str) -> None:
    with pytest.raises(VariableError, match=why):
        VariableStore(tmp_path).put(path, {"k": "v"})
    with pytest.raises(VariableError, match="at least one item"):
        VariableStore(tmp_path).put("a", {})
    with pytest.raises(VariableError, match="64KiB"):
        VariableStore(tmp_path).put("a", {"k": "x" * 70_000})


def _host(tmp_path: Path, workload: Workload = WEB) -> Host:
    return Host(variables=variable_source(VariableStore(tmp_path)), workload=workload)


def test_template_functions(tmp_path: Path) -> None:
    store = VariableStore(tmp_path)
    store.put("nomad/jobs/web", {"password": "pw", "user": "app"})
    store.put("nomad/jobs/web/g/t", {"token": "tk"})
    store.put("nomad/jobs/other", {"x": "y"})
    host = _host(tmp_path)
    text = (
        '{{ with nomadVar "nomad/jobs/web" }}{{ .password }} {{ .user.Key }}={{ .user.Value }}'
        '{{ end }}|{{ range $k, $v := nomadVar "nomad/jobs/web" }}{{ $k }}={{ $v }};{{ end }}'
        '|{{ (nomadVar "nomad/jobs/web").Keys }}|{{ (nomadVar "nomad/jobs/web").ItemsMap }}'
        '|{{ (nomadVar "nomad/jobs/web@default").Metadata.Path }}'
        '|{{ nomadVarExists "nomad/jobs/web/g" }} {{ nomadVarExists "nomad/jobs/other" }}'
        '|{{ range nomadVarList "nomad/jobs" }}{{ .Path }} {{ end }}'
    )
    assert render(text, host) == (
        "pw user=app|password=pw;user=app;|[password user]|map[password:pw user:app]"
        "|nomad/jobs/web|false false|nomad/jobs/web nomad/jobs/web/g/t "
    )


def test_another_jobs_variable_is_refused(tmp_path: Path) -> None:
    VariableStore(tmp_path).put("nomad/jobs/other", {"x": "y"})
    with pytest.raises(TemplateError, match="may read only nomad/jobs, nomad/jobs/web"):
        check('{{ nomadVar "nomad/jobs/other" }}', workload=WEB)
    check('{{ nomadVar "nomad/jobs/web/g" }}', workload=WEB)
    with pytest.raises(TemplateError, match="may read only"):
        render('{{ nomadVar (printf "nomad/jobs/%s" "other") }}', _host(tmp_path))
    with pytest.raises(TemplateError, match="no variable at nomad/jobs/web"):
        render('{{ nomadVar "nomad/jobs/web" }}', _host(tmp_path))
    with pytest.raises(TemplateError, match="waits while the list is empty"):
        render("{{ nomadVarListSafe }}", _host(tmp_path))


def test_cli_put_get_list_purge(tmp_path: Path) -> None:
    runner = CliRunner()
    d = ["--data-dir", str(tmp_path)]
    r = runner.invoke(app, ["var", "put", "nomad/jobs/web", "a=1", "b=two", *d])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["var", "get", "nomad/jobs/web", *d])
    assert r.exit_code == 0 and "a = 1" in r.output and "b = two" in r.output
    r = runner.invoke(app, ["var", "get", "nomad/jobs/web", "--item", "b", *d])
    assert r.output == "two\n"
    r = runner.invoke(app, ["var", "list", *d])
    assert "nomad/jobs/web" in r.output and "two" not in r.output
    assert runner.invoke(app, ["var", "put", "nomad", "a=1", *d]).exit_code == 2
    assert runner.invoke(app, ["var", "purge", "nomad/jobs/web", *d]).exit_code == 0
    assert runner.invoke(app, ["var", "get", "nomad/jobs/web", *d]).exit_code == 4


SIGNAL_TMPL = """template {
  data = "pw={{ with nomadVar \\"nomad/jobs/w\\" }}{{ .password }}{{ end }}"
  destination = "secrets/db.env"
  change_mode = "signal"
  change_signal = "SIGHUP"
}"""


def test_a_changed_variable_re_renders_and_signals(h: Harness) -> None:
    store = VariableStore(h.store.path.parent)
    store.put("nomad/jobs/w", {"password": "one"})
    h.write("w.hcl", job("w", extra_task=SIGNAL_TMPL))
    h.step()
    assert h.states("w") == {"w/g/0/t": "running"}
    assert h.fake.started[-1].templates[0].text == "pw=one"
    store.put("nomad/jobs/w", {"password": "two"})
    h.service.rescan_all()
    h.step()
    assert len(h.fake.started) == 1
    assert h.fake.rendered[-1].templates[0].text == "pw=two"
    assert "Template Rendered" in h.events("w/g/0/t")
    h.step(1)
    assert len(h.fake.started) == 1  # a pass with nothing new renders nothing
    assert len(h.fake.rendered) == 1


def test_a_changed_variable_restarts_by_default(h: Harness) -> None:
    store = VariableStore(h.store.path.parent)
    store.put("nomad/jobs/w", {"password": "one"})
    tmpl = SIGNAL_TMPL.replace('change_mode = "signal"\n  change_signal = "SIGHUP"\n', "")
    h.write("w.hcl", job("w", extra_task=tmpl))
    h.step()
    store.put("nomad/jobs/w", {"password": "two"})
    h.service.rescan_all()
    for _ in range(5):
        h.step(1)
    assert h.fake.started[-1].templates[0].text == "pw=two"
    assert len(h.fake.started) == 2


def test_a_missing_variable_fails_the_start_until_it_is_put(h: Harness) -> None:
    h.write("w.hcl", job("w", extra_task=SIGNAL_TMPL))
    h.step()
    assert "Template Failed" in h.events("w/g/0/t")
    assert not h.fake.started
    VariableStore(h.store.path.parent).put("nomad/jobs/w", {"password": "late"})
    h.service.rescan_all()
    h.step()
    assert h.fake.started and h.fake.started[-1].templates[0].text == "pw=late"


def test_another_job_cannot_name_the_variable() -> None:
    problems = [str(p) for p in parse_text(job("x", extra_task=SIGNAL_TMPL), "jobs/x.hcl").problems]
    assert any(
        "jobs/x.hcl:13: job.x.group.g.task.t.template.0.data: template line 1, column 12: "
        'nomadVar "nomad/jobs/w": the task x/g/t may read only nomad/jobs, nomad/jobs/x, '
        "nomad/jobs/x/g and nomad/jobs/x/g/t" in p
        for p in problems
    ), problems
    assert not parse_text(job("w", extra_task=SIGNAL_TMPL), "jobs/w.hcl").problems
