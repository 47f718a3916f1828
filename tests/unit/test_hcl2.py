"""HCL2 job files: expressions, functions, variables, locals, var files, as Nomad's jobspec2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.spec import hclexpr, hclsyntax
from reconciler.spec.hclbody import Inputs, VarFile, scope
from reconciler.spec.load import Loader, is_job_file, load_paths, parse_text, vars_file_for
from tests.unit.conftest import Harness, job

STYLE = Path(__file__).parents[1] / "nomad_style"
SCOPE = scope(
    {
        "var": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}]},
        "local": {"m": {"b": 2, "a": 1}, "s": "text", "n": None},
    }
)


def ev(src: str) -> object:
    return hclexpr.evaluate(hclsyntax.parse_expression(src), SCOPE)


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("8 / 2", 4),
        ("-7 % 3", -1),
        ("1 == 1.0", True),
        ('1 == "1"', False),
        ("true && !false", True),
        ('"5" + 1', 6),  # operands convert as cty converts them
        ('local.s == "text" ? "yes" : "no"', "yes"),
        ('true ? 1 : "a"', "1"),  # both branches unify to string, as HCL does
        ("false ? var.nope : 2", 2),  # an error in the branch not taken does not count
        ("var.ports[*].name", ["http", "admin"]),
        ("var.ports.*.port", [80, 9000]),
        ("local.n[*]", []),
        ("var.ports[1].port", 9000),
        ("var.ports.0.name", "http"),
        ('local.m["a"]', 1),
        ("[for p in var.ports : p.port if p.port > 100]", [9000]),
        ("{for p in var.ports : p.name => p.port}", {"admin": 9000, "http": 80}),
        ("{for p in var.ports : substr(p.name, 0, 1) => p.port...}", {"a": [9000], "h": [80]}),
        ('[for k, v in local.m : "${k}=${v}"]', ["a=1", "b=2"]),  # maps iterate in key order
        ('"${local.s}-${1 + 1}"', "text-2"),
        ('"${local.m}"', {"a": 1, "b": 2}),  # a lone interpolation keeps its type
        ('"a%{ if local.s == "text" }b%{ else }c%{ endif }d"', "abd"),
        ('"%{ for p in var.ports }${p.name},%{ endfor }"', "http,admin,"),
        ('"x ${~ " y " ~} z"', "x y z"),
        ('"$${NOMAD_ALLOC_ID} %%{literal}"', "${NOMAD_ALLOC_ID} %{literal}"),
        ('"\\u00e9\\t\\"q\\""', 'é\t"q"'),
        ("NOMAD_ALLOC_ID", "${NOMAD_ALLOC_ID}"),
        ('"${attr.kernel.name}-${local.s}"', "${attr.kernel.name}-text"),
        ("meta.rack", "${meta.rack}"),
        ("<<EOT\nline ${local.s}\nEOT\n", "line text\n"),
        ("<<-EOT\n    a\n      b\n    EOT\n", "a\n  b\n"),
        ('{ a = 1, "b c" = 2, (local.s) = 3 }', {"a": 1, "b c": 2, "text": 3}),
        ('try(local.m.missing, "fallback")', "fallback"),
        ("can(local.m.missing)", False),
        ('convert("5", number)', 5),
        ('convert(["b", "a", "b"], set(string))', ["a", "b"]),
    ],
)
def test_expressions(src: str, expected: object) -> None:
    assert ev(src) == expected


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ('format("%s-%03d %v %.2f %t %q %x %%", "a", 7, [1], 1.5, true, "q", 255)', 'a-007 [1] 1.50 true "q" ff %'),
        ('formatlist("%s=%d", ["a", "b"], [1, 2])', ["a=1", "b=2"]),
        ("abs(-3)", 3), ("ceil(1.2)", 2), ("floor(-1.2)", -2), ("log(8, 2)", 3), ("max(1, 5, 3)", 5),
        ("min(4, 2)", 2), ('parseint("ff", 16)', 255), ("pow(2, 10)", 1024), ("signum(-4)", -1),
        ('chomp("x\\n\\n")', "x"), ('indent(2, "a\\nb")', "a\n  b"), ('join(",", ["a", "b"])', "a,b"),
        ('lower("AB")', "ab"), ('upper("ab")', "AB"), ('title("hello world")', "Hello World"),
        ('regex_replace("a1b22", "[0-9]+", "<$0>")', "a<1>b<22>"), ('replace("a.b", ".", "-")', "a-b"),
        ('split(",", "a,b")', ["a", "b"]), ('strlen("héllo")', 5), ('strrev("abc")', "cba"),
        ('substr("hello", 1, 3)', "ell"), ('trim("--a--", "-")', "a"), ('trimprefix("ab", "a")', "b"),
        ('trimsuffix("ab", "b")', "a"), ('trimspace("  a ")', "a"),
        ("chunklist([1, 2, 3], 2)", [[1, 2], [3]]), ('coalesce(null, "", "b")', ""), ('coalesce(null, 1, "b")', "1"),
        ("coalescelist([], [1])", [1]), ('compact(["a", "", "b"])', ["a", "b"]),
        ("concat([1], [2, 3])", [1, 2, 3]), ('contains(["a"], "a")', True),
        ("distinct([1, 1, 2])", [1, 2]), ("element([1, 2, 3], 4)", 2), ("flatten([[1, [2]], 3])", [1, 2, 3]),
        ('index(["a", "b"], "b")', 1), ("keys(local.m)", ["a", "b"]), ("length(local.m)", 2),
        ('lookup(local.m, "z", 0)', 0), ('merge(local.m, {c = 3})', {"a": 1, "b": 2, "c": 3}),
        ("range(3)", [0, 1, 2]), ("range(1, 7, 2)", [1, 3, 5]), ("reverse([1, 2])", [2, 1]),
        ("setintersection([1, 2], [2, 3])", [2]), ("setunion([2], [1])", [1, 2]),
        ('setproduct(["a"], [1, 2])', [["a", 1], ["a", 2]]), ("slice([1, 2, 3], 1, 3)", [2, 3]),
        ('sort(["b", "a"])', ["a", "b"]), ("values(local.m)", [1, 2]),
        ('zipmap(["a", "b"], [1, 2])', {"a": 1, "b": 2}),
        ('base64encode("hi")', "aGk="), ('base64decode("aGk=")', "hi"),
        ('csvdecode("a,b\\n1,2\\n")', [{"a": "1", "b": "2"}]), ('jsondecode("{\\"a\\": [1]}")', {"a": [1]}),
        ('jsonencode({b = "<", a = 1})', '{"a":1,"b":"\\u003c"}'), ('urlencode("a b&c")', "a+b%26c"),
        ('yamldecode("a: [1, x]")', {"a": [1, "x"]}), ("yamlencode({a = 1})", "a: 1\n"),
        ('md5("a")', "0cc175b9c0f1b6a831c399e269772661"),
        ('sha1("a")', "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"),
        ('sha256("a")', "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"),
        ('substr(sha512("a"), 0, 8)', "1f40fc92"),
        ('formatdate("YYYY-MM-DD hh:mm EEE", "2024-03-05T07:08:09Z")', "2024-03-05 07:08 Tue"),
        ('timeadd("2024-01-01T00:00:00Z", "90m")', "2024-01-01T01:30:00Z"),
        ('cidrhost("10.0.0.0/24", 5)', "10.0.0.5"), ('cidrnetmask("10.0.0.0/12")', "255.240.0.0"),
        ('cidrsubnet("10.0.0.0/16", 8, 2)', "10.0.2.0/24"),
        ('cidrsubnets("10.0.0.0/16", 4, 4)', ["10.0.0.0/20", "10.0.16.0/20"]),
        ('uuidv5("dns", "example.com")', "cfbff0d1-9375-5685-968c-48ce8b15ae17"),
    ],
)  # fmt: skip
def test_functions(src: str, expected: object) -> None:
    assert ev(src) == expected


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("var.nope", 'no variable named "nope" is declared'),
        ("local.s.x", 'a string has no attribute "x"'),
        ("var.ports[5]", "index 5 is out of range"),
        ("1 / 0", "division by zero"),
        ('"a" + 1', "a number is required"),
        ('"${local.m} x"', "a string is required, not a object"),
        ("timestamp()", "timestamp() is not supported: Nomad's jobspec has no timestamp()"),
        ("uuidv4()", "uuidv4() is not supported: its value changes"),
        ("nosuch(1)", 'there is no function named "nosuch"'),
        ('file("x")', "file() is not supported: filesystem functions are disabled"),
        ('{for p in var.ports : "k" => p}', 'two elements have the key "k"'),
        ("range(1000000)", "more than 100000 elements"),
        ('format("%d", 1.5)', "%d needs a whole number"),
        ('format("%s %s", "a")', "not enough arguments"),
    ],
)
def test_expression_errors(src: str, message: str) -> None:
    with pytest.raises(hclexpr.EvalError) as err:
        ev(src)
    assert message in err.value.message


def test_syntax_errors_say_where() -> None:
    with pytest.raises(hclsyntax.HclSyntaxError) as err:
        hclsyntax.parse_expression("[1, 2")
    assert "expected ']'" in err.value.message and err.value.pos == 5


JOB = """job "j" {
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = var.command
        args    = [local.arg]
      }
    }
  }
}
"""
DECL = """variable "command" {
  type    = string
  default = "/bin/default"
}
locals {
  arg = "${var.command}-arg"
}
"""


def command_of(text: str, inputs: Inputs | None = None) -> str:
    r = parse_text(text, "jobs/j.hcl", inputs)
    assert r.ok, [str(p) for p in r.problems]
    return r.jobs[0].job.group["g"].task["t"].config.command


def errors_of(text: str, inputs: Inputs | None = None) -> list[str]:
    return [str(p).split("\n")[0] for p in parse_text(text, "jobs/j.hcl", inputs).problems]


def test_precedence_default_env_var_file() -> None:
    """As jobspec2's source does: default < NOMAD_VAR_x < var files (the last one wins)."""
    assert command_of(DECL + JOB) == "/bin/default"
    env = {"NOMAD_VAR_command": "/bin/env"}
    assert command_of(DECL + JOB, Inputs(env=env)) == "/bin/env"
    files = (
        VarFile("jobs/a.vars.hcl", 'command = "/bin/a"\n'),
        VarFile("jobs/b.vars.hcl", 'command = "/bin/b"\n'),
    )
    assert command_of(DECL + JOB, Inputs(env=env, var_files=files)) == "/bin/b"
    assert (
        command_of(DECL + JOB, Inputs(env={"NOMAD_VAR_COMMAND": "x"})) == "/bin/default"
    )  # exact case


