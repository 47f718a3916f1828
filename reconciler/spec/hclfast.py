"""The fast path for HCL files: one linear pass, no lark.

A small tokenizer and recursive-descent parser for what job files nearly always hold: blocks
with labels, attributes, and expressions made of literals (strings with escapes and `${...}`,
numbers, bools, null, heredocs, lists, objects), references (`var.x`, `NOMAD_TASK_DIR`,
`local.args[0]`) and function calls. It gives exactly what the full parser (python-hcl2 on
lark, spec/hcl.py) gives -- the same body, outline and line index -- or raises `Declined` and
the full parser reads the file. Anything outside the subset is declined, including every file
the full parser would refuse, so syntax errors and limits keep their wording and lines.
Differential fuzz tests (tests/unit/test_hclfast*.py) hold the two paths together.
"""

from __future__ import annotations

import bisect
import re
import time
from typing import Any

from reconciler.spec.hcloutline import NOT_LITERAL, Attribute, Block, Expression, Outline

# The full parser's limits (spec/hcl.py) are counted in its own units; well below them the
# fast path declines, so a file near a limit is the full parser's to measure and report.
MAX_DEPTH = 20  # blocks, brackets, `${` and `.x`/`[i]` steps; the full parser stops at 40
TOKENS_PER_ITEM = 8  # an item (a value, label, key, step or block) is at most ~6 lark tokens

KEYWORDS = frozenset({"in", "for", "if", "for_each", "else", "endif", "endfor"})
LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
TOP_LEVEL = frozenset({"variable", "variables", "locals"})  # HCL2 blocks hclbody evaluates

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INLINE = re.compile(r"[ \t\r]*")
_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# a run of template text up to `"`, `${`, `%{`, a newline or a bad escape
_STRING_RUN = re.compile(r'(?:[^"\\$%\n]+|\\[^\n]|\$(?!\{)|%(?!\{))*')
_INLINE_NO_CR = re.compile(r"[ \t]*")
# binary operators; `//` and `/*` start comments, `=`, `=>` and a lone `&` or `|` are not here
_OPERATOR = re.compile(r"==|!=|<=|>=|&&|\|\||[<>+*%-]|/(?![/*])")
_UNARY = frozenset(f"-{d}" for d in range(10))  # -12 and -1.5 are literals to python-hcl2
_ESCAPED_UNSAFE = re.compile(r'["\\\n${%]')
_HEREDOC = re.compile(r"<<(-?)([A-Za-z][A-Za-z0-9_-]*)\r?\n")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_UNICODE_WIDTHS = {"u": 4, "U": 8}
_HEX = frozenset("0123456789abcdefABCDEF")
_NEWLINE_OR_COMMENT = ("\n", "#", "//", "/*")


class Declined(Exception):
    """Not a file for the fast path (the reason helps tests); the full parser reads it."""


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


