"""The structure of a parsed HCL file, whichever parser read it: blocks, attributes and where
each attribute's expression is in the text (hclbody reads that text again to evaluate it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Path = tuple[str | int, ...]
NOT_LITERAL: Any = object()


@dataclass(frozen=True, slots=True)
class Expression:
    """Offsets into the file's text, its first line and 1-based column; None when the parse
    did not track positions. `literal` is the value when the fast path read a literal that
    the evaluator would read the same (digits, bools, null, strings without escapes, `$` or
    `%`, lists of these): the evaluator takes it as is instead of reading the text again."""

    start: int | None
    end: int | None
    line: int | None
    column: int | None
    literal: Any = field(default=NOT_LITERAL, compare=False)


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    line: int | None
    expression: Expression


@dataclass(frozen=True, slots=True)
class Block:
    kind: str
    labels: tuple[str, ...]
    line: int | None
    children: tuple[Attribute | Block, ...]


Outline = tuple[Attribute | Block, ...]


@dataclass
class LineIndex:
    lines: dict[Path, int | None] = field(default_factory=dict)
    duplicates: list[tuple[Path, int | None]] = field(default_factory=list)


def index(children: Outline, path: Path = (), out: LineIndex | None = None) -> LineIndex:
    """Block path -> source line, as problems address fields, and attributes set twice."""
    out = out if out is not None else LineIndex()
    seen: dict[str, int] = {}
    attrs: set[str] = set()
    for child in children:
        if isinstance(child, Block):
            name, line = child.kind, child.line
            if child.labels:
                p: Path = (*path, name, *child.labels)
                out.lines.setdefault(p, line)
                out.lines.setdefault((*path, name), line)
            else:
                n = seen.get(name, 0)
                seen[name] = n + 1
                p = (*path, name, n)
                out.lines.setdefault(p, line)
                if n == 0:
                    out.lines.setdefault((*path, name), line)
            index(child.children, p, out)
        else:
            if child.name in attrs:
                out.duplicates.append(((*path, child.name), child.line))
            attrs.add(child.name)
            out.lines[(*path, child.name)] = child.line
    return out
