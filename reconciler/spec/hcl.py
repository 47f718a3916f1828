"""HCL text -> plain dict (python-hcl2 8.x) plus an index from block path to source line."""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass, field
from typing import Any

import hcl2
from hcl2 import SerializationOptions
from hcl2 import parser as hcl2_parser
from hcl2.api import transform as hcl2_transform
from hcl2.postlexer import PostLexer
from hcl2.rules.base import AttributeRule, BlockRule
from hcl2.rules.strings import HeredocTrimTemplateRule
from lark import Lark
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


@functools.lru_cache(maxsize=1)
def _untracked() -> Lark | None:
    """python-hcl2's parser without position tracking: about twice as fast. Positions only put
    line numbers on problems, so a file with problems is parsed again with them. Rebuilt from
    python-hcl2's own cached tables (compiling the grammar anew takes seconds); on a lark that
    cannot do that, None: every parse tracks positions."""
    try:
        buf = io.BytesIO()
        hcl2_parser.parser().save(buf)
        buf.seek(0)
        return Lark.__new__(Lark)._load(buf, propagate_positions=False, postlex=PostLexer())
    except Exception:  # lark's loader is not public API: degrade to the slower parser
        return None


def parse(text: str, positions: bool = True) -> Parsed:
    """`positions=False` is faster; problems found in what it returns have no line numbers."""
    try:
        fast = None if positions else _untracked()
        if fast is None:
            tree = hcl2.parses(text, discard_comments=True)
        else:  # as hcl2.parses does, with the newline lark needs at the end
            tree = hcl2_transform(fast.parse(text + "\n"), discard_comments=True)
        body = tree.serialize(OPTIONS)
    except UnexpectedInput as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
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
