"""The full HCL parser: python-hcl2 8.x on lark, for every file the fast path (spec/hclfast.py)
declines. Loaded only then (lark and python-hcl2's rules are ~11 MB of a service's memory).

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

from reconciler.spec import hcl
from reconciler.spec.hcl import HclLimitError, HclSyntaxError, Parsed
from reconciler.spec.hcloutline import Attribute, Block, Expression, Outline, index
from reconciler.spec.hclscan import TOP_LEVEL

OPTIONS = SerializationOptions(
    strip_string_quotes=True,
    explicit_blocks=False,
    with_comments=False,
    preserve_heredocs=False,
)

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
        deadline = time.thread_time() + hcl.MAX_PARSE_SECONDS
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
            if depth > hcl.MAX_DEPTH:
                raise _limit(token, f"nested more than {hcl.MAX_DEPTH} deep (each block, bracket, "
                             "${...} and chained operator counts one); not read")  # fmt: skip
            if n > hcl.MAX_TOKENS:
                raise _limit(token, f"more than {hcl.MAX_TOKENS:,} tokens; not read")
            if not n & 255 and time.thread_time() > deadline:
                raise _limit(token, f"parsing took more than {hcl.MAX_PARSE_SECONDS:g} s; stopped")
            yield token


def _limit(token: Token, message: str) -> HclLimitError:
    return HclLimitError(message, token.line, token.column, "")


# python-hcl2's heredoc patterns scan a body with `(?:.|\n)*?` followed by `\s*`: for a heredoc
# that is never closed, time grows with the square of the body (32 KB of blank lines: 3 s;
# 1 MB: hours). These match the same text a line at a time, in linear time.
_LINEAR_HEREDOC = r"\r?\n(?:[^\n]*\n)*?[^\S\n]*(?P={group})\r?\n"
_HEREDOCS = {"HEREDOC_TEMPLATE": "heredoc", "HEREDOC_TEMPLATE_TRIM": "heredoc_trim"}


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
        e.excerpt = hcl.excerpt(text, e.line, e.column) if e.line else ""
        raise
    except UnexpectedInput as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        first = first if len(first) <= 200 else first[:200] + "..."  # a token may be 1 MB long
        line = min(e.line, max(1, text.count("\n") + 1)) if e.line and e.line > 0 else None
        excerpt = hcl.excerpt(text, line, e.column) if line else ""
        raise HclSyntaxError(_friendly(first), line, e.column, excerpt) from None
    except (LarkError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        # python-hcl2 raises plain exceptions for some shapes, e.g. an attribute and a
        # block of the same name ("Attribute env is already defined.").
        raise HclSyntaxError(str(e) or type(e).__name__, None, None, "") from None
    outline = _outline(tree.body)
    return Parsed(outline, index(outline), _body_needs(tree.body, top=True), positions,
                  body if isinstance(body, dict) else {})  # fmt: skip


def _friendly(message: str) -> str:
    if "Token('$END'" in message:
        return "unexpected end of file (a block is missing its closing '}'?)"
    return "syntax error: " + message


def _outline(body: Any) -> Outline:
    out: list[Attribute | Block] = []
    for child in body.children:
        if isinstance(child, BlockRule):
            labels = [str(lbl.serialize(OPTIONS)) for lbl in child.labels]
            line = getattr(child._meta, "line", None)
            out.append(Block(labels[0], tuple(labels[1:]), line, _outline(child.body)))
        elif isinstance(child, AttributeRule):
            name = str(child.identifier.serialize(OPTIONS))
            meta = child.expression._meta
            where = Expression(
                getattr(meta, "start_pos", None),
                getattr(meta, "end_pos", None),
                getattr(meta, "line", None),
                getattr(meta, "column", None),
            )
            out.append(Attribute(name, getattr(child._meta, "line", None), where))
    return tuple(out)


# -- is there anything to evaluate? ------------------------------------------------------------
def _body_needs(body: Any, top: bool = False) -> bool:
    """False when every value in the file is a literal python-hcl2 reads exactly as HCL does."""
    for child in body.children:
        if isinstance(child, AttributeRule):
            if not _plain(child.expression):
                return True
        elif isinstance(child, BlockRule):
            kind = str(child.labels[0].serialize(OPTIONS))
            if kind == "dynamic" or (top and kind in TOP_LEVEL) or _body_needs(child.body):
                return True
    return False


def _plain(rule: Any) -> bool:
    name = rule.lark_name()
    if name == "expr_term":
        return not rule.parentheses and _plain(rule.expression)
    if name in ("int_lit", "literal_value"):
        return True
    if name == "float_lit":
        return "e" not in str(rule.token.value).lower()
    if name == "string":
        return all(p.content.lark_name() == "STRING_CHARS" for p in rule.string_parts)
    if name == "tuple":
        return all(_plain(e) for e in rule.elements)
    if name == "object":
        for elem in rule.elements:
            key = elem.key
            if key.lark_name() != "object_elem_key" or key.value.lark_name() not in (
                "identifier",
                "string",
            ):
                return False
            if key.value.lark_name() == "string" and not _plain(key.value):
                return False
            if not _plain(elem.expression):
                return False
        return True
    return False
