"""Fuzz the loader: mutated and random files give problems, never an uncaught exception.

Bounded in CI (FUZZ_EXAMPLES, default 200); run more with FUZZ_EXAMPLES=20000. Every input
that ever crashed it lives in tests/corpus/ and is replayed here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
