"""Executing a parsed template, following text/template/exec.go: pipelines, variables, field
chains on maps, if/with/range (break, continue, else), template calls, missingkey."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.spec.gotemplate import nodes as n
from reconciler.spec.gotemplate.errors import TemplateError
from reconciler.spec.gotemplate.funcs import (
    GO_KIND,
    Func,
    Loop,
    _short_circuit,
    fits,
    truth,
)
from reconciler.spec.gotemplate.gofmt import (
    MISSING,
    GoValue,
    quote,
    sorted_keys,
    sprint_value,
    type_name,
)
from reconciler.spec.gotemplate.parser import Parsed

MAX_DEPTH = 100
MAX_OUTPUT = 16 << 20
MAX_STEPS = 1_000_000


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _NoFinal:
    pass


NO_FINAL = _NoFinal()


class State:
    def __init__(self, parsed: Parsed, funcs: Mapping[str, Func], missing_error: bool) -> None:
        self.parsed = parsed
        self.funcs = funcs
        self.missing_error = missing_error
        self.vars: list[list[Any]] = []
        self.depth = 0
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.node: n.Node | None = None

    def error(self, msg: str, node: n.Node | None = None) -> TemplateError:
        node = node or self.node
        if node is None:
            return TemplateError(msg)
        err = TemplateError.at(self.parsed.text, node.pos, msg)
        return err

    def at(self, node: n.Node) -> None:
        self.node = node

    def write(self, s: str) -> None:
        self.size += len(s)
        if self.size > MAX_OUTPUT:
            raise self.error(f"output is larger than {MAX_OUTPUT >> 20} MiB")
        self.out.append(s)

    # -- variables
    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def set_var(self, name: str, value: Any) -> None:
        for var in reversed(self.vars):
            if var[0] == name:
                var[1] = value
                return
        raise self.error(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        for var in reversed(self.vars):
            if var[0] == name:
                return var[1]
        raise self.error(f"undefined variable: {name}")

    # -- walking
    def walk(self, dot: Any, node: n.Node) -> None:
        self.at(node)
        if isinstance(node, n.Text):
            self.write(node.text)
        elif isinstance(node, n.ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, n.Action):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.at(node)
                self.write(sprint_value(val, top=True))
        elif isinstance(node, n.If | n.With):
            mark = len(self.vars)
            val = self.eval_pipeline(dot, node.pipe)
            if truth(val):
                self.walk(val if isinstance(node, n.With) else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
            del self.vars[mark:]
        elif isinstance(node, n.Range):
            self.walk_range(dot, node)
        elif isinstance(node, n.TemplateCall):
            self.walk_template(dot, node)
        elif isinstance(node, n.Break):
            raise _Break
        elif isinstance(node, n.Continue):
            raise _Continue
        else:
            raise self.error(f"unknown node: {type(node).__name__}")

    def walk_range(self, dot: Any, node: n.Range) -> None:
        mark = len(self.vars)
        val = self.eval_pipeline(dot, node.pipe)
        decl = node.pipe.decl
        body_mark = len(self.vars)

        def one(index: Any, elem: Any) -> bool:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise self.error(f"range ran more than {MAX_STEPS} iterations")
            if decl:
                if node.pipe.is_assign:
                    self.set_var(decl[0], index if len(decl) > 1 else elem)
                else:
                    self.vars[body_mark - 1][1] = elem
            if len(decl) > 1:
                if node.pipe.is_assign:
                    self.set_var(decl[1], elem)
                else:
                    self.vars[body_mark - 2][1] = index
            try:
                self.walk(elem, node.body)
            except _Continue:
                pass
            except _Break:
                return False
            finally:
                del self.vars[body_mark:]
            return True

        ran = False
        if isinstance(val, list | tuple):
            ran = bool(val)
            for i, elem in enumerate(val):
                if not one(i, elem):
                    break
        elif isinstance(val, Mapping):
            ran = bool(val)
            for key in sorted_keys(val):
                if not one(key, val[key]):
                    break
        elif isinstance(val, int) and not isinstance(val, bool):
            if len(decl) > 1:
                raise self.error(f"can't use {val} to iterate over more than one variable")
            ran = val > 0
            for i in range(min(val, MAX_STEPS + 1)):
                if not one(i, i):
                    break
        elif isinstance(val, Loop):
            if len(decl) > 1:
                raise self.error("can't use a channel to iterate over more than one variable")
            ran = val.stop > val.start
            for i in range(val.start, min(val.stop, val.start + MAX_STEPS + 1)):
                if not one(i, i):
                    break
        elif val is MISSING or val is None:
            pass
        else:
            raise self.error(f"range can't iterate over {sprint_value(val)}")
        if not ran and node.else_body is not None:
            self.walk(dot, node.else_body)
        del self.vars[mark:]

    def walk_template(self, dot: Any, node: n.TemplateCall) -> None:
        body = self.parsed.defined.get(node.name)
        if body is None:
            raise self.error(f"no such template {quote(node.name)}", node)
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe else MISSING
        if self.depth >= MAX_DEPTH:
            raise self.error(f"exceeded maximum template depth ({MAX_DEPTH})", node)
        saved = self.vars
        self.vars = [["$", new_dot]]
        self.depth += 1
        try:
            self.walk(new_dot, body)
        finally:
            self.depth -= 1
            self.vars = saved

    # -- pipelines and commands
    def eval_pipeline(self, dot: Any, pipe: n.Pipe) -> Any:
        self.at(pipe)
        value: Any = NO_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:
                value = MISSING  # an interface{} holding nil is no value at all
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.push(name, value)
        return value

    def not_a_function(self, args: list[n.Node], final: Any) -> None:
        if len(args) > 1 or final is not NO_FINAL:
            raise self.error(f"can't give argument to non-function {n.describe(args[0])}")

    def eval_command(self, dot: Any, cmd: n.Command, final: Any) -> Any:
        first = cmd.args[0]
        self.at(first)
        if isinstance(first, n.Field):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, n.Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, n.Identifier):
            return self.eval_function(dot, first, cmd.args, final)
        if isinstance(first, n.Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, n.Variable):
            return self.eval_variable(dot, first, cmd.args, final)
        self.not_a_function(cmd.args, final)
        if isinstance(first, n.Bool):
            return first.value
        if isinstance(first, n.Dot):
            return dot
        if isinstance(first, n.Nil):
            raise self.error("nil is not a command")
        if isinstance(first, n.Number):
            return first.value
        if isinstance(first, n.String):
            return first.value
        raise self.error(f"can't evaluate command {quote(n.describe(first))}")

    def eval_chain(self, dot: Any, chain: n.Chain, args: list[n.Node], final: Any) -> Any:
        if isinstance(chain.node, n.Nil):
            raise self.error(f"indirection through explicit nil in {n.describe(chain)}")
        receiver = self.eval_arg(dot, "value", chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args, final)

    def eval_variable(self, dot: Any, var: n.Variable, args: list[n.Node], final: Any) -> Any:
        value = self.var_value(var.idents[0])
        if len(var.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, var, var.idents[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: n.Node, idents: tuple[str, ...],
        args: list[n.Node], final: Any,
    ) -> Any:  # fmt: skip
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, [], NO_FINAL, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(
        self, dot: Any, name: str, node: n.Node, args: list[n.Node], final: Any, receiver: Any
    ) -> Any:
        if receiver is MISSING:
            if self.missing_error:
                raise self.error(f"nil data; no entry for key {quote(name)}", node)
            return MISSING
        if receiver is None:
            raise self.error(f"nil pointer evaluating interface {{}}.{name}", node)
        has_args = len(args) > 1 or final is not NO_FINAL
        if isinstance(receiver, GoValue):
            method = receiver.go_method(name)
            if method is not None:
                return self.call(dot, method, name, node, args, final)
        if isinstance(receiver, GoValue) and not isinstance(receiver, Mapping):
            try:
                value = receiver.go_field(name)
            except KeyError:
                raise self.error(
                    f"can't evaluate field {name} in type {receiver.go_type}", node
                ) from None
            if has_args:
                raise self.error(f"{name} has arguments but cannot be invoked as function", node)
            return value
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments", node)
            if name in receiver:
                return receiver[name]
            if self.missing_error:
                raise self.error(f"map has no entry for key {quote(name)}", node)
            return MISSING
        raise self.error(f"can't evaluate field {name} in type {type_name(receiver)}", node)

    def eval_function(self, dot: Any, ident: n.Identifier, args: list[n.Node], final: Any) -> Any:
        func = self.funcs.get(ident.name)
        if func is None:
            raise self.error(f"{quote(ident.name)} is not a defined function", ident)
        return self.call(dot, func, ident.name, ident, args, final)

    def call(
        self, dot: Any, func: Func, name: str, node: n.Node, args: list[n.Node], final: Any
    ) -> Any:
        args = args[1:]
        num_in = len(args) + (final is not NO_FINAL)
        fixed = len(func.params)
        if func.variadic is not None:
            if num_in < fixed:
                raise self.error(
                    f"wrong number of args for {name}: want at least {fixed} got {num_in}", node
                )
        elif num_in != fixed:
            raise self.error(f"wrong number of args for {name}: want {fixed} got {num_in}", node)
        if name in ("and", "or") and func.impl is _short_circuit:
            return self.and_or(dot, name, args, final)
        kinds = [*func.params, *[func.variadic or "value"] * (num_in - fixed)]
        argv = [self.eval_arg(dot, kind, a) for kind, a in zip(kinds, args, strict=False)]
        if final is not NO_FINAL:
            argv.append(self.validate(final, kinds[-1]))
        self.at(node)
        try:
            return func.impl(*argv)
        except TemplateError:
            raise
        except RecursionError:
            raise self.error(f"error calling {name}: too deeply nested", node) from None
        except Exception as e:  # every failure of a function is the template's error
            raise self.error(f"error calling {name}: {e}", node) from None

    def and_or(self, dot: Any, name: str, args: list[n.Node], final: Any) -> Any:
        v: Any = MISSING
        for a in args:
            v = self.eval_arg(dot, "value", a)
            if truth(v) == (name == "or"):
                return v
        if final is not NO_FINAL:
            v = final
        return v

    def eval_arg(self, dot: Any, kind: str, node: n.Node) -> Any:
        self.at(node)
        if isinstance(node, n.Dot):
            return self.validate(dot, kind)
        if isinstance(node, n.Nil):
            if kind in ("value", "any", "list", "strings", "map"):
                return MISSING if kind == "value" else None
            raise self.error(f"cannot assign nil to {GO_KIND[kind]}")
        if isinstance(node, n.Field):
            return self.validate(
                self.eval_field_chain(dot, dot, node, node.idents, [node], NO_FINAL), kind
            )
        if isinstance(node, n.Variable):
            return self.validate(self.eval_variable(dot, node, [], NO_FINAL), kind)
        if isinstance(node, n.Pipe):
            return self.validate(self.eval_pipeline(dot, node), kind)
        if isinstance(node, n.Identifier):
            return self.validate(self.eval_function(dot, node, [node], NO_FINAL), kind)
        if isinstance(node, n.Chain):
            return self.validate(self.eval_chain(dot, node, [], NO_FINAL), kind)
        if isinstance(node, n.Bool | n.Number | n.String):
            value = node.value
            if kind in ("value", "any") or fits(value, kind):
                return value
            raise self.error(f"expected {GO_KIND[kind]}; found {n.describe(node)}")
        raise self.error(f"can't handle {n.describe(node)} for arg of type {GO_KIND[kind]}")

    def validate(self, value: Any, kind: str) -> Any:
        if kind == "value":
            return value
        if value is MISSING or value is None:
            if kind in ("any", "list", "strings", "map"):
                return None
            raise self.error(f"invalid value; expected {GO_KIND[kind]}")
        if kind == "any" or fits(value, kind):
            return value
        raise self.error(f"wrong type for value; expected {GO_KIND[kind]}; got {type_name(value)}")


def execute(
    parsed: Parsed, funcs: Mapping[str, Func], data: Any = MISSING, missing_error: bool = False
) -> str:
    state = State(parsed, funcs, missing_error)
    state.vars = [["$", data]]
    try:
        state.walk(data, parsed.root)
    except (_Break, _Continue):
        raise state.error("break or continue outside range") from None
    except RecursionError:
        raise state.error("template nests too deeply") from None
    return "".join(state.out)
