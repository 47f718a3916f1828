"""The fast HCL path's expressions: literals, strings with `${...}`, heredocs, lists,
objects, references and calls, each read exactly as python-hcl2 reads it or declined."""

from __future__ import annotations

import re
from typing import Any

from reconciler.spec.hclscan import (
    DIGITS,
    ESCAPED_UNSAFE,
    HEREDOC,
    KEYWORDS,
    LITERALS,
    NAME,
    NEWLINE_OR_COMMENT,
    NUMBER,
    OPERATOR,
    STRING_RUN,
    UNARY,
    Declined,
    Scanner,
    unescape,
)


class Expressions(Scanner):

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
                m = OPERATOR.match(self.text, self.i)
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
        m = NUMBER.match(text, i)
        if m is not None:
            if len(m.group()) > 60:
                raise Declined("long number")
            self.i = m.end()
            if m.group(2) or m.group() in UNARY:  # python-hcl2: "${1e3}"; -1 is an operation
                return False, None
            if m.group(1) or text[i] == "-":  # the evaluator reads 1.0 as 1, -12 as -(12)
                self.unsafe = True
            return True, float(m.group()) if m.group(1) else int(m.group())
        m = NAME.match(text, i)
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
                    m = NAME.match(text, i + 1)
                    if m is not None:
                        if m.group() in LITERALS or m.group() in KEYWORDS:
                            raise Declined("keyword attribute")
                        self.i = m.end()
                        continue
                    d = DIGITS.match(text, i + 1)
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
            if self.text.startswith(NEWLINE_OR_COMMENT, self.i):
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
                m = NAME.match(text, i)
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
            m = STRING_RUN.match(text, self.i)
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
                if close < 0 or ESCAPED_UNSAFE.search(text, i + 2, close):
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
        m = HEREDOC.match(text, self.i)
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