def test_unset_variable_names_file_line_and_where_to_set_it() -> None:
    text = 'variable "command" {}\n' + JOB.replace("[local.arg]", "[]")
    out = errors_of(text, Inputs(var_file_hint="jobs/j.vars.hcl"))
    assert out == [
        "jobs/j.hcl:1: var.command: no value; declare a default or set it in jobs/j.vars.hcl (or NOMAD_VAR_command)"
    ]


def test_expression_errors_name_file_line_and_field() -> None:
    out = errors_of(DECL + JOB.replace("[local.arg]", "[local.arg,\n var.nope]"))
    assert out == [
        'jobs/j.hcl:15:2: job.j.group.g.task.t.config.args: no variable named "nope" is declared'
    ]
    (problem,) = parse_text(
        DECL + JOB.replace("[local.arg]", '["${upper(1, 2)}"]'), "j.hcl"
    ).problems
    assert (problem.line, problem.column) == (14, 23)  # the call, inside the string
    assert problem.excerpt.endswith("|" + " " * 23 + "^") and "upper(1, 2)" in problem.excerpt


def test_var_file_rules() -> None:
    undeclared = Inputs(var_files=(VarFile("jobs/j.vars.hcl", 'command = "/x"\nother = 1\n'),))
    assert errors_of(DECL + JOB, undeclared) == [
        'jobs/j.vars.hcl:2: other: no variable "other" is declared in the job file'
    ]
    declared = Inputs(var_files=(VarFile("jobs/j.vars.hcl", 'variable "command" {}\n'),))
    assert "declare variables in the job file" in errors_of(DECL + JOB, declared)[0]
    computed = Inputs(var_files=(VarFile("jobs/j.vars.hcl", 'command = upper("x")\n'),))
    assert "only literal values" in errors_of(DECL + JOB, computed)[0]
    typed = Inputs(var_files=(VarFile("jobs/j.vars.hcl", "command = [1]\n"),))
    assert "does not match the type string" in errors_of(DECL + JOB, typed)[0]


