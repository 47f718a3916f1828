"""HCL text -> plain dict (python-hcl2 8.x) plus an index from block path to source line.

Parsing is bounded (docs/jobspec.md, "Limits"): python-hcl2's heredoc patterns are replaced by
linear ones, and the tokens are counted as the parser pulls them, so a file with too many
tokens, nesting too deep or parsing too long stops at the line it reached."""

from __future__ import annotations

import functools
import io
import pickle
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hcl2
from hcl2 import SerializationOptions
from hcl2 import parser as hcl2_parser
from hcl2.api import transform as hcl2_transform
from hcl2.postlexer import OPERATOR_TYPES, PostLexer
from hcl2.rules.base import AttributeRule, BlockRule
from hcl2.rules.strings import HeredocTrimTemplateRule
from lark import Lark, Token
from lark.exceptions import LarkError, UnexpectedInput

OPTIONS = SerializationOptions(
    strip_string_quotes=True,
    explicit_blocks=False,
    with_comments=False,
    preserve_heredocs=False,
)

Path = tuple[str | int, ...]

# python-hcl2 8.1.4 escapes `\` and `"` in the value of an indented heredoc (<<-EOT) even when
# asked for values, not source; undo exactly that escaping (it is applied only there).
_serialize_trim = HeredocTrimTemplateRule.serialize
_ESCAPED = re.compile(r'\\(["\\])')


def _serialize_trim_value(self: Any, options: Any = OPTIONS, *args: Any, **kw: Any) -> Any:
    value = _serialize_trim(self, options, *args, **kw)
    if options.strip_string_quotes and not options.preserve_heredocs and isinstance(value, str):
        return _ESCAPED.sub(r"\1", value)
    return value


HeredocTrimTemplateRule.serialize = _serialize_trim_value  # type: ignore[method-assign]


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

_OPEN = frozenset({"LBRACE", "LSQB", "LPAR", "INTERP_START", "DIRECTIVE_START"})
_CLOSE = frozenset({"RBRACE", "RSQB", "RPAR"})
# Each of these nests the expression it applies to one level deeper in the parse tree.
_CHAINED = OPERATOR_TYPES | {"MINUS", "NOT", "DOT", "ATTR_SPLAT", "FULL_SPLAT_START", "LSQB"}
_NEW_EXPRESSION = frozenset({"NL_OR_COMMENT", "COMMA", "EQ"})


class _BoundedPostLexer(PostLexer):
    """python-hcl2's token pass, counting the tokens the parser pulls: how many, how deep they
    nest (each open bracket, brace, parenthesis or `${`, plus each operator, `.` or `[ ]`
    chained in the expression open at each level), and the CPU time spent."""

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        chained = [0]
        depth = 0
        operand_due = False  # after an operator, a newline continues the expression
        deadline = time.thread_time() + MAX_PARSE_SECONDS
        for n, token in enumerate(super().process(stream), 1):
            kind = token.type
            if kind in _CHAINED:
                chained[-1] += 1
                depth += 1
            if kind in _OPEN:
                chained.append(0)
                depth += 1
            elif kind in _CLOSE:
                if len(chained) > 1:
                    depth -= 1 + chained.pop()
            elif kind in _NEW_EXPRESSION and not (operand_due and kind == "NL_OR_COMMENT"):
                depth -= chained[-1]
                chained[-1] = 0
            operand_due = kind in _CHAINED
            if depth > MAX_DEPTH:
                raise _limit(token, f"nested more than {MAX_DEPTH} deep (each block, bracket, "
                             "${...} and chained operator counts one); not read")  # fmt: skip
            if n > MAX_TOKENS:
                raise _limit(token, f"more than {MAX_TOKENS:,} tokens; not read")
            if not n & 255 and time.thread_time() > deadline:
                raise _limit(token, f"parsing took more than {MAX_PARSE_SECONDS:g} s; stopped")
            yield token


def _limit(token: Token, message: str) -> HclLimitError:
    return HclLimitError(message, token.line, token.column, "")


# python-hcl2's heredoc patterns scan a body with `(?:.|\n)*?` followed by `\s*`: for a heredoc
# that is never closed, time grows with the square of the body (32 KB of blank lines: 3 s;
# 1 MB: hours). These match the same text a line at a time, in linear time.
_LINEAR_HEREDOC = r"\r?\n(?:[^\n]*\n)*?[^\S\n]*(?P={group})\r?\n"
_HEREDOCS = {"HEREDOC_TEMPLATE": "heredoc", "HEREDOC_TEMPLATE_TRIM": "heredoc_trim"}


