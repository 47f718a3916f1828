"""Evaluate HCL expressions (hclsyntax trees) the way Nomad's jobspec2 does.

A reference whose root is not a variable in scope (NOMAD_ALLOC_ID, attr.kernel.name, meta.x,
node.unique.id) is not an error: like Nomad's parser, it evaluates to the text "${...}" and
is interpolated when the task starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.spec import hclsyntax as syn
from reconciler.spec import hcltypes as ht
from reconciler.spec.hcltypes import ConvertError, Value

Function = Callable[..., Value]
MAX_ITEMS = 100_000  # elements one expression may build (range(1e9) is refused, not run)
MAX_STRING = 4 << 20
MAX_STEPS = 1_000_000  # expression nodes evaluated for one file: for loops cannot run for hours
MAX_STEPS = 1_000_000  # expression nodes evaluated for one file: for loops cannot run for hours


class EvalError(Exception):
    """A located evaluation failure: `pos` is an offset in the expression's text."""

    def __init__(self, message: str, pos: int, expr: str = "") -> None:
        super().__init__(message)
        self.message, self.pos, self.expr = message, pos, expr


class FunctionError(Exception):
    """Raised by a function body; the evaluator adds where the call is."""


@dataclass(frozen=True)
class Scope:
    variables: Mapping[str, Value]
    functions: Mapping[str, Function]
    unsupported: Mapping[str, str] = field(default_factory=dict)
    keep_unknown: bool = True  # False: an unknown root is an error (variable validation)

    steps: list[int] = field(default_factory=lambda: [0])  # shared by child scopes

    def child(self, names: Mapping[str, Value]) -> Scope:
        variables = {**self.variables, **names}
        return Scope(variables, self.functions, self.unsupported, self.keep_unknown, self.steps)


def evaluate(node: syn.Node, scope: Scope) -> Value:
    """Raises EvalError; never anything else for any tree and scope."""
    try:
        return _eval(node, scope)
    except EvalError:
        raise
    except RecursionError:
        raise EvalError("expression is nested too deeply", node.pos) from None


def _eval(node: syn.Node, scope: Scope) -> Value:
    scope.steps[0] += 1
    if scope.steps[0] > MAX_STEPS:
        raise EvalError(f"evaluation takes more than {MAX_STEPS} steps; refused", node.pos)
    match node:
        case syn.Lit(value=value):
            return value
        case syn.Template():
            return _template(node, scope)
        case syn.Traversal():
            return _traversal(node, scope)
        case syn.GetAttr(obj=obj, name=name):
            return _attr(_eval(obj, scope), name, node.pos)
        case syn.Index(obj=obj, key=k):
            return _index(_eval(obj, scope), _eval(k, scope), k.pos)
        case syn.Splat():
            return _splat(node, scope)
        case syn.Call():
            return _call(node, scope)
        case syn.Unary(op=op, operand=operand):
            v = _eval(operand, scope)
            try:
                return not ht.to_bool(v) if op == "!" else ht.normal_number(-ht.to_number(v))
            except ConvertError as e:
                raise EvalError(f"operand of {op}: {e}", operand.pos) from None
        case syn.Binary():
            return _binary(node, scope)
        case syn.Cond(cond=c, then=then, other=other):
            try:
                chosen = ht.to_bool(_eval(c, scope))
            except ConvertError as e:
                raise EvalError(f"condition: {e}", c.pos) from None
            return _conditional(then, other, chosen, scope)
        case syn.TupleCons(items=items):
            return [_eval(x, scope) for x in items]
        case syn.ObjectCons(items=items):
            out: dict[str, Value] = {}
            for k, v in items:
                out[_key(_eval(k, scope), k.pos)] = _eval(v, scope)
            return dict(sorted(out.items()))
        case syn.ForExpr():
            return _for(node, scope)
    raise EvalError(f"cannot evaluate {type(node).__name__}", node.pos)


def _conditional(then: syn.Node, other: syn.Node, chosen: bool, scope: Scope) -> Value:
    """The chosen branch; as HCL unifies both branches' types, a number or bool chosen against
    a string becomes a string (`c ? 1 : "a"` is "1")."""
    taken, untaken = (then, other) if chosen else (other, then)
    value = _eval(taken, scope)
    if isinstance(value, bool | int | float):
        try:
            if isinstance(_eval(untaken, scope), str):
                return ht.to_string(value)
        except (EvalError, ConvertError):
            pass  # errors of the branch not taken do not count, as in HCL
    return value


def _key(v: Value, pos: int) -> str:
    try:
        return ht.to_string(v)
    except ConvertError as e:
        raise EvalError(f"object key: {e}", pos) from None


def _template(node: syn.Template, scope: Scope) -> Value:
    parts = node.parts
    if len(parts) == 1 and not isinstance(parts[0], syn.Lit | syn.TIf | syn.TFor):
        return _eval(parts[0], scope)  # "${x}" is x itself, of any type
    out: list[str] = []
    _render(node, scope, out)
    return "".join(out)


