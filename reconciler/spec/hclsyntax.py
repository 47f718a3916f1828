"""HCL2 native-syntax expressions -> the syntax tree of hclast (templates: hcltemplate).

python-hcl2 finds the structure of a file (blocks, attributes, where each expression starts);
this module reads the text of one expression, so that the evaluator sees exactly what the file
says (escapes, heredocs, `~` strip markers) and every node keeps its offset for error lines.
"""

from __future__ import annotations

import re

from reconciler.spec.hclast import (
    Binary,
    Call,
    Cond,
    ForExpr,
    GetAttr,
    HclSyntaxError,
    Index,
    Lit,
    Node,
    ObjectCons,
    Splat,
    Template,
    TFor,
    TIf,
    Traversal,
    TupleCons,
    Unary,
)
from reconciler.spec.hcltemplate import TemplateParser

__all__ = [
    "Binary", "Call", "Cond", "ForExpr", "GetAttr", "HclSyntaxError", "Index", "Lit", "Node",
    "ObjectCons", "Splat", "TFor", "TIf", "Template", "Traversal", "TupleCons", "Unary",
    "parse_expression",
]  # fmt: skip

MAX_DEPTH = 32  # nesting levels; keeps Python's recursion well inside its limit


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SPACE = re.compile(r"(?:[ \t\r\n]+|#[^\n]*|//[^\n]*|/\*.*?\*/)+", re.S)
_BINARY = (("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%"))


def parse_expression(src: str) -> Node:
    """One whole expression; raises HclSyntaxError."""
    p = _Parser(src)
    node = p.expression()
    p.skip()
    if p.i < len(src):
        raise HclSyntaxError(f"unexpected {src[p.i : p.i + 10]!r} after the expression", p.i)
    return node


class _Parser(TemplateParser):
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
