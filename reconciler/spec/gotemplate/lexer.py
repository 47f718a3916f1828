"""Go text/template's lexer: template text -> tokens, following text/template/parse/lex.go.

Trim markers (`{{- ` and ` -}}`), comments (`{{/* */}}`), custom delimiters and newlines
inside actions behave as in Go 1.22."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto

from reconciler.spec.gotemplate.errors import TemplateError
from reconciler.spec.gotemplate.gofmt import quote

SPACE = " \t\r\n"
KEYWORDS = frozenset(
    ["block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template",
     "with"]
)  # fmt: skip


class T(Enum):
    TEXT = auto()
    LEFT = auto()
    RIGHT = auto()
    SPACE = auto()
    IDENT = auto()
    KEYWORD = auto()
    FIELD = auto()
    VARIABLE = auto()
    STRING = auto()
    RAW_STRING = auto()
    CHAR = auto()
    NUMBER = auto()
    BOOL = auto()
    PIPE = auto()
    LPAREN = auto()
    RPAREN = auto()
    ASSIGN = auto()
    DECLARE = auto()
    COMMA = auto()
    DOT = auto()
    EOF = auto()


@dataclass(frozen=True, slots=True)
class Token:
    typ: T
    val: str
    pos: int

    def describe(self) -> str:
        if self.typ is T.EOF:
            return "EOF"
        if self.typ is T.KEYWORD:
            return f"<{self.val}>"
        if self.typ is T.SPACE:
            return "space"
        return repr(self.val) if self.typ is not T.STRING else self.val


_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[oO][0-7_]+|0[bB][01_]+"
    r"|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)i?"
)


def _is_word_char(c: str) -> bool:
    return c == "_" or c.isalnum()


class Lexer:
    def __init__(self, text: str, left: str = "{{", right: str = "}}") -> None:
        self.text = text
        self.left = left or "{{"
        self.right = right or "}}"
        self.pos = 0
        self.tokens: list[Token] = []
        self.paren_depth = 0

    def error(self, msg: str, pos: int | None = None) -> TemplateError:
        return TemplateError.at(self.text, self.pos if pos is None else pos, msg)

    def run(self) -> list[Token]:
        while self.pos < len(self.text):
            self._text()
        self.tokens.append(Token(T.EOF, "", len(self.text)))
        return self.tokens

    # -- text between actions
    def _text(self) -> None:
        text, start = self.text, self.pos
        i = text.find(self.left, start)
        if i < 0:
            self.tokens.append(Token(T.TEXT, text[start:], start))
            self.pos = len(text)
            return
        after = i + len(self.left)
        trim = text.startswith("-", after) and after + 1 < len(text) and text[after + 1] in SPACE
        chunk = text[start:i]
        if trim:
            chunk = chunk.rstrip(SPACE)
        if chunk:
            self.tokens.append(Token(T.TEXT, chunk, start))
        self.pos = after + (2 if trim else 0)
        if text.startswith("/*", self.pos):
            self._comment(i)
            return
        self.tokens.append(Token(T.LEFT, self.left, i))
        self.paren_depth = 0
        self._inside_action()

    def _comment(self, start: int) -> None:
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            raise self.error("unclosed comment", start)
        self.pos = end + 2
        at, trim = self._at_right_delim()
        if not at:
            raise self.error("comment ends before closing delimiter", start)
        self._skip_right_delim(trim)

    def _at_right_delim(self) -> tuple[bool, bool]:
        text, p = self.text, self.pos
        if (
            p + 2 <= len(text)
            and text[p] in SPACE
            and text[p + 1] == "-"
            and text.startswith(self.right, p + 2)
        ):
            return True, True
        return text.startswith(self.right, p), False

    def _skip_right_delim(self, trim: bool) -> None:
        self.pos += (2 if trim else 0) + len(self.right)
        if trim:
            while self.pos < len(self.text) and self.text[self.pos] in SPACE:
                self.pos += 1

    # -- inside {{ }}
    def _inside_action(self) -> None:
        text = self.text
        while True:
            at, trim = self._at_right_delim()
            if at:
                if self.paren_depth:
                    raise self.error("unclosed left paren")
                self.tokens.append(Token(T.RIGHT, self.right, self.pos))
                self._skip_right_delim(trim)
                return
            if self.pos >= len(text):
                raise self.error("unclosed action")
            c = text[self.pos]
            start = self.pos
            if c in SPACE:
                while self.pos < len(text) and text[self.pos] in SPACE:
                    at, _ = self._at_right_delim()
                    if at:
                        break
                    self.pos += 1
                if self.pos > start:
                    self._emit(T.SPACE, start)
                continue
            if c == "=":
                self.pos += 1
                self._emit(T.ASSIGN, start)
            elif c == ":":
                if not text.startswith(":=", self.pos):
                    raise self.error("expected :=")
                self.pos += 2
                self._emit(T.DECLARE, start)
            elif c == "|":
                self.pos += 1
                self._emit(T.PIPE, start)
            elif c == '"':
                self._quote(start)
            elif c == "`":
                end = text.find("`", self.pos + 1)
                if end < 0:
                    raise self.error("unterminated raw quoted string")
                self.pos = end + 1
                self._emit(T.RAW_STRING, start)
            elif c == "$":
                self.pos += 1
                self._word()
                self._emit(T.VARIABLE, start)
            elif c == "'":
                self._char(start)
            elif c == "." and not (self.pos + 1 < len(text) and text[self.pos + 1].isdigit()):
                self.pos += 1
                if self.pos < len(text) and _is_word_char(text[self.pos]):
                    self._word()
                    self._emit(T.FIELD, start)
                else:
                    self._emit(T.DOT, start)
            elif c in "+-." or c.isdigit():
                self._number(start)
            elif _is_word_char(c):
                self._word()
                word = text[start : self.pos]
                if word in KEYWORDS:
                    self._emit(T.KEYWORD, start)
                elif word in ("true", "false"):
                    self._emit(T.BOOL, start)
                else:
                    self._emit(T.IDENT, start)
            elif c == "(":
                self.pos += 1
                self.paren_depth += 1
                self._emit(T.LPAREN, start)
            elif c == ")":
                self.pos += 1
                self.paren_depth -= 1
                if self.paren_depth < 0:
                    raise self.error("unexpected right paren", start)
                self._emit(T.RPAREN, start)
            elif c == ",":
                self.pos += 1
                self._emit(T.COMMA, start)
            else:
                raise self.error(f"bad character {_unicode(c)}")

    def _emit(self, typ: T, start: int) -> None:
        self.tokens.append(Token(typ, self.text[start : self.pos], start))

    def _word(self) -> None:
        text = self.text
        while self.pos < len(text) and _is_word_char(text[self.pos]):
            self.pos += 1
        if not self._at_terminator():
            raise self.error(f"bad character {_unicode(text[self.pos])}")

    def _at_terminator(self) -> bool:
        if self.pos >= len(self.text):
            return True
        c = self.text[self.pos]
        if c in SPACE or c in ".,|:()=":
            return True
        return self.text.startswith(self.right, self.pos)

    def _quote(self, start: int) -> None:
        text, p = self.text, self.pos + 1
        while True:
            if p >= len(text) or text[p] == "\n":
                raise self.error("unterminated quoted string", start)
            if text[p] == "\\":
                p += 2
                continue
            if text[p] == '"':
                break
            p += 1
        self.pos = p + 1
        self._emit(T.STRING, start)

    def _char(self, start: int) -> None:
        text, p = self.text, self.pos + 1
        while True:
            if p >= len(text) or text[p] == "\n":
                raise self.error("unterminated character constant", start)
            if text[p] == "\\":
                p += 2
                continue
            if text[p] == "'":
                break
            p += 1
        self.pos = p + 1
        self._emit(T.CHAR, start)

    def _number(self, start: int) -> None:
        m = _NUMBER.match(self.text, self.pos)
        end = m.end() if m else self.pos
        if end == self.pos or (end < len(self.text) and _is_word_char(self.text[end])):
            end = max(end, self.pos + 1)
            raise self.error(f"bad number syntax: {quote(self.text[start : end + 1])}")
        self.pos = end
        self._emit(T.NUMBER, start)


def _unicode(c: str) -> str:
    return f"U+{ord(c):04X} {c!r}"


def lex(text: str, left: str = "{{", right: str = "}}") -> list[Token]:
    return Lexer(text, left, right).run()
