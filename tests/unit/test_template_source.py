"""`template { source }`: a file beside the job file becomes the template's text; a change to
it is a new job version (re-rendered per change_mode); reads stay inside the job directory."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.spec.load import Loader

JOB = """job "web" {{
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{ command = "/bin/true" }}
      template {{
        {template}
        destination = "local/app.conf"
        change_mode = "noop"
      }}
    }}
  }}
}}
"""


def write_job(d: Path, template: str) -> None:
    (d / "web.hcl").write_text(JOB.format(template=template))


def test_source_beside_the_job_file_becomes_its_text(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl/app.tpl").write_text('port = {{ env "NOMAD_PORT_http" }}\n')
    write_job(tmp_path, 'source = "tpl/app.tpl"')
    loader = Loader(tmp_path)
    first = loader.scan()
    assert not first.problems, first.problems
    t = first.jobs["web"].job.group["g"].task["t"].template[0]
    assert t.source == "tpl/app.tpl" and t.data == 'port = {{ env "NOMAD_PORT_http" }}\n'
    # An edit of the source alone makes a new version of the job.
    (tmp_path / "tpl/app.tpl").write_text("port = 1\n")
    st = os.stat(tmp_path / "tpl/app.tpl")
    os.utime(tmp_path / "tpl/app.tpl", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = loader.scan()
    assert second.jobs["web"].digest != first.jobs["web"].digest
    assert second.jobs["web"].job.group["g"].task["t"].template[0].data == "port = 1\n"


def test_sources_that_are_refused(tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.tpl"
    outside.write_text("secret")
    (tmp_path / "link.tpl").symlink_to(outside)
    cases = {
        'source = "local/app.tpl"': "is in the task's directories",
        'source = "${NOMAD_TASK_DIR}/x.tpl"': "is in the task's directories",
        f'source = "{outside}"': "outside the job directory",
        'source = "link.tpl"': "outside the job directory",
        'source = "missing.tpl"': "cannot read",
        'source = "a.tpl"\n        data = "x"': "set exactly one of data or source",
        'source = "bad.tpl"': "not UTF-8",
    }
    (tmp_path / "a.tpl").write_text("a")
    (tmp_path / "bad.tpl").write_bytes(b"\xff\xfe")
    for template, message in cases.items():
        write_job(tmp_path, template)
        problems = Loader(tmp_path).scan().problems
        assert any(message in p.message for p in problems), (template, problems)
        assert all(p.line for p in problems if p.file.endswith("web.hcl")), problems


def test_template_errors_in_a_source_are_reported(tmp_path: Path) -> None:
    (tmp_path / "app.tpl").write_text("{{ if }}\n")
    write_job(tmp_path, 'source = "app.tpl"')
    problems = Loader(tmp_path).scan().problems
    assert problems and all(p.line for p in problems), problems


def test_an_edited_source_re_renders_without_a_restart(h) -> None:  # type: ignore[no-untyped-def]
    h.write("app.tpl", "v1\n")
    h.write("web.hcl", JOB.format(template='source = "app.tpl"'))
    h.step()
    assert len(h.fake.started) == 1
    h.write("app.tpl", "v2 with more bytes\n")  # the size differs: the scan sees the change
    h.step()
    assert len(h.fake.started) == 1
    assert "Template Rendered" in h.events("web/g/0/t")
    assert h.fake.rendered[-1].templates[0].text == "v2 with more bytes\n"


def test_absolute_sources_in_the_nodes_template_dirs(tmp_path: Path) -> None:
    from reconciler.spec.node import load_node_config

    jobs, shared, other = tmp_path / "jobs", tmp_path / "shared", tmp_path / "other"
    for d in (jobs, shared, other):
        d.mkdir()
    (shared / "app.tpl").write_text("shared\n")
    (other / "app.tpl").write_text("other\n")
    write_job(jobs, f'source = "{shared}/app.tpl"')
    assert any("outside the job directory" in p.message for p in Loader(jobs).scan().problems)
    desired = Loader(jobs, extra_roots=(str(shared),)).scan()
    assert desired.jobs["web"].job.group["g"].task["t"].template[0].data == "shared\n"
    write_job(jobs, f'source = "{other}/app.tpl"')
    problems = Loader(jobs, extra_roots=(str(shared),)).scan().problems
    assert any("the node's template_dirs; refused" in p.message for p in problems)
    config = tmp_path / "node.hcl"
    config.write_text(f'reconciler {{\n  template_dirs = ["{shared}"]\n}}\n')
    assert load_node_config(config).reconciler.template_dirs == [str(shared)]
