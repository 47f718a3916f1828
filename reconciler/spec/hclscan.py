"""The fast HCL path's scanner: positions, gaps (whitespace, newlines, comments), the
budget of items and depth that keeps a file near the full parser's limits off the fast path,
and the literals' escapes. The parser is hclfastexpr.py (expressions) and hclfast.py (bodies)."""

from __future__ import annotations

import bisect
import re
import time
from typing import Any

# The full parser's limits (spec/hcl.py) are counted in its own units; well below them the
# fast path declines, so a file near a limit is the full parser's to measure and report.
MAX_DEPTH = 20  # blocks, brackets, `${` and `.x`/`[i]` steps; the full parser stops at 40
TOKENS_PER_ITEM = 8  # an item (a value, label, key, step or block) is at most ~6 lark tokens

KEYWORDS = frozenset({"in", "for", "if", "for_each", "else", "endif", "endfor"})
LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
TOP_LEVEL = frozenset({"variable", "variables", "locals"})  # HCL2 blocks hclbody evaluates

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
INLINE = re.compile(r"[ \t\r]*")
DIGITS = re.compile(r"[0-9]+")
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# a run of template text up to `"`, `${`, `%{`, a newline or a bad escape
STRING_RUN = re.compile(r'(?:[^"\\$%\n]+|\\[^\n]|\$(?!\{)|%(?!\{))*')
INLINE_NO_CR = re.compile(r"[ \t]*")
# binary operators; `//` and `/*` start comments, `=`, `=>` and a lone `&` or `|` are not here
OPERATOR = re.compile(r"==|!=|<=|>=|&&|\|\||[<>+*%-]|/(?![/*])")
UNARY = frozenset(f"-{d}" for d in range(10))  # -12 and -1.5 are literals to python-hcl2
ESCAPED_UNSAFE = re.compile(r'["\\\n${%]')
HEREDOC = re.compile(r"<<(-?)([A-Za-z][A-Za-z0-9_-]*)\r?\n")
SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
UNICODE_WIDTHS = {"u": 4, "U": 8}
HEX = frozenset("0123456789abcdefABCDEF")
NEWLINE_OR_COMMENT = ("\n", "#", "//", "/*")


class Declined(Exception):
    """Not a file for the fast path (the reason helps tests); the full parser reads it."""


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
        if marker in SIMPLE_ESCAPES:
            out.append(SIMPLE_ESCAPES[marker])
            i += 2
            continue
        width = UNICODE_WIDTHS.get(marker)
        if width is not None:
            digits = value[i + 2 : i + 2 + width]
            if len(digits) == width and all(d in HEX for d in digits):
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code < 0xE000:
                    out.append(chr(code))
                    i += 2 + width
                    continue
        out.append(c + marker)
        i += 2
    return "".join(out)


class Scanner:
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
        m = INLINE.match(self.text, self.i)
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
        return self.text.startswith(NEWLINE_OR_COMMENT, i)

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
