"""The parse tree of a Go template (text/template/parse/node.go, trimmed to what we execute)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Node:
    pos: int


@dataclass(slots=True)
class Text(Node):
    text: str


@dataclass(slots=True)
class Identifier(Node):
    name: str


@dataclass(slots=True)
class Field(Node):
    idents: tuple[str, ...]


@dataclass(slots=True)
class Variable(Node):
    idents: tuple[str, ...]  # ("$x", "field", ...)


@dataclass(slots=True)
class Dot(Node):
    pass


@dataclass(slots=True)
class Nil(Node):
    pass


@dataclass(slots=True)
class Bool(Node):
    value: bool


@dataclass(slots=True)
class Number(Node):
    value: int | float
    text: str


@dataclass(slots=True)
class String(Node):
    value: str
    quoted: str


@dataclass(slots=True)
class Chain(Node):
    node: Node
    fields: tuple[str, ...]


@dataclass(slots=True)
class Command(Node):
    args: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class Pipe(Node):
    decl: list[str] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[Command] = field(default_factory=list)


@dataclass(slots=True)
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class Action(Node):
    pipe: Pipe


@dataclass(slots=True)
class Branch(Node):
    pipe: Pipe
    body: ListNode
    else_body: ListNode | None


@dataclass(slots=True)
class If(Branch):
    pass


@dataclass(slots=True)
class Range(Branch):
    pass


@dataclass(slots=True)
class With(Branch):
    pass


@dataclass(slots=True)
class TemplateCall(Node):
    name: str
    pipe: Pipe | None


@dataclass(slots=True)
class Break(Node):
    pass


@dataclass(slots=True)
class Continue(Node):
    pass


def describe(node: Node) -> str:
    """Roughly how Go prints a node in `executing ... at <...>` messages."""
    if isinstance(node, Identifier):
        return node.name
    if isinstance(node, Field):
        return "." + ".".join(node.idents)
    if isinstance(node, Variable):
        return ".".join(node.idents)
    if isinstance(node, Dot):
        return "."
    if isinstance(node, Nil):
        return "nil"
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Number):
        return node.text
    if isinstance(node, String):
        return node.quoted
    if isinstance(node, Chain):
        return describe(node.node) + "." + ".".join(node.fields)
    if isinstance(node, Command):
        return " ".join(describe(a) for a in node.args)
    if isinstance(node, Pipe):
        inner = " | ".join(describe(c) for c in node.cmds)
        if node.decl:
            inner = ", ".join(node.decl) + (" = " if node.is_assign else " := ") + inner
        return f"({inner})"
    return type(node).__name__
