"""The job model: every field, default and error path, with file, line and block path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.spec.load import Loader, is_job_file, load_paths, parse_text
from reconciler.spec.models import (
    DispatchPayload,
    TemplateWait,
    effective_restart,
    effective_update,
)
from reconciler.spec.units import format_duration, parse_duration

MINIMAL = """
job "clock" {
  type = "batch"
  group "once" {
    task "print" {
      driver = "exec"
      config {
        command = "/bin/date"
      }
    }
  }
}
"""


def job_of(text: str):
    r = parse_text(text, "jobs/x.hcl")
    assert r.ok, [str(p) for p in r.problems]
    return r.jobs[0].job


def problems(text: str) -> list[str]:
    return [str(p).splitlines()[0] for p in parse_text(text, "jobs/x.hcl").problems]


def with_task(body: str, group: str = "", job: str = "") -> str:
    return f"""job "j" {{
  {job}
  group "g" {{
    {group}
    task "t" {{
      driver = "exec"
      config {{ command = "/bin/true" }}
      {body}
    }}
  }}
}}
"""


def test_nomad_defaults():
    job = job_of(with_task(""))
    g = job.group["g"]
    t = g.task["t"]
    assert job.type == "service" and g.count == 1
    assert (t.resources.cpu, t.resources.memory, t.resources.memory_max, t.resources.cores) == (
        100,
        300,
        0,
        0,
    )
    assert t.kill_timeout == 5.0 and t.kill_signal == "" and t.shutdown_delay == 0
    assert (t.logs.max_files, t.logs.max_file_size, t.logs.disabled) == (10, 10, False)
    assert g.network.mode == "host" and t.user == "" and t.leader is False
    r = effective_restart(job, g, t)
    assert (r.attempts, r.interval, r.delay, r.mode) == (2, 1800, 15, "fail")
    u = effective_update(job, g)
    assert (u.max_parallel, u.min_healthy_time, u.healthy_deadline, u.auto_revert) == (
        1,
        10,
        300,
        False,
    )


def test_batch_restart_defaults_and_task_override():
    job = job_of(MINIMAL)
    g = job.group["once"]
    r = effective_restart(job, g, g.task["print"])
    assert (r.attempts, r.interval, r.delay, r.mode) == (3, 86400, 15, "fail")
    job = job_of(
        with_task("restart { attempts = 7 }", group='restart { delay = "1s"\n mode = "delay" }')
    )
    g = job.group["g"]
    r = effective_restart(job, g, g.task["t"])
    assert (r.attempts, r.delay, r.mode) == (7, 1.0, "delay")


def test_every_task_field_parses():
    job = job_of(
        with_task("""
      user = "nobody"
      env { A = "1"  B = 2  C = true }
      resources { cpu = 200  memory = 64  memory_max = 128 }
      kill_timeout = "15s"
      kill_signal = "SIGTERM"
      shutdown_delay = "2s"
      leader = true
      meta { owner = "ops" }
      logs { max_files = 3  max_file_size = 1 }
      template {
        data = "x={{ env \\"A\\" }}"
        destination = "local/x.env"
        perms = "0600"
        change_mode = "signal"
        change_signal = "SIGHUP"
        env = true
      }
      constraint {
        attribute = "${attr.kernel.name}"
        value = "linux"
      }
    """)
    )
    t = job.group["g"].task["t"]
    assert t.env == {"A": "1", "B": "2", "C": "true"}
    assert t.resources.memory_max == 128 and t.kill_timeout == 15 and t.kill_signal == "SIGTERM"
    assert t.template[0].change_signal == "SIGHUP" and t.template[0].env
    assert t.meta == {"owner": "ops"} and t.logs.max_files == 3 and t.leader


def test_config_fields_and_caps_normalised():
    job = job_of(
        with_task("").replace(
            'config { command = "/bin/true" }',
            'config {\n command = "/bin/sh"\n args = ["-c", "x"]\n pid_mode = "host"\n ipc_mode = "private"\n'
            ' cap_add = ["CAP_NET_RAW"]\n cap_drop = ["all"]\n work_dir = "/local"\n}',
        )
    )
    c = job.group["g"].task["t"].config
    assert c.cap_add == ["net_raw"] and c.cap_drop == ["all"] and c.pid_mode == "host"


def test_group_network_update_and_lifecycle():
    job = job_of(
        with_task(
            'lifecycle {\n hook = "prestart"\n sidecar = true\n}',
            group='network {\n mode = "bridge"\n port "http" { to = 8080 }\n port "db" { static = 5432 }\n}\n'
            'update {\n max_parallel = 2\n min_healthy_time = "1s"\n auto_revert = true\n}\n'
            'task "main" {\n driver = "exec"\n config { command = "/bin/true" }\n}',
        )
    )
    g = job.group["g"]
    assert g.network.mode == "bridge" and g.network.port["http"].to == 8080
    assert g.network.port["db"].static == 5432 and g.update and g.update.max_parallel == 2
    assert g.task["t"].lifecycle and g.task["t"].lifecycle.sidecar


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            'pid_mode = "shared"',
            'jobs/x.hcl:9: job.j.group.g.task.t.config.pid_mode: must be "private" or "host"',
        ),
        ('cmd = "x"', 'unknown field "cmd"; did you mean "command"?'),
        ('cap_add = ["sys_admn"]', "config.cap_add: unknown capability sys_admn"),
        ('work_dir = "local"', "work_dir: must be an absolute path"),
    ],
)
def test_config_errors_name_file_line_and_path(snippet: str, expected: str) -> None:
    text = with_task("").replace(
        'config { command = "/bin/true" }', f'config {{\n command = "/bin/true"\n {snippet}\n}}'
    )
    out = problems(text)
    assert any(expected in p for p in out), out


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('driver2 = "x"', 'unknown field "driver2"; did you mean "driver"?'),
        (
            "kill_timeout = 5",
            'kill_timeout: must be a duration string like "15s" (a bare number has no unit)',
        ),
        ('kill_timeout = "5 parsecs"', "is not a duration"),
        ('kill_signal = "SIGFOO"', 'unknown signal "SIGFOO"'),
        ("resources { memory = 5 }", "resources.memory: must be greater than or equal to 10"),
        ("resources {\n memory = 64\n memory_max = 32\n}", "memory_max must be at least memory"),
        (
            'lifecycle { hook = "later" }',
            'lifecycle.hook: must be "prestart", "poststart" or "poststop"',
        ),
        ('template { destination = "local/x" }', "set exactly one of data or source"),
        (
            'template {\n data = "x"\n destination = "../../etc/x"\n}',
            "must stay inside the task directory",
        ),
        (
            'template {\n data = "{{ key \\"x\\" }}"\n destination = "local/x"\n}',
            'template line 1, column 4: function "key" needs a Consul cluster',
        ),
        (
            'template {\n data = "x"\n destination = "local/x"\n perms = "rw"\n}',
            "must be an octal mode",
        ),
        ('env { A = "${var.x}" }', 'no variable named "x" is declared'),
        ('env { A = "${NOMAD_PORT_web}" }', 'no port labelled "web"'),
        ('env { A = "${NOMAD_UNKNOWN}" }', "is not a Nomad runtime variable"),
        ('artifact { source = "s3::https://x" }', 'getter "s3" is not supported'),
        ('vault {\n policies = ["x"]\n}', "task.t.vault: is not supported: reconciler has no Vault"),
        ('resources {\n device "nvidia/gpu" {}\n}', "resources.device: is not supported"),
        ('config { command = "/bin/true" }', "only one config block is allowed"),
        ("user = 5", "user: must be a string"),
    ],
)
def test_task_errors(body: str, expected: str) -> None:
    out = problems(with_task(body))
    assert any(expected in p for p in out), out


def test_driver_other_than_exec_is_a_clear_error():
    out = problems(with_task("").replace('driver = "exec"', 'driver = "docker"'))
    assert any('driver "docker" is not supported' in p for p in out)


def test_raw_exec_parses():
    assert job_of(with_task("").replace('driver = "exec"', 'driver = "raw_exec"'))


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("count = -1", "count: must be greater than or equal to 0"),
        ('count = "2"', "count: must be a whole number"),
        ("count = 1 + true", "count: operand of +: a number is required, not a bool"),
        ("restart { attemps = 1 }", 'did you mean "attempts"'),
        ('restart { interval = "1s" }', 'must be at least "5s"'),
        ('restart { mode = "sometimes" }', 'must be "fail" or "delay"'),
        ('network { mode = "cni/x" }', 'must be "host", "none" or "bridge"'),
        (
            'update { healthy_deadline = "1s"\n min_healthy_time = "5s" }',
            "healthy_deadline must be at least",
        ),
        ('task "t" {\n driver = "exec"\n config { command = "x" }\n}', 'duplicate task "t"'),
    ],
)
def test_group_errors(group: str, expected: str) -> None:
    out = problems(with_task("", group=group))
    assert any(expected in p for p in out), out


def test_job_level_errors_and_ignored_fields_warn():
    out = problems(with_task("", job='type = "cron"'))
    assert any('job.j.type: must be "service", "batch", "system" or "sysbatch"' in p for p in out)
    out = problems(with_task("", job='type = "system"', group="count = 2"))
    assert any(p.startswith("jobs/x.hcl:4: job.j.group.g.count: Job task group g has count 2.")
               and "Count cannot exceed 1 with system scheduler" in p for p in out), out  # fmt: skip
    assert parse_text(with_task("", job='type = "sysbatch"', group="count = 2"), "x.hcl").ok
    r = parse_text(
        with_task("", job='datacenters = ["dc1"]\n region = "eu"\n priority = 50'), "jobs/x.hcl"
    )
    assert r.ok
    warned = {p.path for p in r.problems if p.severity == "warning"}
    assert warned == {"job.j.datacenters", "job.j.region", "job.j.priority"}
    assert all("ignored" in p.message for p in r.problems)


def test_unknown_field_names_line():
    text = with_task('kill_timeout = "1s"\n      restrat { attempts = 1 }')
    (p,) = [x for x in parse_text(text, "jobs/x.hcl").problems if "restrat" in x.path]
    assert p.line == 9 and 'did you mean "restart"' in p.message


def test_all_problems_reported_at_once():
    text = with_task('kill_signal = "NOPE"\n user = 1\n resources { memory = 1 }')
    assert len(problems(text)) == 3


def test_syntax_error_has_line_column_and_caret():
    r = parse_text('job "x" {\n  group "g" {\n    count = @2\n  }\n}\n', "jobs/s.hcl")
    (p,) = r.problems
    assert p.line == 3 and p.column is not None and "^" in p.excerpt
    r = parse_text('job "x" {\n  group "g" {\n', "jobs/s.hcl")
    assert "missing its closing" in r.problems[0].message


def test_duplicate_attribute_is_an_error():
    out = problems(with_task('user = "a"\n      user = "b"'))
    assert any("attribute is set twice" in p for p in out)


def test_two_labels_and_top_level_blocks():
    assert any("takes one label" in p for p in problems('job "a" "b" { group "g" {} }'))
    assert any("var.x: no value" in p for p in problems('variable "x" {}\n' + MINIMAL))
    assert any("top-level block" in p for p in problems('other "x" {}\n' + MINIMAL))
    assert any(
        "exactly one job" in p for p in problems(MINIMAL + MINIMAL.replace("clock", "clock2"))
    )


def test_interpolation_allowed_names():
    job = job_of(
        with_task(
            'env {\n A = "${NOMAD_ALLOC_INDEX}"\n B = "${NOMAD_META_owner}"\n C = "${attr.kernel.name}"\n'
            ' D = "$${literal}"\n E = "${A}"\n F = "${UNKNOWN}"\n}',
            group='network {\n port "http" {}\n}',
        ).replace('command = "/bin/true"', 'command = "/bin/x"\n args = ["${NOMAD_PORT_http}"]')
    )
    env = job.group["g"].task["t"].env
    assert env["D"] == "${literal}"  # HCL's $${ escape; at run time an unknown name stays
    assert env["F"] == "${UNKNOWN}"


def test_constraint_operators_validated():
    out = problems(
        with_task(
            "",
            job='constraint {\n attribute = "${attr.kernel.name}"\n operator = "~="\n value = "x"\n}',
        )
    )
    assert any('unknown operator "~="' in p for p in out)
    out = problems(
        with_task("", job='constraint {\n attribute = "${NOMAD_JOB_NAME}"\n value = "x"\n}')
    )
    assert any("not a node attribute" in p for p in out)


def test_canonical_digest_ignores_formatting():
    a = parse_text(MINIMAL, "a.hcl").jobs[0]
    b = parse_text(MINIMAL.replace("  ", "    ") + "\n# comment\n", "a.hcl").jobs[0]
    assert a.digest == b.digest
    c = parse_text(MINIMAL.replace("/bin/date", "/bin/echo"), "a.hcl").jobs[0]
    assert c.digest != a.digest


def test_durations():
    assert (
        parse_duration("1h30m") == 5400
        and parse_duration("100ms") == 0.1
        and parse_duration("0") == 0
    )
    for bad in ("15", "s", "1x", "", "1h 2m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(5400) == "1h30m" and format_duration(0.25) == "250ms"


def test_job_file_names():
    assert all(map(is_job_file, ["a.hcl", "a.nomad", "a.nomad.hcl"]))
    assert not any(
        map(is_job_file, [".a.hcl", "a.hcl~", "a.hcl.swp", "#a.hcl#", "a.txt", ".#a.hcl"])
    )


def write(d: Path, name: str, data: str | bytes) -> Path:
    p = d / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def test_directory_handling(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write(jobs, "ok.hcl", MINIMAL)
    write(jobs, "bom.nomad", "\ufeff" + MINIMAL.replace("clock", "bom"))
    write(jobs, "empty.hcl", "")
    write(jobs, "latin1.hcl", b'job "x" { # caf\xe9 }')
    write(jobs, "big.hcl", "#" * (2 << 20))
    write(jobs, ".hidden.hcl", "garbage")
    write(jobs, "notes.txt", "garbage")
    write(jobs, "ok.hcl~", "garbage")
    outside = write(tmp_path, "outside.hcl", MINIMAL.replace("clock", "outside"))
    os.symlink(outside, jobs / "link.hcl")
    os.symlink(jobs / "ok.hcl", jobs / "inner.hcl.bak")
    d = Loader(jobs).scan()
    assert set(d.jobs) == {"clock", "bom"}
    msgs = {Path(p.file).name: p.message for p in d.errors}
    assert "empty" in msgs["empty.hcl"]
    assert "not UTF-8" in msgs["latin1.hcl"] and "offset" in msgs["latin1.hcl"]
    assert "larger than" in msgs["big.hcl"]
    assert "outside" in msgs["link.hcl"]
    assert {Path(f).name for f in d.broken_files} == {
        "empty.hcl",
        "latin1.hcl",
        "big.hcl",
        "link.hcl",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file(tmp_path: Path) -> None:
    p = write(tmp_path, "a.hcl", MINIMAL)
    p.chmod(0)
    assert "cannot read" in Loader(tmp_path).scan().errors[0].message


def test_two_files_defining_one_job_are_both_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.hcl", MINIMAL)
    write(tmp_path, "b.hcl", MINIMAL.replace("/bin/date", "/bin/echo"))
    d = Loader(tmp_path).scan()
    assert "clock" not in d.jobs and "clock" in d.held
    assert len([p for p in d.errors if "also defined in" in p.message]) == 2


def test_cache_does_not_reparse_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "a.hcl", MINIMAL)
    loader = Loader(tmp_path)
    first = loader.scan()
    import reconciler.spec.load as load

    calls = []
    monkeypatch.setattr(load, "parse_text", lambda *a: calls.append(a) or parse_text(*a))
    assert loader.scan() is first and not calls
    write(tmp_path, "b.hcl", MINIMAL.replace("clock", "other"))
    second = loader.scan()
    assert set(second.jobs) == {"clock", "other"} and len(calls) == 1


def test_warm_parses_ahead_so_the_scan_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = Loader(tmp_path)
    loader.scan()
    path = write(tmp_path, "a.hcl", MINIMAL)
    import reconciler.spec.load as load

    calls = []
    monkeypatch.setattr(load, "parse_text", lambda *a: calls.append(a) or parse_text(*a))
    loader.warm(path)
    assert len(calls) == 1
    d = loader.scan()
    assert list(d.jobs) == ["clock"] and len(calls) == 1  # the scan found the warm parse
    assert d.jobs["clock"].file == str(path)  # named as the scan names it


def test_load_paths_for_validate(tmp_path: Path) -> None:
    a = write(tmp_path, "a.hcl", MINIMAL)
    d = load_paths([a])
    assert list(d.jobs) == ["clock"]


def test_parsing_without_positions_reads_every_example_the_same() -> None:
    """The fast parse (no position tracking) is used for files without problems: it must read
    them exactly as the tracked parse does; files with problems are parsed again with lines."""
    from reconciler.spec import hcl
    from reconciler.spec.parse import _parse_text

    assert hcl._untracked() is not None  # the fast path is in use with this lark
    root = Path(__file__).parents[2]
    files = [*root.glob("jobs/*.hcl"), *root.glob("tests/nomad_style/*.hcl"), *root.glob("tests/corpus/*")]
    clean = 0
    for f in files:
        text = f.read_text(errors="replace")
        tracked = _parse_text(text, str(f), positions=True)
        if not tracked.problems:
            assert _parse_text(text, str(f), positions=False) == tracked, f
            clean += 1
    assert clean >= 5
    broken = parse_text('job "x" {\n  group "g" {\n    count = "two"\n  }\n}\n', "jobs/x.hcl")
    assert broken.problems and broken.problems[0].line == 3  # lines come from the second parse


def test_settled_tells_whether_the_directory_changed_since_the_scan(tmp_path: Path) -> None:
    write(tmp_path, "a.hcl", MINIMAL)
    loader = Loader(tmp_path)
    loader.scan()
    assert loader.settled()
    write(tmp_path, "b.hcl", MINIMAL.replace("clock", "other"))
    assert not loader.settled()  # written after the scan: a checkout still in progress
    loader.scan()
    assert loader.settled()


def test_fields_added_later_dump_as_before_they_existed_when_unset() -> None:
    """An upgrade must not change a job's digest: unset newer fields stay out of the dump."""
    job = job_of(MINIMAL)
    group = job.group["once"]
    task = group.task["print"]
    for model in (job, group, task):
        dumped = model.model_dump(mode="json")
        assert model.ADDED_LATER and not set(model.ADDED_LATER) & set(dumped), type(model)
    templated = job_of(MINIMAL.replace("config {", 'template {\n destination = "local/a"\n'
                                       ' data = "x"\n }\n config {'))  # fmt: skip
    t = templated.group["once"].task["print"].template[0]
    assert "wait" not in t.model_dump(mode="json")
    waited = t.model_copy(update={"wait": TemplateWait(min="1s", max="2s")})
    assert "wait" in waited.model_dump(mode="json")
    given = task.model_copy(update={"dispatch_payload": DispatchPayload(file="in.json")})
    assert given.model_dump(mode="json")["dispatch_payload"] == {"file": "in.json"}