def test_typed_values_from_the_environment() -> None:
    decl = 'variable "n" {\n  type = number\n}\nvariable "l" {\n  type = list(string)\n}\n'
    job = JOB.replace("var.command", '"/bin/${var.n}"').replace("[local.arg]", "var.l")
    r = parse_text(
        decl + job, "jobs/j.hcl", Inputs(env={"NOMAD_VAR_n": "3", "NOMAD_VAR_l": '["a", "b"]'})
    )
    assert r.ok and r.jobs[0].job.group["g"].task["t"].config.args == ["a", "b"]
    assert r.jobs[0].job.group["g"].task["t"].config.command == "/bin/3"
    out = errors_of(decl + job, Inputs(env={"NOMAD_VAR_n": "three", "NOMAD_VAR_l": "[]"}))
    assert out == [
        'jobs/j.hcl:1: var.n: NOMAD_VAR_n of the service: does not match the type number: a number is required, not "three"'
    ]


def test_validation_and_declaration_rules() -> None:
    rule = 'variable "command" {\n  default = "x"\n  validation {\n    condition = substr(var.command, 0, 1) == "/"\n    error_message = "The command must be an absolute path."\n  }\n}\n'
    out = errors_of(rule + JOB.replace("[local.arg]", "[]"))
    assert out == [
        "jobs/j.hcl:4: var.command: invalid value from the default: The command must be an absolute path."
    ]
    assert "sensitive" in errors_of('variable "x" {\n  sensitive = true\n}\n' + JOB)[0]
    assert "duplicate variable" in " ".join(errors_of(DECL + DECL + JOB))
    assert "must be a sentence" in errors_of(rule.replace("The command", "the command") + JOB)[0]
    assert (
        "can refer only to var.command"
        in errors_of(rule.replace("substr(var.command", "substr(local.x") + JOB)[0]
    )


