"""The syntax tree of HCL2 expressions and templates (what hclsyntax builds, hclexpr runs).

Every node keeps `pos`, its offset in the expression's text, so errors can name a line.
"""

from __future__ import annotations

from dataclasses import dataclass


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
