"""`service`, `check` and `check_restart` blocks: defaults, merging, and located errors."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec.load import parse_text
from reconciler.spec.services import effective_checks, service_name


def job(service: str, task_service: str = "", network: str = 'port "http" {}', mode: str = "host") -> str:
    return f"""job "web" {{
  group "api" {{
    network {{
      mode = "{mode}"
      {network}
    }}
    {service}
    task "server" {{
      driver = "exec"
      config {{ command = "/bin/sleep" }}
      {task_service}
    }}
  }}
}}
"""


def problems(text: str) -> list[str]:
    return [str(p).splitlines()[0] for p in parse_text(text, "jobs/web.hcl").problems]


def parsed(text: str):
    r = parse_text(text, "jobs/web.hcl")
    assert r.ok, [str(p) for p in r.problems]
    return r.jobs[0].job


HTTP_CHECK = """
      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }"""


def test_group_and_task_services_with_nomad_defaults() -> None:
    j = parsed(job(f'service {{\n port = "http"\n provider = "nomad"\n{HTTP_CHECK}\n}}',
                   'service {\n port = "http"\n provider = "nomad"\n tags = ["v1"]\n}'))  # fmt: skip
    group_svc = j.group["api"].service[0]
    task_svc = j.group["api"].task["server"].service[0]
    assert service_name(group_svc, "web", "api", "") == "web-api"
    assert service_name(task_svc, "web", "api", "server") == "web-api-server"
    assert task_svc.provider == "nomad" and task_svc.tags == ["v1"]
    [ec] = effective_checks(group_svc, "web-api")
    assert ec.name == 'service: "web-api" check'
    assert (ec.check.interval, ec.check.timeout, ec.check.method) == (10.0, 2.0, "GET")
    assert (ec.on_update, ec.restart_limit, ec.restart_grace) == ("require_healthy", 0, 1.0)


def test_check_restart_merges_service_block_check_wins() -> None:
    check = HTTP_CHECK.replace('timeout  = "2s"', 'timeout = "2s"\n check_restart { grace = "5s" }')
    svc = f"""service {{
      port = "http"
      check_restart {{
        limit = 3
        grace = "30s"
      }}
      {check}
    }}"""
    j = parsed(job(svc))
    [ec] = effective_checks(j.group["api"].service[0], "web-api")
    assert (ec.restart_limit, ec.restart_grace, ec.ignore_warnings) == (3, 5.0, False)


def test_name_substitution_and_header_map() -> None:
    svc = """service {
      name = "${JOB}-${TASK}-x"
      port = "http"
      check {
        type = "http"
        path = "/"
        interval = "1s"
        timeout = "1s"
        method = "post"
        header { X-Token = ["a", "b"] }
      }
    }"""
    j = parsed(job("", svc))
    s = j.group["api"].task["server"].service[0]
    assert service_name(s, "web", "api", "server") == "web-server-x"
    assert s.check[0].header == {"X-Token": ["a", "b"]} and s.check[0].method == "POST"


def test_numeric_port_and_script_check() -> None:
    svc = """service {
      port = 8080
      check {
        type = "script"
        command = "/bin/check"
        args = ["-q"]
        interval = "5s"
        timeout = "2s"
        success_before_passing = 2
      }
    }"""
    out = problems(job("", svc))
    assert any("check.0.success_before_passing: is not supported for script checks" in p
               for p in out), out  # fmt: skip
    j = parsed(job("", svc.replace("success_before_passing = 2", "")))
    assert j.group["api"].task["server"].service[0].port == "8080"


def test_located_errors() -> None:
    text = job(
        'service {\n port = "htp"\n check {\n type = "grpc"\n interval = "1s"\n timeout = "1s"\n }\n}',
        'service {\n name = "bad_name"\n port = "http"\n address_mode = "alloc"\n'
        ' check {\n type = "http"\n path = "http://x/y"\n interval = "500ms"\n timeout = "1s"\n }\n'
        ' check {\n type = "tcp"\n interval = "1s"\n timeout = "1s"\n initial_status = "passing"\n'
        ' on_update = "ignore"\n check_restart { limit = 2 }\n }\n}',
    )  # fmt: skip
    out = problems(text)
    assert any(p.startswith("jobs/web.hcl:10: job.web.group.api.service.0.check.0.type: must be")
               for p in out), out  # fmt: skip
    assert any("check.0.interval: must be at least \"1s\"" in p for p in out), out
    # once the types are right, the cross-field rules speak
    out = problems(text.replace('"grpc"', '"tcp"').replace('"500ms"', '"1s"'))
    assert 'jobs/web.hcl:8: job.web.group.api.service.0.port: no port labelled "htp"' in " ".join(out)
    assert any("task.server.service.0.name: \"bad_name\": service names use" in p for p in out)
    assert any("service.0.address_mode: \"alloc\" needs the group's network mode" in p for p in out)
    assert any("check.0.path: must be a relative path" in p for p in out)
    assert any("check.1.on_update: on_update \"ignore\" is not compatible" in p for p in out)
    assert any("warning: job.web.group.api.task.server.service.0.check.1.initial_status" in p
               for p in out)  # fmt: skip


def test_refused_and_required_fields() -> None:
    out = problems(job('service {\n port = "http"\n connect { native = true }\n}'))
    assert any("service.0.connect: is not supported" in p for p in out), out
    out = problems(job('service {\n check {\n type = "tcp"\n interval = "1s"\n timeout = "1s"\n }\n}'))
    assert any("needs a port but neither the check nor the service has one" in p for p in out)
    out = problems(job('service {\n port = "http"\n check {\n type = "http"\n timeout = "1s"\n }\n}'))
    assert any("check.0.interval: is required" in p for p in out), out
    out = problems(job('service {\n port = "http"\n check {\n type = "script"\n command = "/x"\n'
                       ' interval = "1s"\n timeout = "1s"\n }\n}'))  # fmt: skip
    assert any("a script check of a group service must name its task" in p for p in out), out
    out = problems(job('service {\n port = "http"\n provider = "nomad"\n}',
                       'service {\n port = "http"\n}'))  # fmt: skip
    assert any("services of one group must use one provider" in p for p in out), out


def test_unset_service_in_nomad_file_is_no_longer_a_warning() -> None:
    out = problems(job('service {\n port = "http"\n}'))
    assert out == []


NAMES = st.text(alphabet="abcXYZ019-_.${}", max_size=70)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(NAMES, st.sampled_from(["http", "8080", "0", "99999", "x", ""]),
       st.sampled_from(["http", "tcp", "script", "grpc", ""]), st.text(max_size=20))
def test_fuzzed_services_give_problems_not_exceptions(name: str, port: str, kind: str,
                                                        path: str) -> None:  # fmt: skip
    esc = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = job(f'service {{\n name = "{name}"\n port = "{port}"\n check {{\n type = "{kind}"\n'
               f' path = "{esc}"\n interval = "1s"\n timeout = "1s"\n }}\n}}')  # fmt: skip
    r = parse_text(text, "jobs/web.hcl")
    assert r.ok == (not any(p.severity == "error" for p in r.problems))
    for p in r.problems:
        assert p.message and p.file == "jobs/web.hcl"
