"""HCL2 native-syntax expressions and templates -> a small immutable syntax tree.

python-hcl2 finds the structure of a file (blocks, attributes, where each expression starts);
this module reads the text of one expression, so that the evaluator sees exactly what the file
says (escapes, heredocs, `~` strip markers) and every node keeps its offset for error lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_DEPTH = 32  # nesting levels; keeps Python's recursion well inside its limit


class HclSyntaxError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message, self.pos = message, pos


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Lit(Node):
    value: object


@dataclass(frozen=True, slots=True)
class Traversal(Node):
    """`root.attr[0]["k"]`: a root name and static steps (what HCL calls a scope traversal)."""

    root: str
    steps: tuple[str | int, ...]  # str: attribute or string key; int: numeric index
    text: str


@dataclass(frozen=True, slots=True)
class GetAttr(Node):
    obj: Node
    name: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    obj: Node
    key: Node


@dataclass(frozen=True, slots=True)
class Splat(Node):
    """`obj[*].a[0]` (full) or `obj.*.a` (attribute-only): `each` applies to every element."""

    obj: Node
    each: tuple[tuple[str, object], ...]  # ("attr", name) | ("index", Node)


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]
    expand: bool  # the last argument was written `xs...`


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Cond(Node):
    cond: Node
    then: Node
    other: Node


@dataclass(frozen=True, slots=True)
class TupleCons(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ObjectCons(Node):
    items: tuple[tuple[Node, Node], ...]  # a bare identifier key is a Lit string


@dataclass(frozen=True, slots=True)
class ForExpr(Node):
    key_var: str | None
    val_var: str
    coll: Node
    key: Node | None  # None: a tuple `[for ...]`
    value: Node
    cond: Node | None
    group: bool


@dataclass(frozen=True, slots=True)
class Template(Node):
    parts: tuple[Node, ...]  # Lit str, any expression (interpolation), TIf, TFor


@dataclass(frozen=True, slots=True)
class TIf(Node):
    cond: Node
    then: Template
    other: Template


@dataclass(frozen=True, slots=True)
class TFor(Node):
    key_var: str | None
    val_var: str
    coll: Node
    body: Template


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SPACE = re.compile(r"(?:[ \t\r\n]+|#[^\n]*|//[^\n]*|/\*.*?\*/)+", re.S)
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_-]*)\r?\n")
_OPS = (
    "...", "=>", "==", "!=", "<=", ">=", "&&", "||", "[*]", ".*",
    "!", "<", ">", "+", "-", "*", "/", "%", "?", ":", ".", ",",
    "[", "]", "(", ")", "{", "}", "=",
)  # fmt: skip
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_BINARY = (("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%"))


def parse_expression(src: str) -> Node:
    """One whole expression; raises HclSyntaxError."""
    p = _Parser(src)
    node = p.expression()
    p.skip()
    if p.i < len(src):
        raise HclSyntaxError(f"unexpected {src[p.i : p.i + 10]!r} after the expression", p.i)
    return node


def parse_template(src: str) -> Template:
    """Text with `${}` and `%{}` (a var-less heredoc body, a NOMAD_VAR_ value)."""
    return _Parser(src).template_until(len(src), heredoc=True, start=0)


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.depth = 0

    # -- lexing helpers -------------------------------------------------------------------
    def skip(self) -> None:
        m = _SPACE.match(self.src, self.i)
        if m:
            self.i = m.end()

    def peek(self, *tokens: str) -> str | None:
        self.skip()
        for t in tokens:
            if self.src.startswith(t, self.i):
                return t
        return None

    def accept(self, token: str) -> bool:
        if self.peek(token) == token:
            self.i += len(token)
            return True
        return False

    def expect(self, token: str, what: str = "") -> None:
        if not self.accept(token):
            found = self.src[self.i : self.i + 10] or "end of expression"
            raise HclSyntaxError(f"expected {token!r}{what}, found {found!r}", self.i)

    def ident(self) -> str | None:
        self.skip()
        m = _IDENT.match(self.src, self.i)
        if m is None:
            return None
        self.i = m.end()
        return m.group(0)

    def keyword(self, word: str) -> bool:
        self.skip()
        m = _IDENT.match(self.src, self.i)
        if m and m.group(0) == word:
            self.i = m.end()
            return True
        return False

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise HclSyntaxError(f"expression nested deeper than {MAX_DEPTH} levels", self.i)

    # -- expressions ----------------------------------------------------------------------
    def expression(self) -> Node:
        self.enter()
        try:
            self.skip()
            pos = self.i
            cond = self.binary(0)
            if self.accept("?"):
                then = self.expression()
                self.expect(":", " in a conditional")
                other = self.expression()
                return Cond(pos, cond, then, other)
            return cond
        finally:
            self.depth -= 1

    def binary(self, level: int) -> Node:
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        ops = sorted(_BINARY[level], key=len, reverse=True)
        while True:
            op = self.peek(*ops)
            if op is None:
                return left
            self.i += len(op)
            right = self.binary(level + 1)
            left = Binary(left.pos, op, left, right)

    def unary(self) -> Node:
        op = self.peek("!", "-")
        if op is not None:
            pos = self.i
            self.i += 1
            self.enter()
            try:
                return Unary(pos, op, self.unary())
            finally:
                self.depth -= 1
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            self.skip()
            if self.src.startswith("[*]", self.i):
                self.i += 3
                node = Splat(node.pos, node, self.splat_steps(full=True))
            elif self.src.startswith(".*", self.i):
                self.i += 2
                node = Splat(node.pos, node, self.splat_steps(full=False))
            elif self.src.startswith(".", self.i) and not self.src.startswith("...", self.i):
                self.i += 1
                node = self.attr_step(node)
            elif self.src.startswith("[", self.i):
                self.i += 1
                key = self.expression()
                self.expect("]")
                node = self.index_step(node, key)
            else:
                return node

    def attr_step(self, node: Node) -> Node:
        self.skip()
        m = _NUMBER.match(self.src, self.i)
        if m and m.group(1) is None and m.group(2) is None:  # legacy `list.0`
            self.i = m.end()
            return self.index_step(node, Lit(m.start(), int(m.group(0))))
        name = self.ident()
        if name is None:
            raise HclSyntaxError("expected an attribute name after '.'", self.i)
        if isinstance(node, Traversal):
            return Traversal(node.pos, node.root, (*node.steps, name), f"{node.text}.{name}")
        return GetAttr(node.pos, node, name)

    def index_step(self, node: Node, key: Node) -> Node:
        if isinstance(node, Traversal) and isinstance(key, Lit):
            v = key.value
            if isinstance(v, int) and not isinstance(v, bool):
                return Traversal(node.pos, node.root, (*node.steps, v), f"{node.text}[{v}]")
            if isinstance(v, str):
                text = f'{node.text}["{v}"]'
                return Traversal(node.pos, node.root, (*node.steps, v), text)
        return Index(node.pos, node, key)

    def splat_steps(self, full: bool) -> tuple[tuple[str, object], ...]:
        steps: list[tuple[str, object]] = []
        while True:
            self.skip()
            if self.src.startswith(".", self.i) and not self.src.startswith((".*", "..."), self.i):
                self.i += 1
                name = self.ident()
                if name is None:
                    raise HclSyntaxError("expected an attribute name after '.'", self.i)
                steps.append(("attr", name))
            elif (
                full and self.src.startswith("[", self.i) and not self.src.startswith("[*]", self.i)
            ):
                self.i += 1
                key = self.expression()
                self.expect("]")
                steps.append(("index", key))
            else:
                return tuple(steps)

    def primary(self) -> Node:
        self.skip()
        pos = self.i
        src = self.src
        if pos >= len(src):
            raise HclSyntaxError("expected an expression, found the end", pos)
        c = src[pos]
        m = _NUMBER.match(src, pos)
        if m is not None:
            self.i = m.end()
            text = m.group(0)
            value: object = float(text) if (m.group(1) or m.group(2)) else int(text)
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                value = int(value)
            return Lit(pos, value)
        if c == '"':
            self.i += 1
            tpl = self.template_until(-1, heredoc=False, start=pos)
            if all(isinstance(p, Lit) for p in tpl.parts):  # a plain string
                return Lit(pos, "".join(str(p.value) for p in tpl.parts))  # type: ignore[attr-defined]
            return tpl
        if src.startswith("<<", pos):
            return self.heredoc()
        if c == "(":
            self.i += 1
            inner = self.expression()
            self.expect(")")
            return inner
        if c == "[":
            return self.tuple_or_for()
        if c == "{":
            return self.object_or_for()
        name = self.ident()
        if name is None:
            raise HclSyntaxError(f"unexpected {src[pos : pos + 10]!r}", pos)
        if name in ("true", "false"):
            return Lit(pos, name == "true")
        if name == "null":
            return Lit(pos, None)
        self.skip()
        if self.src.startswith("::", self.i):
            raise HclSyntaxError(f"function namespaces ({name}::) are not supported", pos)
        if self.src.startswith("(", self.i):
            self.i += 1
            return self.call(pos, name)
        return Traversal(pos, name, (), name)

    def call(self, pos: int, name: str) -> Node:
        args: list[Node] = []
        expand = False
        while not self.accept(")"):
            args.append(self.expression())
            if self.accept("..."):
                expand = True
                self.expect(")", " after '...'")
                break
            if not self.accept(","):
                self.expect(")", f" closing the call to {name}()")
                break
        return Call(pos, name, tuple(args), expand)

    def for_intro(self) -> tuple[str | None, str, Node]:
        first = self.ident()
        if first is None:
            raise HclSyntaxError("expected a variable name after 'for'", self.i)
        second = self.ident() if self.accept(",") else None
        if not self.keyword("in"):
            raise HclSyntaxError("expected 'in' in a for expression", self.i)
        coll = self.expression()
        self.expect(":", " after the collection of a for expression")
        if second is None:
            return None, first, coll
        return first, second, coll

    def _is_for(self) -> bool:
        """`for x ...` starts a for expression; `for = 1` is an object key named for."""
        save = self.i
        is_for = self.keyword("for") and self.ident() is not None
        self.i = save
        return is_for

    def tuple_or_for(self) -> Node:
        pos = self.i
        self.i += 1
        self.enter()
        try:
            if self._is_for():
                self.keyword("for")
                key_var, val_var, coll = self.for_intro()
                value = self.expression()
                cond = self.expression() if self.keyword("if") else None
                self.expect("]", " closing the for expression")
                return ForExpr(pos, key_var, val_var, coll, None, value, cond, False)
            items: list[Node] = []
            while not self.accept("]"):
                items.append(self.expression())
                if not self.accept(","):
                    self.expect("]", " or ',' in the list")
                    break
            return TupleCons(pos, tuple(items))
        finally:
            self.depth -= 1

    def object_or_for(self) -> Node:
        pos = self.i
        self.i += 1
        self.enter()
        try:
            if self._is_for():
                self.keyword("for")
                key_var, val_var, coll = self.for_intro()
                key = self.expression()
                self.expect("=>", " in an object for expression")
                value = self.expression()
                group = self.accept("...")
                cond = self.expression() if self.keyword("if") else None
                self.expect("}", " closing the for expression")
                return ForExpr(pos, key_var, val_var, coll, key, value, cond, group)
            items: list[tuple[Node, Node]] = []
            while not self.accept("}"):
                self.skip()
                kpos = self.i
                key = self.expression()
                bare = not self.src.startswith("(", kpos)
                if bare and isinstance(key, Traversal) and not key.steps:
                    key = Lit(kpos, key.root)  # `{ name = 1 }`: a bare word is a string
                if not (self.accept("=") or self.accept(":")):
                    raise HclSyntaxError("expected '=' or ':' after an object key", self.i)
                items.append((key, self.expression()))
                self.accept(",")
            return ObjectCons(pos, tuple(items))
        finally:
            self.depth -= 1

    # -- templates ------------------------------------------------------------------------
    def heredoc(self) -> Node:
        pos = self.i
        m = _HEREDOC.match(self.src, pos)
        if m is None:
            raise HclSyntaxError("a heredoc starts with <<NAME or <<-NAME and a newline", pos)
        trim, marker = m.group(1) == "-", m.group(2)
        body_start = m.end()
        close = re.compile(r"^[ \t]*" + re.escape(marker) + r"[ \t]*\r?$", re.M)
        end = close.search(self.src, body_start)
        if end is None:
            raise HclSyntaxError(f"heredoc {marker} is never closed", pos)
        self.i = end.end()
        sub = _Parser(self.src)
        sub.i = body_start
        tpl = sub.template_until(end.start(), heredoc=True, start=pos)
        if trim:
            body = self.src[body_start : end.start()].split("\n")
            indents = [len(ln) - len(ln.lstrip(" \t")) for ln in body if ln.strip()]
            tpl = _dedent(tpl, self.src, body_start, min(indents) if indents else 0)
        return tpl

    def template_until(self, end: int, heredoc: bool, start: int) -> Template:
        """Template parts up to `end` (heredoc) or the closing quote (end < 0)."""
        parts, _ = self._template_parts(end, heredoc, stop=())
        return Template(start, tuple(_merge(parts)))

    def _template_parts(
        self, end: int, heredoc: bool, stop: tuple[str, ...]
    ) -> tuple[list[Node], str | None]:
        """Parts until the end, or until a directive named in `stop` (returned, consumed)."""
        parts: list[Node] = []
        buf: list[str] = []
        text_pos = self.i
        src = self.src
        limit = end if end >= 0 else len(src)

        def flush() -> None:
            if buf:
                parts.append(Lit(text_pos, "".join(buf)))
                buf.clear()

        while True:
            if self.i >= limit:
                if end < 0:
                    raise HclSyntaxError("unterminated string", self.i)
                flush()
                if stop:
                    raise HclSyntaxError(f"missing %{{{stop[0]}}}", self.i)
                return parts, None
            c = src[self.i]
            if end < 0 and c == '"':
                self.i += 1
                flush()
                if stop:
                    raise HclSyntaxError(f"missing %{{{stop[0]}}}", self.i)
                return parts, None
            if end < 0 and c == "\n":
                raise HclSyntaxError("a quoted string cannot span lines (use a heredoc)", self.i)
            if src.startswith("$${", self.i) or src.startswith("%%{", self.i):
                buf.append(c + "{")
                self.i += 3
                continue
            if src.startswith("${", self.i):
                flush()
                self.i += 2
                strip_left = self._strip_marker()
                expr = self.expression()
                strip_right = self._close_directive()
                if strip_left:
                    _rstrip_last(parts)
                parts.append(expr)
                if strip_right:
                    self._skip_template_space(limit)
                text_pos = self.i
                continue
            if src.startswith("%{", self.i):
                flush()
                dpos = self.i
                self.i += 2
                strip_left = self._strip_marker()
                if strip_left:
                    _rstrip_last(parts)
                word = self.ident() or ""
                if word in stop:
                    strip_right = self._close_directive()
                    if strip_right:
                        self._skip_template_space(limit)
                    return parts, word
                if word == "if":
                    parts.append(self._if_directive(dpos, end, heredoc, limit))
                elif word == "for":
                    parts.append(self._for_directive(dpos, end, heredoc, limit))
                else:
                    raise HclSyntaxError(f"unexpected template directive %{{{word}}}", dpos)
                text_pos = self.i
                continue
            if c == "\\" and not heredoc:
                buf.append(self._escape())
                continue
            buf.append(c)
            self.i += 1

    def _if_directive(self, pos: int, end: int, heredoc: bool, limit: int) -> Node:
        self.enter()
        try:
            cond = self.expression()
            if self._close_directive():
                self._skip_template_space(limit)
            then, word = self._template_parts(end, heredoc, stop=("else", "endif"))
            other: list[Node] = []
            if word == "else":
                other, _ = self._template_parts(end, heredoc, stop=("endif",))
            return TIf(
                pos, cond, Template(pos, tuple(_merge(then))), Template(pos, tuple(_merge(other)))
            )
        finally:
            self.depth -= 1

    def _for_directive(self, pos: int, end: int, heredoc: bool, limit: int) -> Node:
        self.enter()
        try:
            first = self.ident()
            if first is None:
                raise HclSyntaxError("expected a variable name after %{for", self.i)
            second = self.ident() if self.accept(",") else None
            if not self.keyword("in"):
                raise HclSyntaxError("expected 'in' in %{for}", self.i)
            coll = self.expression()
            if self._close_directive():
                self._skip_template_space(limit)
            body, _ = self._template_parts(end, heredoc, stop=("endfor",))
            key_var, val_var = (first, second) if second is not None else (None, first)
            return TFor(pos, key_var, val_var, coll, Template(pos, tuple(_merge(body))))
        finally:
            self.depth -= 1

    def _strip_marker(self) -> bool:
        if self.src.startswith("~", self.i):
            self.i += 1
            return True
        return False

    def _close_directive(self) -> bool:
        """`}` or `~}`; True for the strip marker."""
        self.skip()
        if self.src.startswith("~}", self.i):
            self.i += 2
            return True
        self.expect("}", " closing the template sequence")
        return False

    def _skip_template_space(self, limit: int) -> None:
        while self.i < limit and self.src[self.i] in " \t\r\n":
            self.i += 1

    def _escape(self) -> str:
        src, i = self.src, self.i
        nxt = src[i + 1 : i + 2]
        if nxt in _ESCAPES:
            self.i += 2
            return _ESCAPES[nxt]
        if nxt in ("u", "U"):
            width = 4 if nxt == "u" else 8
            digits = src[i + 2 : i + 2 + width]
            if len(digits) == width and all(d in "0123456789abcdefABCDEF" for d in digits):
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    self.i += 2 + width
                    return chr(code)
            raise HclSyntaxError(f"invalid unicode escape \\{nxt}{digits}", i)
        raise HclSyntaxError(f"invalid escape sequence \\{nxt}", i)


def _merge(parts: list[Node]) -> list[Node]:
    out: list[Node] = []
    for p in parts:
        if isinstance(p, Lit) and out and isinstance(out[-1], Lit):
            prev = out[-1]
            out[-1] = Lit(prev.pos, str(prev.value) + str(p.value))
        elif not (isinstance(p, Lit) and p.value == ""):
            out.append(p)
    return out


def _rstrip_last(parts: list[Node]) -> None:
    last = parts[-1] if parts else None
    if isinstance(last, Lit) and isinstance(last.value, str):
        parts[-1] = Lit(last.pos, last.value.rstrip(" \t\r\n"))


def _dedent(tpl: Template, src: str, body_start: int, cut: int) -> Template:
    """`<<-`: remove the common indentation from the start of every literal line."""
    parts: list[Node] = []
    for p in tpl.parts:
        if isinstance(p, Lit) and isinstance(p.value, str):
            lines = p.value.split("\n")
            at_start = p.pos == body_start or src[p.pos - 1 : p.pos] == "\n"
            for k, line in enumerate(lines):
                if k > 0 or at_start:
                    n = len(line) - len(line.lstrip(" \t"))
                    lines[k] = line[min(n, cut) :]
            parts.append(Lit(p.pos, "\n".join(lines)))
        elif isinstance(p, TIf):
            then = _dedent(p.then, src, body_start, cut)
            parts.append(TIf(p.pos, p.cond, then, _dedent(p.other, src, body_start, cut)))
        elif isinstance(p, TFor):
            body = _dedent(p.body, src, body_start, cut)
            parts.append(TFor(p.pos, p.key_var, p.val_var, p.coll, body))
        else:
            parts.append(p)
    return Template(tpl.pos, tuple(parts))