@dataclass
class Parsed:
    body: dict[str, Any]
    lines: dict[Path, int | None] = field(default_factory=dict)
    duplicates: list[tuple[Path, int | None]] = field(default_factory=list)
    tree: Any = None  # python-hcl2's rule tree, for HCL2 evaluation (spec/hclbody.py)

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


@functools.lru_cache(maxsize=2)
def _parser(positions: bool) -> Lark | None:
    """python-hcl2's parser rebuilt from its own cached tables (compiling the grammar anew
    takes seconds), with linear heredoc patterns and the bounded token pass. Without position
    tracking it is about twice as fast; positions only put line numbers on problems, so a file
    with problems is parsed again with them. On a lark that cannot load tables: None."""
    try:
        buf = io.BytesIO()
        hcl2_parser.parser().save(buf)
        data = pickle.loads(buf.getvalue())
        for item in data["memo"].values():
            group = _HEREDOCS.get(item.get("name", "")) if isinstance(item, dict) else None
            if group is not None:
                pattern = item["pattern"]["value"]
                head = pattern[: pattern.index(")") + 1]  # `<<-?(?P<group>NAME)`
                item["pattern"]["value"] = head + _LINEAR_HEREDOC.format(group=group)
        ours = Lark.__new__(Lark)._load(
            data, propagate_positions=positions, postlex=_BoundedPostLexer()
        )
        # python-hcl2 keeps its own parser (~3.6 MB of objects) cached: only its tables were
        # wanted, and the fallback below builds it again if ever needed
        hcl2_parser.parser.cache_clear()
        return ours
    except Exception:  # lark's loader is not public API: degrade to python-hcl2's own parser
        return None


def _untracked() -> Lark | None:
    return _parser(False)


def parse(text: str, positions: bool = True) -> Parsed:
    """`positions=False` is faster; problems found in what it returns have no line numbers."""
    try:
        parser = _parser(positions)
        if parser is None:
            tree = hcl2.parses(text, discard_comments=True)
        else:  # as hcl2.parses does, with the newline lark needs at the end
            tree = hcl2_transform(parser.parse(text + "\n"), discard_comments=True)
        body = tree.serialize(OPTIONS)
    except HclLimitError as e:
        e.line = min(e.line, max(1, text.count("\n") + 1)) if e.line else None
        e.excerpt = _excerpt(text, e.line, e.column) if e.line else ""
        raise
    except UnexpectedInput as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        first = first if len(first) <= 200 else first[:200] + "..."  # a token may be 1 MB long
        line = min(e.line, max(1, text.count("\n") + 1)) if e.line and e.line > 0 else None
        excerpt = _excerpt(text, line, e.column) if line else ""
        raise HclSyntaxError(_friendly(first), line, e.column, excerpt) from None
    except (LarkError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        # python-hcl2 raises plain exceptions for some shapes, e.g. an attribute and a
        # block of the same name ("Attribute env is already defined.").
        raise HclSyntaxError(str(e) or type(e).__name__, None, None, "") from None
    parsed = Parsed(body=body if isinstance(body, dict) else {}, tree=tree)
    _index(tree.body, (), parsed)
    return parsed


def _friendly(message: str) -> str:
    if "Token('$END'" in message:
        return "unexpected end of file (a block is missing its closing '}'?)"
    return "syntax error: " + message


def _excerpt(text: str, line: int, column: int | None) -> str:
    lines = text.splitlines() or [""]
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = " " * max(0, (column or 1) - 1) + "^"
    return f"  {line:>4} | {src}\n       | {caret}"


def _index(body: Any, path: Path, out: Parsed) -> None:
    seen: dict[str, int] = {}
    attrs: set[str] = set()
    for child in body.children:
        if isinstance(child, BlockRule):
            labels = [str(lbl.serialize(OPTIONS)) for lbl in child.labels]
            line = getattr(child._meta, "line", None)
            name, rest = labels[0], labels[1:]
            if rest:
                p: Path = (*path, name, *rest)
                out.lines.setdefault(p, line)
                out.lines.setdefault((*path, name), line)
            else:
                n = seen.get(name, 0)
                seen[name] = n + 1
                p = (*path, name, n)
                out.lines.setdefault(p, line)
                if n == 0:
                    out.lines.setdefault((*path, name), line)
            _index(child.body, p, out)
        elif isinstance(child, AttributeRule):
            name = str(child.identifier.serialize(OPTIONS))
            line = getattr(child._meta, "line", None)
            if name in attrs:
                out.duplicates.append(((*path, name), line))
            attrs.add(name)
            out.lines[(*path, name)] = line