def _render(node: syn.Template, scope: Scope, out: list[str]) -> None:
    for p in node.parts:
        scope.steps[0] += 1
        if isinstance(p, syn.Lit):
            out.append(str(p.value))
        elif isinstance(p, syn.TIf):
            try:
                chosen = ht.to_bool(_eval(p.cond, scope))
            except ConvertError as e:
                raise EvalError(f"%{{if}} condition: {e}", p.cond.pos) from None
            _render(p.then if chosen else p.other, scope, out)
        elif isinstance(p, syn.TFor):
            for k, v in _pairs(_eval(p.coll, scope), p.coll.pos):
                names = {p.val_var: v} if p.key_var is None else {p.key_var: k, p.val_var: v}
                _render(p.body, scope.child(names), out)
        else:
            v = _eval(p, scope)
            if v is None:
                raise EvalError("a null value cannot be part of a string template", p.pos)
            try:
                out.append(ht.to_string(v))
            except ConvertError as e:
                raise EvalError(f"in a string template: {e}", p.pos) from None
        if len(out) % 64 == 0 and sum(len(s) for s in out) > MAX_STRING:
            raise EvalError("string template result is too long", node.pos)


def _traversal(node: syn.Traversal, scope: Scope) -> Value:
    if node.root not in scope.variables:
        if scope.keep_unknown:
            return "${" + node.text + "}"
        raise EvalError(f'unknown name "{node.root}"', node.pos)
    v = scope.variables[node.root]
    path = node.root
    for step in node.steps:
        if isinstance(step, int):
            v = _index(v, step, node.pos, path)
            path += f"[{step}]"
        else:
            v = _attr(v, step, node.pos, path)
            path += f".{step}"
    return v


def _attr(v: Value, name: str, pos: int, path: str = "") -> Value:
    where = f"{path}: " if path else ""
    if isinstance(v, dict):
        if name in v:
            return v[name]
        if path in ("var", "local"):
            kind = "variable" if path == "var" else "local value"
            raise EvalError(f'no {kind} named "{name}" is declared', pos)
        raise EvalError(f'{where}this object has no attribute "{name}"', pos)
    if v is None:
        raise EvalError(f'{where}cannot get attribute "{name}" of a null value', pos)
    raise EvalError(f'{where}a {ht.type_name(v)} has no attribute "{name}"', pos)


def _index(v: Value, k: Value, pos: int, path: str = "") -> Value:
    where = f"{path}: " if path else ""
    if isinstance(v, list):
        try:
            n = ht.to_number(k)
        except ConvertError as e:
            raise EvalError(f"{where}list index: {e}", pos) from None
        if n != int(n) or not 0 <= n < len(v):
            raise EvalError(
                f"{where}index {ht.number_text(n)} is out of range (length {len(v)})", pos
            )
        return v[int(n)]
    if isinstance(v, dict):
        try:
            s = ht.to_string(k)
        except ConvertError as e:
            raise EvalError(f"{where}map key: {e}", pos) from None
        if s not in v:
            raise EvalError(f'{where}no element with key "{s}"', pos)
        return v[s]
    if v is None:
        raise EvalError(f"{where}cannot index a null value", pos)
    raise EvalError(f"{where}a {ht.type_name(v)} cannot be indexed", pos)


def _splat(node: syn.Splat, scope: Scope) -> Value:
    v = _eval(node.obj, scope)
    if v is None:
        return []
    items = v if isinstance(v, list) else [v]
    out = []
    for item in items:
        for kind, arg in node.each:
            if kind == "attr":
                item = _attr(item, str(arg), node.pos)
            else:
                assert isinstance(arg, syn.Node)
                item = _index(item, _eval(arg, scope), arg.pos)
        out.append(item)
    return out


def _call(node: syn.Call, scope: Scope) -> Value:
    name = node.name
    if name in ("try", "can"):
        return _try(node, scope)
    if name == "convert":  # its second argument is a type, not a value
        if len(node.args) != 2 or node.expand:
            raise EvalError("convert() takes a value and a type", node.pos)
        try:
            return ht.convert(_eval(node.args[0], scope), ht.type_of(node.args[1]))
        except syn.HclSyntaxError as e:
            raise EvalError(f"convert(): {e.message}", node.args[1].pos) from None
        except ConvertError as e:
            raise EvalError(f"convert(): {e}", node.pos) from None
    fn = scope.functions.get(name)
    if fn is None:
        why = scope.unsupported.get(name)
        if why is not None:
            raise EvalError(f"{name}() is not supported: {why}", node.pos)
        raise EvalError(f'there is no function named "{name}" (see docs/jobspec.md)', node.pos)
    args = [_eval(a, scope) for a in node.args]
    if node.expand:
        last = args.pop() if args else None
        if not isinstance(last, list):
            raise EvalError(f"{name}(...): the argument before ... must be a list", node.pos)
        args.extend(last)
    try:
        result = fn(*args)
    except FunctionError as e:
        raise EvalError(f"{name}(): {e}", node.pos) from None
    except ConvertError as e:
        raise EvalError(f"{name}(): {e}", node.pos) from None
    except TypeError as e:  # wrong number of arguments
        raise EvalError(f"{name}(): {_arity(str(e))}", node.pos) from None
    except (ValueError, ArithmeticError, OverflowError, IndexError, KeyError) as e:
        raise EvalError(f"{name}(): {e or type(e).__name__}", node.pos) from None
    _check_size(result, node.pos)
    return result


