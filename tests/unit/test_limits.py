"""Bounded work per file: shapes that make a parser run away are stopped by a limit, reported
with their line, and leave the other files alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from reconciler.db.snapshot import Observed
from reconciler.plan import Host, admission, plan
from reconciler.spec import hcl, load
from reconciler.spec.load import MAX_FILE_BYTES, Desired, Loader, parse_text
from reconciler.spec.problems import Problem


def in_time(fn: Callable[[], Any], seconds: float = 120) -> Any:
    """fn's result; a parse that runs away fails the test instead of hanging it."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"still running after {seconds} s"
    return out[0]


def test_nested_blocks_index_in_linear_space() -> None:
    """Each block given once is also addressed without its index; that must not copy the
    whole subtree per level (2**depth entries)."""
    depth = 30
    parsed = hcl.parse('job "x" {\n' + "a {\n" * depth + "b = 1\n" + "}\n" * depth + "}\n")
    assert len(parsed.lines) < 10 * depth
    path: tuple[str | int, ...] = ("job", "x", *(["a"] * depth), "b")
    assert parsed.line_of(path) == depth + 2  # found through every index-less level


def test_line_of_a_singleton_block_without_its_index() -> None:
    text = 'job "x" {\n  group "g" {\n    task "t" {\n      config {\n        bogus = 1\n      }\n    }\n  }\n}\n'
    assert hcl.parse(text).line_of(("job", "x", "group", "g", "task", "t", "config", "bogus")) == 5
    assert any(p.line == 5 for p in parse_text(text, "x.hcl").problems)


BASE = 'job "x" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{ command = "/bin/true" }}\n      meta = {{\n        a = {expr}\n      }}\n    }}\n  }}\n}}\n'


def limit_problem(text: str) -> Problem:
    problems = in_time(lambda: parse_text(text, "jobs/x.hcl").problems)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize(
    "shape",
    [
        lambda d: "[" * d + "]" * d,
        lambda d: "(" * d + "1" + ")" * d,
        lambda d: "{a = " * d + "1" + "}" * d,
        lambda d: "1 + " * d + "1",
        lambda d: "true ? 1 : " * d + "1",
        lambda d: "x" + ".b" * d,
        lambda d: "x" + "[0]" * d,
        lambda d: '"' + '${f("' * d + "y" + '")}' * d + '"',
        lambda d: "[(1 + {a = -" * d + "1" + "})]" * d,
        lambda d: "1 +\n" * d + "1",
    ],
    ids=[
        "lists",
        "parens",
        "objects",
        "plus",
        "conditionals",
        "attrs",
        "index",
        "interp",
        "mixed",
        "lines",
    ],
)
def test_deep_nesting_is_stopped_with_its_line(shape: Callable[[int], str]) -> None:
    assert "nested more than" not in str(parse_text(BASE.format(expr=shape(5)), "x.hcl").problems)
    for depth in (hcl.MAX_DEPTH + 1, 5000):
        p = limit_problem(BASE.format(expr=shape(depth)))
        assert f"nested more than {hcl.MAX_DEPTH} deep" in p.message
        assert p.line is not None and p.line >= 7 and p.excerpt


def test_deep_blocks_are_stopped_with_their_line() -> None:
    p = limit_problem('job "x" {\n' + "a {\n" * 5000 + "}\n" * 5000 + "}\n")
    assert "nested more than" in p.message and p.line == hcl.MAX_DEPTH + 1


def test_too_many_tokens() -> None:
    env = "".join(f'K{i} = "v"\n' for i in range(hcl.MAX_TOKENS // 4))
    p = limit_problem(BASE.format(expr="1").replace("meta = {", "env {\n" + env + "}\n meta = {"))
    assert f"more than {hcl.MAX_TOKENS:,} tokens" in p.message and p.line


def test_a_parse_that_runs_too_long_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hcl, "MAX_PARSE_SECONDS", -1.0)
    p = limit_problem(BASE.format(expr="[" + "1, " * 300 + "]"))
    assert "parsing took more than" in p.message and p.line == 7


@pytest.mark.parametrize("body", ["\n", " \n", "x\n", "  EOTX\n"])
def test_an_unclosed_heredoc_fails_in_linear_time(body: str) -> None:
    """python-hcl2's own heredoc pattern takes hours on 1 MB of blank lines never closed."""
    text = BASE.format(expr="<<EOT\n" + body * (MAX_FILE_BYTES // len(body) // 2))
    message = limit_problem(text).message
    assert "syntax error" in message and len(message) < 300


@pytest.mark.parametrize(
    "heredoc, value",
    [
        ("<<EOT\nEOT\n", ""),
        ("<<EOT\na\n\n\n  EOT\n", "a\n\n"),
        ("<<EOT\nx EOT\nEOTX\nEOT\n", "x EOT\nEOTX"),
        ("<<-EOT\n    x\n      y\n    EOT\n", "x\n  y"),
        ("<<EOT\r\nx\r\nEOT\r\n", "x"),
    ],
)
def test_heredocs_read_as_before(heredoc: str, value: str) -> None:
    body = hcl.parse(f"a = {heredoc}b = 1\n").body
    assert body == {"a": value, "b": 1}


def test_a_huge_count_is_blocked_without_building_its_slots() -> None:
    """Admission places a group only where the node has room: a count of a billion is one
    blocked job, decided without a billion slots."""
    text = BASE.format(expr="1").replace('group "g" {\n', 'group "g" {\n    count = 1000000000\n')
    spec = parse_text(text, "jobs/x.hcl").jobs[0]
    attrs = {"attr.cpu.numcores": "2", "attr.cpu.totalcompute": "2000",
             "attr.memory.totalbytes": str(1000 << 20)}  # fmt: skip
    host = Host(attrs, True, admission.capacity(attrs, admission.Usage(0, 100, 0)))
    desired = Desired(MappingProxyType({"x": spec}), MappingProxyType({}))
    p = in_time(lambda: plan(desired, Observed(), host, 1_800_000_000.0))
    assert not p.start and len(p.blocked) == 1 and "1000000000" in p.blocked[0].reason


def test_a_runaway_file_costs_the_others_nothing(tmp_path: Path) -> None:
    (tmp_path / "deep.hcl").write_text(BASE.format(expr="[" * 100_000))
    (tmp_path / "heredoc.hcl").write_text(BASE.format(expr="<<EOT\n" + "\n" * 400_000))
    (tmp_path / "ok.hcl").write_text(BASE.format(expr="1").replace('"x"', '"ok"'))
    d = in_time(Loader(tmp_path).scan)
    assert list(d.jobs) == ["ok"] and len(d.errors) == 2


def test_an_unexpected_failure_is_a_problem_of_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.hcl").write_text(BASE.format(expr="1").replace('"x"', '"a"'))
    (tmp_path / "b.hcl").write_text(BASE.format(expr="2").replace('"x"', '"b"'))
    real = load.parse_text

    def parse(text: str, file: str, *inputs: Any) -> load.FileResult:
        if file.endswith("b.hcl"):
            raise MemoryError
        return real(text, file, *inputs)

    monkeypatch.setattr(load, "parse_text", parse)
    d = Loader(tmp_path).scan()
    assert list(d.jobs) == ["a"] and "MemoryError" in d.errors[0].message
