"""The fast path for HCL files: one linear pass, no lark.

A small tokenizer and recursive-descent parser for what job files nearly always hold: blocks
with labels, attributes, and expressions made of literals (strings with escapes and `${...}`,
numbers, bools, null, heredocs, lists, objects), references (`var.x`, `NOMAD_TASK_DIR`,
`local.args[0]`) and function calls. It gives exactly what the full parser (python-hcl2 on
lark, spec/hcl.py) gives -- the same body, outline and line index -- or raises `Declined` and
the full parser reads the file. Anything outside the subset is declined, including every file
the full parser would refuse, so syntax errors and limits keep their wording and lines.
Differential fuzz tests (tests/unit/test_hclfast*.py) hold the two paths together.
Three files, one parser: the scanner (spec/hclscan.py), expressions (spec/hclfastexpr.py),
and bodies and blocks here.
"""

from __future__ import annotations

from typing import Any

from reconciler.spec.hclfastexpr import Expressions
from reconciler.spec.hcloutline import NOT_LITERAL, Attribute, Block, Expression, Outline
from reconciler.spec.hclscan import INLINE, INLINE_NO_CR, LITERALS, NAME, TOP_LEVEL, Declined


class FastParse:
    """What a fast parse found. `body` is None when a value is not a plain literal (the file is
    evaluated from `outline`, or its python-hcl2 body is asked of the full parser)."""

    __slots__ = ("body", "needs_evaluation", "outline")

    def __init__(self, outline: Outline, body: dict[str, Any] | None, needs: bool) -> None:
        self.outline, self.body, self.needs_evaluation = outline, body, needs


def parse(text: str, max_tokens: int, max_seconds: float) -> FastParse:
    """Raises Declined. A file that may come near `max_tokens` (the full parser's count) or
    takes more than `max_seconds` of CPU is declined."""
    p = _Parser(text, max_tokens, max_seconds)
    children, body = p.body(0, top=True)
    needs = p.needs or any(isinstance(c, Block) and c.kind in TOP_LEVEL for c in children)
    return FastParse(children, body if p.plain else None, needs)


def _nest(labels: tuple[str, ...], body: dict[str, Any]) -> dict[str, Any]:
    for label in reversed(labels):
        body = {label: body}
    return body


class _Parser(Expressions):

    # -- bodies ---------------------------------------------------------------------------
    def body(self, depth: int, top: bool) -> tuple[Outline, dict[str, Any]]:
        text = self.text
        children: list[Attribute | Block] = []
        out: dict[str, Any] = {}
        attr_names: set[str] = set()
        while True:
            self.gap()
            i = self.i
            if i >= self.n:
                if not top:
                    raise Declined("unclosed block")
                return tuple(children), out
            if text[i] == "}":
                if top:
                    raise Declined("unexpected }")
                return tuple(children), out
            m = NAME.match(text, i)
            if m is None or m.group() in LITERALS:
                raise Declined("not a name")
            name = m.group()
            self.i = m.end()
            self.inline()
            j = self.i
            if text.startswith("=", j) and not text.startswith(("==", "=>"), j):
                self.i = j + 1
                self.inline()
                start = self.i
                self.unsafe = False
                plain, value = self.expression(inline=False)
                end, after_newline = self.i, self.text[self.i - 1] == "\n"  # heredocs end so
                if self.binary_end:
                    end, after_newline = self.absorb()
                line, column = self.where(start)
                literal = value if plain and not self.unsafe else NOT_LITERAL
                children.append(
                    Attribute(name, self.line(i), Expression(start, end, line, column, literal))
                )
                if not plain:
                    self.plain = False
                    self.needs = True
                attr_names.add(name)
                out[name] = value
            else:
                block, inner = self.block(name, i, depth)
                if name in attr_names:
                    raise Declined("a block named as an attribute")
                children.append(block)
                out.setdefault(name, []).append(_nest(block.labels, inner))
                if name == "dynamic":
                    self.needs = True
                after_newline = False
            if not self.at_separator(after_newline):
                raise Declined("two items on one line")

    def block(self, kind: str, start: int, depth: int) -> tuple[Block, dict[str, Any]]:
        text = self.text
        labels: list[str] = []
        while True:
            self.inline()
            i = self.i
            if text.startswith("{", i):
                break
            self.count()
            if text.startswith('"', i):
                plain, value = self.string(inline=True)
                if not plain:
                    raise Declined("a label with ${...}")
                labels.append(value)
                continue
            m = NAME.match(text, i)
            if m is None or m.group() in LITERALS:
                raise Declined("not a block")
            labels.append(m.group())
            self.i = m.end()
        self.i += 1
        self.enter()
        children, body = self.body(depth + 1, top=False)
        self.depth -= 1
        self.i += 1  # the closing brace
        return Block(kind, tuple(labels), self.line(start), children), body

    def absorb(self) -> tuple[int, bool]:
        """python-hcl2 ends a binary operation with the newlines and comments after it (and
        the newline it appends to the text): where the attribute's expression ends, and
        whether a newline was crossed."""
        text, n = self.text, self.n
        end, crossed = self.i, False
        while True:
            i = INLINE.match(text, end).end()  # type: ignore[union-attr]
            if i >= n:
                self.i = n
                return n + 1, True
            if text[i] == "\n":
                end = INLINE_NO_CR.match(text, i + 1).end()  # type: ignore[union-attr]
            elif text[i] == "#" or text.startswith("//", i):
                nl = text.find("\n", i)
                if nl < 0:
                    self.i = n
                    return n + 1, True
                end = nl + 1
            elif text.startswith("/*", i):
                close = text.find("*/", i + 2)
                if close < 0:
                    raise Declined("unclosed comment")
                end = close + 2
                self.count()
                crossed = crossed or "\n" in text[i:end]
                continue
            else:
                self.i = end
                return end, crossed
            crossed = True

    # -- expressions ----------------------------------------------------------------------
    binary_end = False  # the last expression read ends with a binary operation
    unsafe = False  # a literal in the attribute's value the evaluator may read otherwise