def test_locals_in_any_order_and_cycles() -> None:
    text = 'locals {\n  arg = local.b\n}\nlocals {\n  b = "${local.c}!"\n  c = "/bin/c"\n}\n'
    r = parse_text(text + JOB.replace("var.command", "local.c"), "jobs/j.hcl")
    assert r.ok and r.jobs[0].job.group["g"].task["t"].config.args == ["/bin/c!"]
    cycle = errors_of(
        "locals {\n  arg = local.b\n  b = local.arg\n}\n" + JOB.replace("var.command", '"/x"')
    )
    assert "refer to each other in a cycle: local.arg, local.b" in cycle[0]
    assert (
        "duplicate value in locals"
        in errors_of("locals {\n  a = 1\n}\nlocals {\n  a = 2\n}\n" + JOB)[0]
    )


def test_runtime_references_kept_next_to_hcl_ones() -> None:
    text = DECL + JOB.replace(
        "[local.arg]", '["${NOMAD_ALLOC_ID}/${var.command}", NOMAD_TASK_DIR, "$${HOME}"]'
    )
    r = parse_text(text, "jobs/j.hcl")
    assert r.jobs[0].job.group["g"].task["t"].config.args == [
        "${NOMAD_ALLOC_ID}//bin/default",
        "${NOMAD_TASK_DIR}",
        "${HOME}",
    ]


