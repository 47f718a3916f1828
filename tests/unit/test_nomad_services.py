"""nomadService / nomadServices: a table of template cases over a fake registry, what a
template depends on (found before it runs), and re-renders through the loop with the fake
executor: only templates reading a changed service render again, per change_mode."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from reconciler.plan.digest import services_part
from reconciler.spec.gotemplate import Host, Registration, TemplateError, check, render
from reconciler.spec.gotemplate.nomadservices import fingerprints, hash_with
from reconciler.spec.load import parse_text
from reconciler.spec.models import Job
from tests.unit.conftest import Harness, job


class Registry:
    def __init__(self, regs: Sequence[Registration]) -> None:
        self.regs = list(regs)

    def registrations(self) -> Sequence[Registration]:
        return self.regs


def reg(alloc: str, name: str, port: int, tags: tuple[str, ...] = (), job_id: str = "web",
        address: str = "127.0.0.1") -> Registration:  # fmt: skip
    return Registration(f"_nomad-task-{alloc}-t-{name}-http", name, "node-1", address, port,
                        "dc1", tags, job_id, alloc)  # fmt: skip


REGS = [
    reg("a2", "api", 8081, ("v1",)),
    reg("a1", "api", 8080, ("v2", "v1")),
    reg("a3", "db", 5432, ("primary",), job_id="db"),
    reg("a4", "api", 8082, ("v1",), address="10.8.0.2"),
]

CASES: list[tuple[str, str]] = [
    # every registration of the name, ordered by ID as Nomad's state store lists them
    ('{{ range nomadService "api" }}{{ .Address }}:{{ .Port }} {{ end }}',
     "127.0.0.1:8080 127.0.0.1:8081 10.8.0.2:8082 "),
    ('{{ range nomadService "v2.api" }}{{ .Port }}{{ end }}', "8080"),
    ('{{ range nomadService "v1.api" }}{{ .Port }},{{ end }}', "8080,8081,8082,"),
    ('{{ range nomadService "api@global" }}{{ .AllocID }}{{ end }}', "a1a2a4"),
    ('{{ nomadService "nothing" }}', "[]"),
    ('{{ len (nomadService "api") }}', "3"),
    ('{{ with nomadService "db" }}{{ (index . 0).Name }}{{ end }}', "db"),
    ('{{ range nomadService "db" }}{{ .ID }}|{{ .Node }}|{{ .Datacenter }}|{{ .JobID }}|'
     '{{ .Tags }}{{ end }}', "_nomad-task-a3-t-db-http|node-1|dc1|db|[primary]"),
    ('{{ range nomadService "api" }}{{ if eq .AllocID "a1" }}{{ .Tags }}{{ end }}{{ end }}',
     "[v1 v2]"),  # tags sorted, as consul-template copies them
    ('{{ range nomadService "api" }}{{ join "," .Tags }};{{ end }}', "v1,v2;v1;v1;"),
    ('{{ nomadService "db" }}', "[&{_nomad-task-a3-t-db-http db node-1 127.0.0.1 5432 dc1 "
                               "[primary] db a3}]"),
    ('{{ nomadService "db" | toJSON }}',
     '[{"ID":"_nomad-task-a3-t-db-http","Name":"db","Node":"node-1","Address":"127.0.0.1",'
     '"Port":5432,"Datacenter":"dc1","Tags":["primary"],"JobID":"db","AllocID":"a3"}]'),
    ('{{ range nomadServices }}{{ .Name }}={{ .Tags }};{{ end }}', "api=[v1 v2];db=[primary];"),
    ('{{ range nomadServices "@global" }}{{ .Name }} {{ end }}', "api db "),
    ('{{ $s := "db" }}{{ range nomadService $s }}{{ .Port }}{{ end }}', "5432"),
    ('{{ range "db" | nomadService }}{{ .Port }}{{ end }}', "5432"),
    ('{{ len (nomadService 2 "alloc-x" "api") }}', "2"),
    ('{{ len (nomadService 9 "alloc-x" "api") }}', "3"),
    ('{{ len (nomadService 0 "alloc-x" "api") }}', "0"),
    ('{{ range nomadService 3 "k" "v2.api" }}{{ .Port }}{{ end }}', "8080"),
]  # fmt: skip

ERRORS: list[tuple[str, str]] = [
    ('{{ range nomadService "db" }}{{ .Namespace }}{{ end }}',
     "can't evaluate field Namespace in type *dependency.NomadService"),
    ('{{ $n := "a b" }}{{ nomadService $n }}', 'nomad.service: invalid format: "a b"'),
    ('{{ $r := "x@eu" }}{{ nomadService $r }}', 'reconciler has only the "global" region'),
    ('{{ nomadService 1 "" "api" }}', "malformed choose parameter"),
    ('{{ nomadService -1 "k" "api" }}', "malformed choose parameter"),
    ('{{ nomadService "1" "k" "api" }}', "expected integer for <count> argument"),
    ('{{ nomadService 1 2 "api" }}', "expected string for <key> argument"),
    ('{{ nomadService 1 }}', "expected string for <service> argument"),
]  # fmt: skip

# What fails on every render is refused when the job file is checked, with line and column.
REFUSED: list[tuple[str, str]] = [
    ('{{ nomadService "a b" }}', 'line 1, column 4: error calling nomadService: nomad.service: '
                                'invalid format: "a b"'),
    ('x\n{{ nomadService "web@eu" }}', 'line 2, column 4: error calling nomadService: '
                                      'nomadService "web@eu": reconciler has only the "global"'),
    ('{{ nomadService "a" "b" }}', "expected arguments <service> or <count> <key> <service>"),
    ('{{ nomadServices "web" }}', 'nomad.services: invalid format: "web"'),
    ('{{ nomadServices "@eu" }}', 'reconciler has only the "global" region'),
]  # fmt: skip


@pytest.mark.parametrize(("text", "want"), CASES)
def test_template_cases(text: str, want: str) -> None:
    check(text)
    assert render(text, Host(services=Registry(REGS))) == want


@pytest.mark.parametrize(("text", "why"), ERRORS)
def test_template_errors(text: str, why: str) -> None:
    with pytest.raises(TemplateError, match=None) as e:
        render(text, Host(services=Registry(REGS)))
    assert why in str(e.value)


@pytest.mark.parametrize(("text", "why"), REFUSED)
def test_refused_at_validation(text: str, why: str) -> None:
    with pytest.raises(TemplateError) as e:
        check(text)
    assert why in str(e.value)


def test_choose_is_nomads_rendezvous_hashing() -> None:
    """The subset is the instances ranking first by sha256(port, alloc, id, namespace,
    address, name, tags, key); each key picks its own, stable whatever the listing order."""
    api = [r for r in REGS if r.name == "api"]
    for key in ("alloc-1", "alloc-2", "alloc-3"):
        want = sorted(api, key=lambda r: hash_with(r, key))[:2]
        got = render(f'{{{{ range nomadService 2 "{key}" "api" }}}}{{{{ .AllocID }}}} {{{{ end }}}}',
                     Host(services=Registry(list(reversed(REGS)))))  # fmt: skip
        assert got == "".join(f"{r.alloc_id} " for r in want)
    r = reg("x", "api", 1, ("b", "a"))
    assert hash_with(r, "k") != hash_with(r._replace(tags=("a", "b")), "k")  # tags as registered


def test_what_a_template_reads_is_found_before_it_runs() -> None:
    from reconciler.spec.gotemplate import services_read

    assert services_read("plain {{ env \"X\" }}") == frozenset()
    assert services_read('{{ nomadService "v1.api" }}{{ nomadService 2 "k" "db@global" }}') == {
        "api", "db"}  # fmt: skip
    assert services_read("{{ range nomadServices }}{{ end }}") == {"@list"}
    assert services_read('{{ $s := "x" }}{{ nomadService $s }}') == {"*"}
    assert services_read('[[ nomadService "api" ]]', "[[", "]]") == {"api"}


def _job_with(template: str) -> Job:
    result = parse_text(job("b", extra_task=template), "jobs/b.hcl")
    assert result.ok, result.problems
    return result.jobs[0].job


def test_digest_part_follows_only_the_names_read() -> None:
    j = _job_with('template {\n data = "{{ range nomadService \\"api\\" }}{{ .Port }}{{ end }}"\n'
                  ' destination = "local/x"\n}')  # fmt: skip
    before = fingerprints(REGS)
    moved = fingerprints([*REGS[:3], REGS[3]._replace(port=9999)])
    other = fingerprints([*REGS, reg("a9", "cache", 6379)])
    assert services_part(j, "g", "t", before) != services_part(j, "g", "t", moved)
    assert services_part(j, "g", "t", before) == services_part(j, "g", "t", other)
    plain = _job_with('template {\n data = "x"\n destination = "local/x"\n}')
    assert services_part(plain, "g", "t", before) == ""


PRODUCER = """
job "a" {
  group "g" {
    network {
      port "http" { static = %d }
    }
    task "t" {
      driver = "exec"
      config { command = "/bin/app" }
      service {
        name = "api"
        provider = "%s"
        port = "http"
        tags = ["v1"]
      }
    }
  }
}
"""

READER = """template {
  data = "{{ range nomadService \\"api\\" }}{{ .Address }}:{{ .Port }} {{ end }}"
  destination = "local/upstreams"
  %s
}"""
SIGNAL = 'change_mode = "signal"\n  change_signal = "SIGHUP"'


def rendered_for(h: Harness, key: str) -> list[str]:
    return [t.templates[0].text for t in h.fake.rendered if t.id == key]


def signals(h: Harness, key: str) -> list[str]:
    return list(h.fake.tasks[key].signals)


def test_a_service_coming_and_going_re_renders_its_readers_only(h: Harness) -> None:
    h.write("b.hcl", job("b", extra_task=READER % SIGNAL))
    h.write("c.hcl", job("c", extra_task='template {\n data = "static"\n destination = "local/x"\n'
                                         ' change_mode = "noop"\n}'))  # fmt: skip
    h.step()
    assert [s.templates[0].text for s in h.fake.started if s.id == "b/g/0/t"] == [""]
    h.write("a.hcl", PRODUCER % (23457, "nomad"))
    h.step()
    assert rendered_for(h, "b/g/0/t") == ["127.0.0.1:23457 "]
    assert signals(h, "b/g/0/t") == ["SIGHUP"]
    assert rendered_for(h, "c/g/0/t") == []  # no service read: never rendered again
    starts = len(h.fake.started)
    h.step(1)
    assert len(rendered_for(h, "b/g/0/t")) == 1  # nothing changed: nothing rendered
    h.remove("a.hcl")
    h.step()
    h.step()
    assert rendered_for(h, "b/g/0/t") == ["127.0.0.1:23457 ", ""]
    assert len(h.fake.started) == starts  # signalled, never restarted
    assert signals(h, "b/g/0/t") == ["SIGHUP", "SIGHUP"]
    assert rendered_for(h, "c/g/0/t") == []
    assert "Template Rendered" in h.events("b/g/0/t")


def test_a_reader_of_another_name_is_not_rendered_again(h: Harness) -> None:
    h.write("d.hcl", job("d", extra_task=(READER % SIGNAL).replace('\\"api\\"', '\\"db\\"')))
    h.step()
    assert h.service.applier.specs["d"].job.group["g"].task["t"].template[0].data.count("db")
    h.write("a.hcl", PRODUCER % (23462, "nomad"))
    h.step()
    h.step()
    h.remove("a.hcl")
    h.step()
    h.step()
    assert rendered_for(h, "d/g/0/t") == []
    assert signals(h, "d/g/0/t") == []


def test_a_failing_check_changes_nothing_a_template_sees(h: Harness) -> None:
    """Nomad lists every registration whatever its checks say: a check turning critical
    renders nothing again."""
    from tests.unit.test_checks import TCP, free_port, rows, run_checks

    producer = (PRODUCER % (free_port(), "nomad")).replace(
        'tags = ["v1"]', 'tags = ["v1"]\n' + TCP % ""
    )  # nothing listens on the port: the check goes critical
    h.write("a.hcl", producer)
    h.write("b.hcl", job("b", extra_task=READER % SIGNAL))
    h.step()
    h.step()
    before = rendered_for(h, "b/g/0/t")
    run_checks(h, 6)
    assert rows(h, "SELECT status FROM checks") == [("critical",)]
    assert rendered_for(h, "b/g/0/t") == before
    texts = [s.templates[0].text for s in h.fake.started if s.id == "b/g/0/t"] + before
    assert texts[-1].startswith("127.0.0.1:")  # still listed, critical as it is


def test_a_consul_service_is_not_in_nomads_registry(h: Harness) -> None:
    h.write("a.hcl", PRODUCER % (23458, "consul"))
    h.write("b.hcl", job("b", extra_task=READER % SIGNAL))
    h.step()
    h.step()
    assert [s.templates[0].text for s in h.fake.started if s.id == "b/g/0/t"] == [""]
    assert rendered_for(h, "b/g/0/t") == []


def test_restart_is_the_default_change_mode(h: Harness) -> None:
    h.write("b.hcl", job("b", extra_task=READER % ""))
    h.step()
    h.write("a.hcl", PRODUCER % (23459, "nomad"))
    for _ in range(4):
        h.step(1)
    texts = [s.templates[0].text for s in h.fake.started if s.id == "b/g/0/t"]
    assert texts == ["", "127.0.0.1:23459 "]


def test_only_the_templates_whose_input_changed_decide_what_happens(h: Harness) -> None:
    """Nomad acts per template: a service change re-renders its noop reader and leaves the
    task running, even beside a template of the default change_mode (restart) that reads
    nothing that changed."""
    static = 'template {\n data = "ok"\n destination = "local/health"\n}'
    h.write("b.hcl", job("b", extra_task=READER % 'change_mode = "noop"' + "\n" + static))
    h.step()
    h.write("a.hcl", PRODUCER % (23463, "nomad"))
    for _ in range(3):
        h.step(1)
    assert len([s for s in h.fake.started if s.id == "b/g/0/t"]) == 1  # never restarted
    assert [t.templates[0].text for t in h.fake.rendered if t.id == "b/g/0/t"] == [
        "127.0.0.1:23463 "]  # fmt: skip
    assert signals(h, "b/g/0/t") == []


def test_a_once_template_is_not_rendered_again(h: Harness) -> None:
    once = (READER % 'once = true').replace("upstreams", "first")
    h.write("b.hcl", job("b", extra_task=once + "\n" + READER % 'change_mode = "noop"'))
    h.step()
    h.write("a.hcl", PRODUCER % (23466, "nomad"))
    for _ in range(3):
        h.step(1)
    [again] = [t for t in h.fake.rendered if t.id == "b/g/0/t"]
    assert [t.destination for t in again.templates] == ["local/upstreams"]
    assert h.fake.files["b/g/0/t"]["local/first"] == ""  # as rendered at the start
    assert len([s for s in h.fake.started if s.id == "b/g/0/t"]) == 1


def test_restart_and_signal_readers_changing_together_restart(h: Harness) -> None:
    both = READER % "" + "\n" + (READER % SIGNAL).replace("upstreams", "upstreams2")
    h.write("b.hcl", job("b", extra_task=both))
    h.step()
    h.write("a.hcl", PRODUCER % (23464, "nomad"))
    for _ in range(4):
        h.step(1)
    texts = [s.templates[0].text for s in h.fake.started if s.id == "b/g/0/t"]
    assert texts == ["", "127.0.0.1:23464 "] and signals(h, "b/g/0/t") == []


SELF = """
job "s" {
  group "g" {
    network {
      port "http" { static = 23465 }
    }
    service {
      name = "self"
      provider = "nomad"
      port = "http"
    }
    task "t" {
      driver = "exec"
      config { command = "/bin/app" }
      template {
        data = "{{ range nomadService \\"self\\" }}{{ .Port }}{{ end }}"
        destination = "local/self"
        %s
      }
    }
  }
}
"""


@pytest.mark.parametrize("mode", ["", 'change_mode = "noop"'])
def test_a_task_reading_its_own_group_service_settles(h: Harness, mode: str) -> None:
    """A group service stays registered while its task restarts (Nomad registers it for the
    allocation's life), so a template reading it renders it once more and is then quiet."""
    h.write("s.hcl", SELF % mode)
    for _ in range(8):
        h.step(1)
    started = [s.templates[0].text for s in h.fake.started if s.id == "s/g/0/t"]
    rendered = [t.templates[0].text for t in h.fake.rendered if t.id == "s/g/0/t"]
    if mode:  # noop: written, the task left running
        assert (started, rendered) == ([""], ["23465"])
    else:  # restart: once, and the restarted task starts with its own service listed
        assert (started, rendered) == (["", "23465"], ["23465"])
        assert "Restart Signaled" in h.events("s/g/0/t")
    assert h.fake.tasks["s/g/0/t"].alive


def test_a_new_service_process_renders_nothing_again(h: Harness) -> None:
    """The registry is in the store: after a restart of reconciler the adopted reader's
    digest is unchanged, so it is neither re-rendered nor signalled."""
    from reconciler.service.loop import Service

    h.write("a.hcl", PRODUCER % (23460, "nomad"))
    h.write("b.hcl", job("b", extra_task=READER % SIGNAL))
    h.step()
    h.step()
    before = signals(h, "b/g/0/t"), rendered_for(h, "b/g/0/t")
    h.fake.survivors = set(h.fake.alive())
    h.service = Service(h.jobs, h.store, h.fake, h.service.node, clock=h.clock, watch=False)
    h.step()
    h.step(1)
    assert (signals(h, "b/g/0/t"), rendered_for(h, "b/g/0/t")) == before
    assert len([s for s in h.fake.started if s.id == "b/g/0/t"]) <= 2


WAITING = READER % (SIGNAL + '\n  wait {\n    min = "2s"\n    max = "5s"\n  }')


def test_wait_renders_once_the_registry_has_been_quiet_for_min(h: Harness) -> None:
    h.write("b.hcl", job("b", extra_task=WAITING))
    h.step()
    h.write("a.hcl", PRODUCER % (23461, "nomad"))
    h.step()
    h.step()
    assert rendered_for(h, "b/g/0/t") == []  # held: quiet for 2 s first
    h.step(1.5)
    assert rendered_for(h, "b/g/0/t") == []
    h.step(0.6)
    assert rendered_for(h, "b/g/0/t") == ["127.0.0.1:23461 "]
    assert signals(h, "b/g/0/t") == ["SIGHUP"]
    h.step(10)
    assert len(rendered_for(h, "b/g/0/t")) == 1


def test_wait_renders_by_max_however_often_the_registry_changes(h: Harness) -> None:
    h.write("b.hcl", job("b", extra_task=WAITING))
    h.step()
    for i in range(4):  # a change every 1.5 s: never quiet for 2 s
        h.write(f"a{i}.hcl", (PRODUCER % (23470 + i, "nomad")).replace('job "a"', f'job "a{i}"'))
        h.step()
        h.step()
        if i < 3:
            assert rendered_for(h, "b/g/0/t") == [], i
            h.step(1.5)
    # 4.5 s after the first change, max (5 s) not yet reached
    assert rendered_for(h, "b/g/0/t") == []
    h.step(0.6)
    [text] = rendered_for(h, "b/g/0/t")
    assert sorted(text.split()) == [f"127.0.0.1:{23470 + i}" for i in range(4)]  # by ID


def test_wait_holds_a_changed_variable_too(h: Harness) -> None:
    from reconciler.db.variables import VariableStore

    store = VariableStore(h.store.path.parent)
    store.put("nomad/jobs/w", {"password": "one"})
    tmpl = ('template {\n data = "{{ with nomadVar \\"nomad/jobs/w\\" }}{{ .password }}{{ end }}"\n'
            ' destination = "local/pw"\n change_mode = "noop"\n wait {\n min = "3s"\n }\n}')  # fmt: skip
    h.write("w.hcl", job("w", extra_task=tmpl))
    h.step()
    store.put("nomad/jobs/w", {"password": "two"})
    h.service.rescan_all()
    h.step()
    h.step(2)
    assert rendered_for(h, "w/g/0/t") == []
    h.step(1.1)
    assert rendered_for(h, "w/g/0/t") == ["two"]


def test_wait_min_over_max_is_refused() -> None:
    tmpl = 'template {\n data = "x"\n destination = "local/x"\n wait {\n min = "9s"\n max = "2s"\n }\n}'
    result = parse_text(job("b", extra_task=tmpl), "jobs/b.hcl")
    assert [str(p) for p in result.problems] == [
        "jobs/b.hcl:15: job.b.group.g.task.t.template.0.wait: wait min 9s is greater than max 2s"
    ]


def test_wait_survives_nomads_json() -> None:
    import json

    from reconciler.service import jobjson, nomad

    tmpl = 'template {\n data = "x"\n destination = "local/x"\n wait {\n min = "3s"\n max = "1m"\n }\n}'
    [spec] = parse_text(job("b", extra_task=tmpl), "jobs/b.hcl").jobs
    as_json = json.loads(json.dumps(nomad.job(spec.id, spec.job.model_dump(mode="json"), None, 0)))
    wait = as_json["TaskGroups"][0]["Tasks"][0]["Templates"][0]["Wait"]
    assert wait == {"Min": 3_000_000_000, "Max": 60_000_000_000}
    again = parse_text(jobjson.to_hcl(as_json), "<json>")
    assert [s.canonical for s in again.jobs] == [spec.canonical], again.problems
