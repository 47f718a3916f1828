"""Tokens -> parse trees, following text/template/parse/parse.go: one main tree plus every
`{{define}}`d and `{{block}}` template, variables checked for declaration, function names
checked against what the caller offers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.spec.gotemplate import nodes as n
from reconciler.spec.gotemplate.errors import TemplateError
from reconciler.spec.gotemplate.gofmt import quote
from reconciler.spec.gotemplate.lexer import T, Token, lex
from reconciler.spec.gotemplate.literals import parse_number, unquote_go


@dataclass
class Parsed:
    text: str
    root: n.ListNode
    defined: dict[str, n.ListNode] = field(default_factory=dict)
    functions: list[tuple[str, n.Command]] = field(default_factory=list)  # (name, call site)


class _End(n.Node):
    __slots__ = ()


class _Else(n.Node):
    __slots__ = ()


class Parser:
    def __init__(self, text: str, tokens: list[Token], known: Callable[[str], str | None]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.known = known  # function name -> None if callable, else why not
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.out = Parsed(text, n.ListNode(0))

    def error(self, msg: str, pos: int | None = None) -> TemplateError:
        if pos is None:
            pos = self.tokens[max(0, self.i - 1)].pos
        return TemplateError.at(self.text, pos, msg)

    # -- token stream
    def next(self) -> Token:
        tok = self.tokens[self.i]
        if tok.typ is not T.EOF:
            self.i += 1
        return tok

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next_non_space(self) -> Token:
        tok = self.next()
        while tok.typ is T.SPACE:
            tok = self.next()
        return tok

    def peek_non_space(self) -> Token:
        while self.tokens[self.i].typ is T.SPACE:
            self.i += 1
        return self.tokens[self.i]

    def backup(self, count: int = 1) -> None:
        self.i -= count

    def expect(self, typ: T, context: str) -> Token:
        tok = self.next_non_space()
        if tok.typ is not typ:
            raise self.unexpected(tok, context)
        return tok

    def unexpected(self, tok: Token, context: str) -> TemplateError:
        return self.error(f"unexpected {tok.describe()} in {context}", tok.pos)

    # -- top level
    def parse(self) -> Parsed:
        root = self.out.root
        while self.peek().typ is not T.EOF:
            if self.peek().typ is T.LEFT:
                save = self.i
                self.next()
                tok = self.next_non_space()
                if tok.typ is T.KEYWORD and tok.val == "define":
                    self.definition(tok)
                    continue
                self.i = save
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                raise self.error(
                    f"unexpected {{{{{'end' if isinstance(node, _End) else 'else'}}}}}", node.pos
                )
            root.nodes.append(node)
        return self.out

    def definition(self, tok: Token) -> None:
        context = "define clause"
        name = self.template_name(self.next_non_space(), context)
        self.expect(T.RIGHT, context)
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, _End):
            raise self.error(f"unexpected {{{{else}}}} in {context}", end.pos)
        self.add_template(name, body, tok.pos)

    def add_template(self, name: str, body: n.ListNode, pos: int) -> None:
        old = self.out.defined.get(name)
        if old is not None and _non_empty(old) and _non_empty(body):
            raise self.error(f"template: multiple definition of template {quote(name)}", pos)
        if old is None or _non_empty(body):
            self.out.defined[name] = body

    def item_list(self) -> tuple[n.ListNode, n.Node]:
        lst = n.ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ is not T.EOF:
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                return lst, node
            lst.nodes.append(node)
        raise self.error("unexpected EOF", len(self.text))

    def text_or_action(self) -> n.Node:
        tok = self.next_non_space()
        if tok.typ is T.TEXT:
            return n.Text(tok.pos, tok.val)
        if tok.typ is T.LEFT:
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> n.Node:
        tok = self.next_non_space()
        if tok.typ is T.KEYWORD:
            kw = tok.val
            if kw == "block":
                return self.block_control(tok)
            if kw in ("break", "continue"):
                nxt = self.next_non_space()
                if nxt.typ is not T.RIGHT:
                    raise self.unexpected(nxt, f"{{{{{kw}}}}}")
                if not self.range_depth:
                    raise self.error(f"{{{{{kw}}}}} outside {{{{range}}}}", tok.pos)
                return n.Break(tok.pos) if kw == "break" else n.Continue(tok.pos)
            if kw == "else":
                peek = self.peek_non_space()
                if peek.typ is T.KEYWORD and peek.val in ("if", "with"):
                    return _Else(peek.pos)
                return _Else(self.expect(T.RIGHT, "else").pos)
            if kw == "end":
                return _End(self.expect(T.RIGHT, "end").pos)
            if kw in ("if", "range", "with"):
                return self.control(kw, tok.pos)
            if kw == "template":
                return self.template_control(tok)
        self.backup()
        return n.Action(tok.pos, self.pipeline("command", T.RIGHT))

    def control(self, context: str, pos: int) -> n.Node:
        mark = len(self.vars)
        pipe = self.pipeline(context, T.RIGHT)
        if context == "range":
            self.range_depth += 1
        body, nxt = self.item_list()
        if context == "range":
            self.range_depth -= 1
        else_body: n.ListNode | None = None
        if isinstance(nxt, _Else):
            peek = self.peek()
            if context in ("if", "with") and peek.typ is T.KEYWORD and peek.val == context:
                self.next()
                else_body = n.ListNode(nxt.pos, [self.control(context, peek.pos)])
            else:
                else_body, nxt = self.item_list()
                if not isinstance(nxt, _End):
                    raise self.error("expected end; found {{else}}", nxt.pos)
        del self.vars[mark:]
        cls = {"if": n.If, "range": n.Range, "with": n.With}[context]
        return cls(pos, pipe, body, else_body)

    def template_name(self, tok: Token, context: str) -> str:
        if tok.typ in (T.STRING, T.RAW_STRING):
            return self.unquote(tok)
        raise self.unexpected(tok, context)

    def template_control(self, tok: Token) -> n.Node:
        context = "template clause"
        name_tok = self.next_non_space()
        name = self.template_name(name_tok, context)
        pipe = None
        if self.next_non_space().typ is not T.RIGHT:
            self.backup()
            pipe = self.pipeline(context, T.RIGHT)
        return n.TemplateCall(name_tok.pos, name, pipe)

    def block_control(self, tok: Token) -> n.Node:
        context = "block clause"
        name_tok = self.next_non_space()
        name = self.template_name(name_tok, context)
        pipe = self.pipeline(context, T.RIGHT)
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, end = self.item_list()
        self.vars, self.range_depth = saved_vars, saved_depth
        if not isinstance(end, _End):
            raise self.error(f"unexpected {{{{else}}}} in {context}", end.pos)
        self.add_template(name, body, tok.pos)
        return n.TemplateCall(name_tok.pos, name, pipe)

    # -- pipelines
    def pipeline(self, context: str, end: T) -> n.Pipe:
        pipe = n.Pipe(self.peek_non_space().pos)
        while self.peek_non_space().typ is T.VARIABLE:
            start = self.i
            v = self.next()
            nxt = self.peek_non_space()
            if nxt.typ in (T.ASSIGN, T.DECLARE):
                pipe.is_assign = nxt.typ is T.ASSIGN
                self.next_non_space()
                pipe.decl.append(v.val)
                self.vars.append(v.val)
                break
            if nxt.typ is T.COMMA:
                self.next_non_space()
                pipe.decl.append(v.val)
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (T.VARIABLE, T.RIGHT, T.RPAREN):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            self.i = start  # `$x` starts a command
            break
        while True:
            tok = self.next_non_space()
            if tok.typ is end:
                if not pipe.cmds:
                    raise self.error(f"missing value for {context}", tok.pos)
                for i, cmd in enumerate(pipe.cmds[1:]):
                    if isinstance(cmd.args[0], n.Bool | n.Dot | n.Nil | n.Number | n.String):
                        raise self.error(
                            f"non executable command in pipeline stage {i + 2}", cmd.pos
                        )
                return pipe
            if tok.typ in _OPERAND_START or (tok.typ is T.KEYWORD and tok.val == "nil"):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(tok, context)

    def command(self) -> n.Command:
        cmd = n.Command(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.typ is T.SPACE:
                continue
            if tok.typ in (T.RIGHT, T.RPAREN):
                self.backup()
            elif tok.typ is not T.PIPE:
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.error("empty command", cmd.pos)
        first = cmd.args[0]
        if isinstance(first, n.Identifier):
            self.out.functions.append((first.name, cmd))
        return cmd

    def operand(self) -> n.Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ is T.FIELD:
            fields: list[str] = []
            pos = self.peek().pos
            while self.peek().typ is T.FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, n.Field):
                return n.Field(node.pos, (*node.idents, *fields))
            if isinstance(node, n.Variable):
                return n.Variable(node.pos, (*node.idents, *fields))
            if isinstance(node, n.Bool | n.String | n.Number | n.Nil | n.Dot):
                raise self.error(f"unexpected . after term {quote(n.describe(node))}", pos)
            return n.Chain(node.pos, node, tuple(fields))
        return node

    def term(self) -> n.Node | None:
        tok = self.next_non_space()
        typ = tok.typ
        if typ is T.IDENT:
            why = self.known(tok.val)
            if why is not None:
                raise self.error(why, tok.pos)
            return n.Identifier(tok.pos, tok.val)
        if typ is T.DOT:
            return n.Dot(tok.pos)
        if typ is T.KEYWORD and tok.val == "nil":
            return n.Nil(tok.pos)
        if typ is T.VARIABLE:
            if tok.val not in self.vars:
                raise self.error(f"undefined variable {quote(tok.val)}", tok.pos)
            return n.Variable(tok.pos, (tok.val,))
        if typ is T.FIELD:
            return n.Field(tok.pos, (tok.val[1:],))
        if typ is T.BOOL:
            return n.Bool(tok.pos, tok.val == "true")
        if typ in (T.NUMBER, T.CHAR):
            return n.Number(tok.pos, self.number(tok), tok.val)
        if typ is T.LPAREN:
            return self.pipeline("parenthesized pipeline", T.RPAREN)
        if typ in (T.STRING, T.RAW_STRING):
            return n.String(tok.pos, self.unquote(tok), tok.val)
        self.backup()
        return None

    # -- constants
    def unquote(self, tok: Token) -> str:
        if tok.typ is T.RAW_STRING:
            return tok.val[1:-1].replace("\r", "")
        try:
            return unquote_go(tok.val[1:-1], '"')
        except ValueError as e:
            raise self.error(f"invalid syntax in {tok.val}: {e}", tok.pos) from None

    def number(self, tok: Token) -> int | float:
        if tok.typ is T.CHAR:
            try:
                s = unquote_go(tok.val[1:-1], "'")
            except ValueError as e:
                raise self.error(f"malformed character constant: {tok.val}: {e}", tok.pos) from None
            if len(s) != 1:
                raise self.error(f"malformed character constant: {tok.val}", tok.pos)
            return ord(s)
        try:
            return parse_number(tok.val)
        except ValueError as e:
            raise self.error(str(e), tok.pos) from None


_OPERAND_START = frozenset(
    [T.BOOL, T.CHAR, T.DOT, T.FIELD, T.IDENT, T.NUMBER, T.RAW_STRING, T.STRING, T.VARIABLE,
     T.LPAREN]
)  # fmt: skip


def _non_empty(body: n.ListNode) -> bool:
    return any(not (isinstance(x, n.Text) and not x.text.strip()) for x in body.nodes)


def parse(text: str, known: Callable[[str], str | None], left: str = "{{",
          right: str = "}}") -> Parsed:  # fmt: skip
    return Parser(text, lex(text, left, right), known).parse()