def test_nomad_style_examples_validate_and_the_twin_matches() -> None:
    d = load_paths([STYLE])
    assert not d.errors, [str(p) for p in d.errors]
    assert d.jobs["expanded"].job == d.jobs["expanded_twin"].job
    web = d.jobs["web"].job.group["web"]
    assert web.count == 2 and web.task["server"].config.args[-2:] == ["--bind", "127.0.0.1"]
    echo = d.jobs["e2e_locals"].job.group["echo"].task["echo"]
    assert echo.env["GREETING"] == "HELLO from ${NOMAD_ALLOC_ID}"


def test_var_files_are_not_job_files() -> None:
    assert not is_job_file("web.vars.hcl") and is_job_file("web.nomad.hcl")
    assert (
        vars_file_for("jobs/web.nomad.hcl") == vars_file_for("jobs/web.hcl") == "jobs/web.vars.hcl"
    )
    assert vars_file_for("jobs/web.nomad") == "jobs/web.vars.hcl"


def test_a_changed_var_file_or_read_file_re_plans(tmp_path: Path) -> None:
    (tmp_path / "j.hcl").write_text(DECL + JOB.replace("[local.arg]", '[file("arg.txt")]'))
    (tmp_path / "arg.txt").write_text("one")
    loader = Loader(tmp_path, env={})
    first = loader.scan().jobs["j"]
    assert first.job.group["g"].task["t"].config.command == "/bin/default"
    (tmp_path / "j.vars.hcl").write_text('command = "/bin/from-file"\n')
    assert not loader.settled()
    second = loader.scan().jobs["j"]
    assert second.job.group["g"].task["t"].config.command == "/bin/from-file"
    assert second.digest != first.digest
    (tmp_path / "arg.txt").write_text("two!")
    assert loader.scan().jobs["j"].job.group["g"].task["t"].config.args == ["two!"]
    assert loader.scan() is loader.scan()  # nothing changed: the cached pass


def test_file_stays_inside_the_job_directory(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", jobs / "link.txt")
    for path in ("../secret", "link.txt", "/etc/passwd"):
        (jobs / "j.hcl").write_text(DECL + JOB.replace("[local.arg]", f'[file("{path}")]'))
        d = Loader(jobs, env={}).scan()
        assert "outside the job directory" in str(d.errors[0]), path


def test_the_service_restarts_only_the_job_whose_var_file_changed(h: Harness) -> None:
    decl = 'variable "level" {\n  default = "info"\n}\n'
    h.write("web.nomad.hcl", decl + job("web", env="LEVEL = var.level"))
    h.write("api.hcl", decl + job("api", env="LEVEL = var.level"))
    h.step()
    assert {c.env["LEVEL"] for c in h.fake.started} == {"info"}
    h.write("web.vars.hcl", 'level = "debug"\n')
    h.step()
    h.step()
    assert [(c.env["NOMAD_JOB_NAME"], c.env["LEVEL"]) for c in h.fake.started[2:]] == [
        ("web", "debug")
    ]
    assert h.states() == {"api/g/0/t": "running", "web/g/0/t": "running"}
    h.write("web.vars.hcl", "level = [1]\n")  # a broken var file keeps the last good version
    h.step()
    assert len(h.fake.started) == 3 and len(h.fake.alive()) == 2


def test_null_leaves_a_field_unset() -> None:
    text = JOB.replace(
        'driver = "exec"',
        'driver = "exec"\n      user = null\n      kill_timeout = true ? null : "1s"',
    )
    r = parse_text(DECL + text, "jobs/j.hcl")
    assert r.ok and r.jobs[0].job.group["g"].task["t"].user == ""