def unescape(value: str) -> str:
    """python-hcl2's reading of a quoted string's escapes: \\n \\r \\t \\" \\\\ and \\uXXXX,
    \\UXXXXXXXX (a valid code point, not a surrogate); any other escape is kept as written."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        marker = value[i + 1]
        if marker in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[marker])
            i += 2
            continue
        width = _UNICODE_WIDTHS.get(marker)
        if width is not None:
            digits = value[i + 2 : i + 2 + width]
            if len(digits) == width and all(d in _HEX for d in digits):
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code < 0xE000:
                    out.append(chr(code))
                    i += 2 + width
                    continue
        out.append(c + marker)
        i += 2
    return "".join(out)


def _nest(labels: tuple[str, ...], body: dict[str, Any]) -> dict[str, Any]:
    for label in reversed(labels):
        body = {label: body}
    return body


class _Parser:
    def __init__(self, text: str, max_tokens: int, max_seconds: float) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.depth = 0
        self.max_seconds = max_seconds
        self.started: float | None = None  # the clock is read only for files of 256+ items
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        # every newline is a token of the full parser's; each item counts for several
        self.items_left = (max_tokens // 2 - len(self.newlines)) // TOKENS_PER_ITEM
        if self.items_left < 0:
            raise Declined("near the token limit")
        self.plain = True  # every value a literal python-hcl2 reads as HCL does
        self.needs = False  # something hclbody must evaluate

    # -- positions ------------------------------------------------------------------------
    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def where(self, pos: int) -> tuple[int, int]:
        k = bisect.bisect_left(self.newlines, pos)
        start = self.newlines[k - 1] + 1 if k else 0
        return k + 1, pos - start + 1

    # -- gaps -----------------------------------------------------------------------------
    def inline(self) -> None:
        m = _INLINE.match(self.text, self.i)
        self.i = m.end() if m else self.i

    def gap(self) -> bool:
        """Skip spaces, newlines and comments; True if a newline or comment was crossed."""
        text, crossed = self.text, False
        while True:
            self.inline()
            i = self.i
            if i >= self.n:
                return crossed
            c = text[i]
            if c == "\n":
                self.i = i + 1
            elif c == "#" or text.startswith("//", i):
                end = text.find("\n", i)
                self.i = self.n if end < 0 else end
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                if end < 0:
                    raise Declined("unclosed comment")
                self.i = end + 2
                self.count()
            else:
                return crossed
            crossed = True

    def at_separator(self, after_newline: bool) -> bool:
        """After an attribute or block: the end, a newline, a comment or a closing brace."""
        self.inline()
        i = self.i
        if i >= self.n or self.text[i] == "}" or after_newline:
            return True
        return self.text.startswith(_NEWLINE_OR_COMMENT, i)

    def count(self, items: int = 1) -> None:
        self.items_left -= items
        if self.items_left < 0:
            raise Declined("near the token limit")
        if not self.items_left & 255:
            now = time.thread_time()
            self.started = now if self.started is None else self.started
            if now - self.started > self.max_seconds:
                raise Declined("slow")

    def enter(self, steps: int = 1) -> None:
        self.depth += steps
        self.count(steps)
        if self.depth > MAX_DEPTH:
            raise Declined("near the depth limit")

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
            m = _NAME.match(text, i)
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
            m = _NAME.match(text, i)
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
            i = _INLINE.match(text, end).end()  # type: ignore[union-attr]
            if i >= n:
                self.i = n
                return n + 1, True
            if text[i] == "\n":
                end = _INLINE_NO_CR.match(text, i + 1).end()  # type: ignore[union-attr]
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

    def expression(self, inline: bool) -> tuple[bool, Any]:
        """One expression at self.i (spaces skipped): (is it a plain literal, its value).
        Callers check what follows it; self.i is left just after its last token."""
        self.enter()
        try:
            plain, value, self.binary_end = self._conditional(inline)
            return plain, value
        finally:
            self.depth -= 1

    def _conditional(self, inline: bool) -> tuple[bool, Any, bool]:
        text = self.text
        plain, value, ends_binary = self._chain(inline)
        after = self.i
        self.inline()
        if not text.startswith("?", self.i):
            self.i = after
            return plain, value, ends_binary
        self.i += 1
        self.skip(inline)
        self.expression(inline)
        self.skip(inline)
        if not text.startswith(":", self.i) or text.startswith("::", self.i):
            raise Declined("odd conditional")
        self.i += 1
        self.skip(inline)
        self.expression(inline)
        return False, None, self.binary_end

    def _chain(self, inline: bool) -> tuple[bool, Any, bool]:
        """Operands joined by binary operators; each operator nests one deeper, as the full
        parser counts, until the expression ends."""
        plain, value = self._unary(inline)
        steps = 0
        try:
            while True:
                after = self.i
                self.inline()
                m = _OPERATOR.match(self.text, self.i)
                if m is None:
                    self.i = after
                    return (False, None, True) if steps else (plain, value, False)
                if m.group() == "-" and self.text[m.end() : m.end() + 1].isdigit():
                    raise Declined("a minus the lexer may read as a sign")
                self.i = m.end()
                self.enter()
                steps += 1
                self.skip(inline)  # a newline may follow an operator
                self._unary(inline)
        finally:
            self.depth -= steps

    def _unary(self, inline: bool) -> tuple[bool, Any]:
        text, i = self.text, self.i
        if (text.startswith("!", i) and not text.startswith("!=", i)) or (
            text.startswith("-", i) and not text[i + 1 : i + 2].isdigit()
        ):
            self.i = i + 1
            self.inline()
            if text.startswith(("!", "-"), self.i):
                raise Declined("two unary operators")
            self.enter()
            self._primary(inline)
            self.depth -= 1
            return False, None
        return self._primary(inline)

    def _primary(self, inline: bool) -> tuple[bool, Any]:
        text, i = self.text, self.i
        if i >= self.n:
            raise Declined("no expression")
        c = text[i]
        if c == '"':
            return self.string(inline)
        if c == "[":
            return self.list_(inline)
        if c == "{":
            return self.object(inline)
        if c == "(":
            self.i = i + 1
            self.skip(inline)
            self.expression(inline)
            self.skip(inline)
            self.expect(")")
            self.postfix(inline)
            return False, None
        if c == "<":
            if inline:
                raise Declined("heredoc in a template")
            return self.heredoc()
        m = _NUMBER.match(text, i)
        if m is not None:
            if len(m.group()) > 60:
                raise Declined("long number")
            self.i = m.end()
            if m.group(2) or m.group() in _UNARY:  # python-hcl2: "${1e3}"; -1 is an operation
                return False, None
            if m.group(1) or text[i] == "-":  # the evaluator reads 1.0 as 1, -12 as -(12)
                self.unsafe = True
            return True, float(m.group()) if m.group(1) else int(m.group())
        m = _NAME.match(text, i)
        if m is None:
            raise Declined("not an expression this path reads")
        name = m.group()
        if name in LITERALS:
            self.i = m.end()
            return True, LITERALS[name]
        if name in KEYWORDS:
            raise Declined("keyword")
        self.i = m.end()
        self.inline()
        if text.startswith("(", self.i):
            self.call(inline)
        else:
            self.i = m.end()
        self.postfix(inline)
        return False, None

    def postfix(self, inline: bool) -> None:
        """`.name`, `.0` and `[key]` steps; each nests one deeper, as the full parser counts."""
        text, steps = self.text, 0
        try:
            while True:
                i = self.i
                if text.startswith(("[*]", ".*", "::"), i):
                    raise Declined("splat or namespace")
                if text.startswith(".", i):
                    self.enter()
                    steps += 1
                    m = _NAME.match(text, i + 1)
                    if m is not None:
                        if m.group() in LITERALS or m.group() in KEYWORDS:
                            raise Declined("keyword attribute")
                        self.i = m.end()
                        continue
                    d = _DIGITS.match(text, i + 1)
                    if d is None or text.startswith(".", d.end()):
                        raise Declined("odd attribute")
                    self.i = d.end()
                    continue
                if text.startswith("[", i):
                    self.enter()
                    steps += 1
                    self.i = i + 1
                    self.skip(inline)
                    self.expression(inline)
                    self.skip(inline)
                    self.expect("]")
                    continue
                return
        finally:
            self.depth -= steps

    def skip(self, inline: bool) -> bool:
        """Where HCL allows newlines and comments (inside brackets), skip them; in a template
        (inline) only spaces."""
        if inline:
            self.inline()
            if self.text.startswith(_NEWLINE_OR_COMMENT, self.i):
                raise Declined("newline in a template")
            return False
        return self.gap()

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.i):
            raise Declined(f"expected {token}")
        self.i += len(token)

    def call(self, inline: bool) -> None:
        self.i += 1  # (
        self.skip(inline)
        text = self.text
        if text.startswith(")", self.i):
            self.i += 1
            return
        while True:
            self.expression(inline)
            self.inline()
            if text.startswith("...", self.i):
                self.i += 3
                self.skip(inline)
                self.expect(")")
                return
            if text.startswith(",", self.i):
                self.i += 1
                self.skip(inline)
                if text.startswith(")", self.i):
                    self.i += 1
                    return
                continue
            self.skip(inline)
            if text.startswith(")", self.i):
                self.i += 1
                return
            if not text.startswith(",", self.i):
                raise Declined("odd call")
            self.i += 1
            self.skip(inline)

    def list_(self, inline: bool) -> tuple[bool, Any]:
        self.i += 1
        self.skip(inline)
        text = self.text
        plain, values = True, []
        while not text.startswith("]", self.i):
            p, v = self.expression(inline)
            plain = plain and p
            values.append(v)
            self.skip(inline)
            if text.startswith(",", self.i):
                self.i += 1
                self.skip(inline)
            elif not text.startswith("]", self.i):
                raise Declined("odd list")
        self.i += 1
        return plain, values if plain else None

    def object(self, inline: bool) -> tuple[bool, Any]:
        self.unsafe = True  # the evaluator sorts an object's keys
        self.i += 1
        self.skip(inline)
        text = self.text
        plain, out = True, {}
        while not text.startswith("}", self.i):
            i = self.i
            self.count()
            if text.startswith('"', i):
                kplain, key = self.string(inline)
                plain = plain and kplain
            else:
                m = _NAME.match(text, i)
                if m is None or m.group() in LITERALS or m.group() in KEYWORDS:
                    raise Declined("odd object key")
                key = m.group()
                self.i = m.end()
            self.inline()
            j = self.i
            if (text.startswith("=", j) and not text.startswith(("==", "=>"), j)) or (
                text.startswith(":", j) and not text.startswith("::", j)
            ):
                self.i = j + 1
            else:
                raise Declined("odd object element")
            self.inline()
            p, v = self.expression(inline)
            plain = plain and p
            out[key] = v
            crossed = self.skip(inline)
            if text.startswith(",", self.i):
                self.i += 1
                self.skip(inline)
            elif not crossed and not text.startswith("}", self.i):
                raise Declined("object elements without a separator")
        self.i += 1
        return plain, out if plain else None

    def string(self, inline: bool) -> tuple[bool, Any]:
        """A quoted template; its value when it holds no `${...}`."""
        text = self.text
        self.i += 1
        parts: list[str] = []
        plain = True
        while True:
            m = _STRING_RUN.match(text, self.i)
            assert m is not None  # the pattern matches the empty string
            parts.append(m.group())
            i = self.i = m.end()
            if text.startswith('"', i):
                self.i = i + 1
                if not plain:
                    return False, None
                raw = "".join(parts)
                if "\\" in raw or "$" in raw or "%" in raw or "\r" in raw:
                    self.unsafe = True  # escapes and template marks: the evaluator's own reading
                return True, unescape(raw)
            if text.startswith(("${", "%{"), i) and text[i - 1] == text[i]:
                # `$${` and `%%{`, escaped: python-hcl2 takes up to the next `}` as one token
                if text[i - 2] in "$%\\":
                    raise Declined("an escape python-hcl2 and the evaluator may split otherwise")
                close = text.find("}", i)
                if close < 0 or _ESCAPED_UNSAFE.search(text, i + 2, close):
                    raise Declined("an escaped interpolation python-hcl2 may read across")
                plain = False
                self.i = close + 1
                continue
            if not text.startswith("${", i):
                raise Declined("directive or newline in a string")
            plain = False
            self.i = i + 2
            if text.startswith("~", self.i):
                raise Declined("strip marker")
            self.inline()
            self.expression(inline=True)
            self.inline()
            if text.startswith("~", self.i):
                raise Declined("strip marker")
            self.expect("}")

    def heredoc(self) -> tuple[bool, Any]:
        text = self.text
        m = _HEREDOC.match(text, self.i)
        if m is None:
            raise Declined("not a heredoc")
        marker = re.escape(m.group(2))
        lark_close = re.compile(r"[^\S\n]*" + marker + r"\r?")
        hcl_close = re.compile(r"[ \t]*" + marker + r"[ \t]*\r?")
        pos = m.end()
        while True:
            nl = text.find("\n", pos)
            if nl < 0:
                raise Declined("heredoc not closed by a line of its own")
            a = lark_close.fullmatch(text, pos, nl)
            b = hcl_close.fullmatch(text, pos, nl)
            if a or b:
                if not (a and b):
                    raise Declined("heredoc closing line read two ways")
                self.i = nl + 1
                return False, None
            pos = nl + 1
