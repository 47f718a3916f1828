"""Fuzz the loader: mutated and random files give problems, never an uncaught exception.

Besides token soup, strategies for nesting depth and length: every kind of nesting, to far
past the limit, and long lists, chains, strings and heredocs (closed or not) must be read or
stopped by a limit with its line, never run Python out of stack. Bounded in CI (FUZZ_EXAMPLES,
default 200); run more with FUZZ_EXAMPLES=20000. Every input
that ever crashed it lives in tests/corpus/ and is replayed here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec import hcl
from reconciler.spec.load import is_job_file, parse_text

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
JOBS = sorted(
    p for p in Path(__file__).parents[2].joinpath("jobs").glob("*.hcl") if is_job_file(p.name)
)
CORPUS = sorted(
    p for p in Path(__file__).parents[1].joinpath("corpus").glob("*") if p.suffix != ".md"
)
SEEDS = [p.read_text() for p in JOBS]
TOKENS = ['"', "{", "}", "=", "[", "]", ",", "${", "<<EOT\n", "\nEOT\n", "#", "\n", "job", "group",
          "task", "config", "-1", "1e9", "null", "true", "\\", "\x00", "\ufeff", "ü", "count"]  # fmt: skip


def check(text: str) -> None:
    result = parse_text(text, "jobs/fuzz.hcl")
    for p in result.problems:
        assert p.file == "jobs/fuzz.hcl" and p.message
    assert result.ok == (not any(p.severity == "error" for p in result.problems))


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "swap"]))
        if op == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)) :]
        else:
            a, b = sorted((pos, draw(st.integers(0, len(text)))))
            text = text[:a] + text[b:] + text[a:b]
    return text


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_job_files(text: str) -> None:
    check(text)


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(TOKENS + list("abc xyz_019\t")), max_size=120))
def test_random_token_soup(tokens: list[str]) -> None:
    check("".join(tokens))


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus(path: Path) -> None:
    check(path.read_text(errors="replace"))


# Shapes that make parsers run away: nesting of every kind, to any depth, and long runs.
WRAPPERS = ["[{e}]", "({e})", "{{a = {e}}}", "{e} + 1", "1 * {e}", "true ? {e} : 0", "!{e}",
            "-{e}", "f({e})", '"${{{e}}}"', "{e}.b", "{e}[0]", "[for x in {e}: x]"]  # fmt: skip
LEAVES = st.sampled_from(["1", '"s"', "true", "x", "null", "-1.5", "[]", "{}"])
DEEP_JOB = 'job "x" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{ command = "/bin/true" }}\n{blocks}    }}\n  }}\n}}\n'


@st.composite
def nested(draw):
    expr = draw(LEAVES)
    for wrapper in draw(st.lists(st.sampled_from(WRAPPERS), max_size=3 * hcl.MAX_DEPTH)):
        expr = wrapper.format(e=expr)
    body = f"a = {expr}\n"
    for _ in range(draw(st.integers(0, 2 * hcl.MAX_DEPTH))):
        body = f"b {{\n{body}}}\n"
    return DEEP_JOB.format(blocks=f"meta = {{\n{body}}}\n" if draw(st.booleans()) else body)


@st.composite
def long(draw):
    n = draw(st.integers(0, 20_000))
    shape = draw(st.sampled_from(["list", "chain", "string", "heredoc", "open-heredoc", "attrs"]))
    expr = {
        "list": "[" + "1, " * n + "]",
        "chain": "1" + " + 1" * n,
        "string": '"' + "x" * (n * 20) + '"',
        "heredoc": "<<EOT\n" + "line\n" * n + "EOT\n",
        "open-heredoc": "<<EOT\n" + draw(st.sampled_from(["\n", " \n", "x\n"])) * (n * 10),
        "attrs": "1\n" + "".join(f"k{i} = {i}\n" for i in range(n)),
    }[shape]
    return DEEP_JOB.format(blocks=f"meta = {{\na = {expr}\n}}\n")


def bounded(text: str) -> None:
    """Parsed or stopped by a limit; never the parser's own stack running out."""
    check(text)
    for p in parse_text(text, "jobs/fuzz.hcl").problems:
        assert "recursion" not in p.message, p.message
        if "nested more than" in p.message or "tokens" in p.message:
            assert p.line is not None


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(nested())
def test_nesting_of_any_depth_is_bounded(text: str) -> None:
    bounded(text)


@settings(max_examples=EXAMPLES // 10, deadline=None, suppress_health_check=list(HealthCheck))
@given(long())
def test_long_files_are_bounded(text: str) -> None:
    bounded(text)
