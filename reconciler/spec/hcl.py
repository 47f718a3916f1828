"""HCL text -> plain dict, an outline of its blocks and attributes, and an index from block
path to source line.

Two parsers, one meaning: the fast path (spec/hclfast.py, one linear pass, no lark) reads the
files people write; anything else, and every file with an error, goes to python-hcl2 8.x on
lark (spec/hclfull.py, imported only then). Both are bounded (docs/jobspec.md, "Limits")."""

from __future__ import annotations

from typing import Any

from reconciler.spec import hclfast, hclscan
from reconciler.spec.hcloutline import LineIndex, Outline, index

Path = tuple[str | int, ...]


class HclSyntaxError(Exception):
    """A file that is not HCL: carries line, column and a caret excerpt."""

    def __init__(self, message: str, line: int | None, column: int | None, excerpt: str) -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.excerpt = message, line, column, excerpt


class HclLimitError(HclSyntaxError):
    """A file stopped by a limit before it was fully parsed."""


# Measured with python-hcl2 8.1.4 and lark 1.3: the job files of jobs/ nest 6 or 7 deep in the
# unit of MAX_DEPTH; Python's stack runs out from about 118 (nested "${f("${...}")}") to 400
# (nested parentheses). A parse costs 30-100 us per token: MAX_TOKENS is a few seconds at most.
MAX_DEPTH = 40
MAX_TOKENS = 50_000
MAX_PARSE_SECONDS = 10.0  # CPU time of one parse: a backstop the two limits above stay under


class Parsed:
    """`outline` is what hclbody evaluates; `body` is python-hcl2's plain dict (strings keep
    `${...}` as written). `positions` is False for a parse without lines (faster on lark)."""

    def __init__(
        self,
        outline: Outline,
        lines: LineIndex,
        needs_evaluation: bool,
        positions: bool,
        body: dict[str, Any] | None,
        text: str = "",
    ) -> None:
        self.outline = outline
        self.lines = lines.lines
        self.duplicates = lines.duplicates
        self.needs_evaluation = needs_evaluation  # variables, locals, functions, ${...}
        self.positions = positions
        self._body = body
        self._text = text

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:  # the fast path reads values that are not literals as text
            from reconciler.spec import hclfull

            self._body = hclfull.parse(self._text, positions=False).body
        return self._body

    @body.setter
    def body(self, value: dict[str, Any]) -> None:
        self._body = value

    def line_of(self, path: Path) -> int | None:
        """The line of the deepest indexed prefix of `path`; a block given once may be
        addressed without its index (`config.command` for `config.0.command`)."""
        cur: Path = ()
        found: int | None = None
        for part in path:
            if (*cur, part) in self.lines:
                cur = (*cur, part)
            elif (*cur, 0, part) in self.lines:
                cur = (*cur, 0, part)
            else:
                break
            found = self.lines[cur] if self.lines[cur] is not None else found
        return found


def parse(text: str, positions: bool = True) -> Parsed:
    """Raises HclSyntaxError. `positions=False` lets the full parser skip line tracking
    (problems found in what it returns have no line numbers); the fast path always has them."""
    try:
        fast = hclfast.parse(text, MAX_TOKENS, MAX_PARSE_SECONDS)
    except hclscan.Declined:
        from reconciler.spec import hclfull

        return hclfull.parse(text, positions)
    return Parsed(fast.outline, index(fast.outline), fast.needs_evaluation, True, fast.body, text)


def parse_full(text: str, positions: bool = True) -> Parsed:
    """python-hcl2's reading, never the fast path (for tests that compare the two)."""
    from reconciler.spec import hclfull

    return hclfull.parse(text, positions)


def _untracked() -> Any:
    from reconciler.spec import hclfull

    return hclfull._parser(False)


def excerpt(text: str, line: int, column: int | None) -> str:
    lines = text.splitlines() or [""]
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = " " * max(0, (column or 1) - 1) + "^"
    return f"  {line:>4} | {src}\n       | {caret}"


_excerpt = excerpt
