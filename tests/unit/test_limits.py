"""Bounded work per file: shapes that make a parser run away are stopped by a limit, reported
with their line, and leave the other files alone."""

from __future__ import annotations

from reconciler.spec import hcl
from reconciler.spec.load import parse_text


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