def _arity(message: str) -> str:
    if "argument" in message:
        return "wrong number of arguments (" + message.split("() ", 1)[-1] + ")"
    return message


def _try(node: syn.Call, scope: Scope) -> Value:
    if node.expand or not node.args or (node.name == "can" and len(node.args) != 1):
        raise EvalError(
            f"{node.name}() needs {'one argument' if node.name == 'can' else 'arguments'}", node.pos
        )
    last: EvalError | None = None
    for arg in node.args:
        try:
            v = _eval(arg, scope)
        except EvalError as e:
            last = e
            continue
        return True if node.name == "can" else v
    if node.name == "can":
        return False
    assert last is not None
    raise EvalError(
        f"try(): no argument could be evaluated; the last said: {last.message}", node.pos
    )


def _check_size(v: Value, pos: int) -> None:
    if isinstance(v, list) and len(v) > MAX_ITEMS:
        raise EvalError(f"result has more than {MAX_ITEMS} elements", pos)
    if isinstance(v, str) and len(v) > MAX_STRING:
        raise EvalError("result string is too long", pos)


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _binary(node: syn.Binary, scope: Scope) -> Value:
    op = node.op
    left, right = _eval(node.left, scope), _eval(node.right, scope)
    if op == "==":
        return ht.equal(left, right)
    if op == "!=":
        return not ht.equal(left, right)
    if op in ("&&", "||"):
        try:
            a, b = ht.to_bool(left), ht.to_bool(right)
        except ConvertError as e:
            raise EvalError(f"operand of {op}: {e}", node.pos) from None
        return (a and b) if op == "&&" else (a or b)
    try:
        a_num, b_num = ht.to_number(left), ht.to_number(right)
    except ConvertError as e:
        raise EvalError(f"operand of {op}: {e}", node.pos) from None
    if op in _COMPARE:
        return _COMPARE[op](a_num, b_num)
    try:
        return ht.normal_number(_arith(op, a_num, b_num))
    except (ArithmeticError, OverflowError, ValueError) as e:
        raise EvalError(f"{op}: {e or type(e).__name__}", node.pos) from None


def _arith(op: str, a: int | float, b: int | float) -> int | float:
    if op == "+":
        r: int | float = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "/":
        if b == 0:
            raise ZeroDivisionError("division by zero")
        r = a // b if isinstance(a, int) and isinstance(b, int) and a % b == 0 else a / b
    else:  # "%": the sign follows the dividend, as in Go
        if b == 0:
            raise ZeroDivisionError("modulo by zero")
        r = math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else _int_mod(a, b)
    if isinstance(r, float) and not math.isfinite(r):
        raise OverflowError("result is not a finite number")
    if isinstance(r, int) and r.bit_length() > 1024:
        raise OverflowError("result is too large")
    return r


def _int_mod(a: int, b: int) -> int:
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _pairs(coll: Value, pos: int) -> list[tuple[Value, Value]]:
    if isinstance(coll, list):
        return list(enumerate(coll))
    if isinstance(coll, dict):
        return ht.sorted_items(coll)
    raise EvalError(f"a for loop needs a list, set, map or object, not {ht.type_name(coll)}", pos)


def _for(node: syn.ForExpr, scope: Scope) -> Value:
    tuple_out: list[Value] = []
    obj_out: dict[str, Value] = {}
    for k, v in _pairs(_eval(node.coll, scope), node.coll.pos):
        scope.steps[0] += 1
        names = {node.val_var: v} if node.key_var is None else {node.key_var: k, node.val_var: v}
        inner = scope.child(names)
        if node.cond is not None:
            try:
                if not ht.to_bool(_eval(node.cond, inner)):
                    continue
            except ConvertError as e:
                raise EvalError(f"for condition: {e}", node.cond.pos) from None
        if node.key is None:
            tuple_out.append(_eval(node.value, inner))
            continue
        key = _key(_eval(node.key, inner), node.key.pos)
        value = _eval(node.value, inner)
        if node.group:
            obj_out.setdefault(key, []).append(value)
        elif key in obj_out:
            raise EvalError(
                f'two elements have the key "{key}" (add ... after the value to group them)',
                node.key.pos,
            )
        else:
            obj_out[key] = value
    return tuple_out if node.key is None else dict(sorted(obj_out.items()))
