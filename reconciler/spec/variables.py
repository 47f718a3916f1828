"""`variable`, `variables` and `locals` blocks, their values, and Nomad's precedence.

Values come, last wins, from: the `default`, then `NOMAD_VAR_<name>` in the service's
environment, then the job's var files in order (jobspec2's collectInputVariableValues).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.spec import hclexpr as ev
from reconciler.spec import hclsyntax as syn
from reconciler.spec import hcltypes as ht
from reconciler.spec.hcltypes import Type, Value

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
ENV_PREFIX = "NOMAD_VAR_"


class VarProblem(Exception):
    """A located problem: `line` in `file` (None: the job file itself)."""

    def __init__(
        self,
        line: int | None,
        what: str,
        message: str,
        file: str | None = None,
        column: int | None = None,
    ):
        super().__init__(message)
        self.line, self.what, self.message, self.file = line, what, message, file
        self.column = column


@dataclass(frozen=True)
class Source:
    """An expression's text and where it starts (for error lines)."""

    text: str
    line: int
    file: str | None = None  # None: the job file
    column: int | None = None  # of the expression's first character

    def parse(self, what: str) -> syn.Node:
        try:
            return syn.parse_expression(self.text)
        except syn.HclSyntaxError as e:
            raise self.problem(e.pos, what, e.message) from None

    def line_at(self, pos: int) -> int:
        return self.line + self.text.count("\n", 0, max(0, pos))

    def problem(self, pos: int, what: str, message: str) -> VarProblem:
        """A problem at offset `pos` of this expression, with its line and column."""
        pos = min(max(0, pos), len(self.text))
        newline = self.text.rfind("\n", 0, pos)
        if newline >= 0:
            column: int | None = pos - newline
        else:
            column = None if self.column is None else self.column + pos
        return VarProblem(self.line_at(pos), what, message, self.file, column)


@dataclass
class Validation:
    condition: syn.Node
    message: str
    source: Source


@dataclass
class Declared:
    name: str
    line: int
    type: Type | None = None
    values: list[tuple[str, Value]] = field(default_factory=list)  # (from, value)
    validations: list[Validation] = field(default_factory=list)


NO_CONTEXT = ev.Scope({}, {}, keep_unknown=False)


def literal(src: Source, what: str) -> Value:
    """A value that may not use variables or functions (defaults, var files)."""
    node = src.parse(what)
    try:
        return ev.evaluate(node, NO_CONTEXT)
    except ev.EvalError as e:
        message = e.message
        if (
            message.startswith("unknown name")
            or "no function" in message
            or "is not supported" in message
        ):
            message = "only literal values are allowed here (no variables or functions)"
        raise src.problem(e.pos, what, message) from None


def declare_block(
    name: str,
    line: int,
    attrs: Mapping[str, Source],
    validations: Iterable[tuple[int, Mapping[str, Source]]],
) -> Declared:
    what = f"variable.{name}"
    if not NAME.fullmatch(name):
        raise VarProblem(
            line,
            what,
            "a variable name starts with a letter or '_' and has letters, digits, '_' and '-'",
        )
    for key in attrs:
        if key not in ("type", "default", "description"):
            hint = " (Nomad does not support sensitive variables)" if key == "sensitive" else ""
            raise VarProblem(
                attrs[key].line,
                f"{what}.{key}",
                f'unsupported argument "{key}"; a variable block takes type, default, description and validation{hint}',
            )
    d = Declared(name, line)
    if "type" in attrs:
        src = attrs["type"]
        try:
            d.type = ht.type_of(src.parse(f"{what}.type"))
        except syn.HclSyntaxError as e:
            raise src.problem(e.pos, f"{what}.type", e.message) from None
    if "description" in attrs and not isinstance(
        literal(attrs["description"], f"{what}.description"), str
    ):
        raise VarProblem(attrs["description"].line, f"{what}.description", "must be a string")
    if "default" in attrs:
        src = attrs["default"]
        value = literal(src, f"{what}.default")
        if d.type is not None:
            try:
                value = ht.convert(value, d.type)
            except ht.ConvertError as e:
                raise VarProblem(
                    src.line,
                    f"{what}.default",
                    f"does not match the type {ht.describe(d.type)}: {e}",
                ) from None
        else:
            d.type = _type_of_value(value)
        d.values.append(("default", value))
    for vline, vattrs in validations:
        d.validations.append(_validation(d.name, vline, vattrs))
    return d


def _type_of_value(v: Value) -> Type:
    if isinstance(v, bool):
        return ht.BOOL
    if isinstance(v, int | float):
        return ht.NUMBER
    if isinstance(v, str):
        return ht.STRING
    return ht.ANY


def _validation(name: str, line: int, attrs: Mapping[str, Source]) -> Validation:
    what = f"variable.{name}.validation"
    for key in ("condition", "error_message"):
        if key not in attrs:
            raise VarProblem(line, what, f'"{key}" is required')
    for key in attrs:
        if key not in ("condition", "error_message"):
            raise VarProblem(attrs[key].line, f"{what}.{key}", f'unsupported argument "{key}"')
    src = attrs["condition"]
    cond = src.parse(f"{what}.condition")
    refs = list(references(cond))
    bad = [r for r in refs if r != ("var", name)]
    if bad or not refs:
        raise VarProblem(
            src.line, f"{what}.condition", f"the condition can refer only to var.{name}, and must"
        )
    message = literal(attrs["error_message"], f"{what}.error_message")
    if not isinstance(message, str) or not message:
        raise VarProblem(
            attrs["error_message"].line, f"{what}.error_message", "must be a non-empty string"
        )
    first, last = message[0], message[-1]
    if (first.isalpha() and not first.isupper()) or last not in ".?!":
        raise VarProblem(
            attrs["error_message"].line,
            f"{what}.error_message",
            "must be a sentence: start with a capital letter and end with '.', '?' or '!'",
        )
    return Validation(cond, message, src)


def references(node: syn.Node) -> Iterable[tuple[str, str]]:
    """(root, first step) of every traversal in an expression: ("var", "x"), ("local", "y")."""
    stack: list[object] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, syn.Traversal):
            first = n.steps[0] if n.steps else ""
            yield n.root, str(first)
        elif isinstance(n, syn.Node):
            for name in n.__slots__:
                stack.append(getattr(n, name))
        elif isinstance(n, tuple):
            stack.extend(n)


def env_values(declared: Mapping[str, Declared], env: Mapping[str, str]) -> None:
    for key, raw in sorted(env.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :]
        d = declared.get(name)
        if d is None:
            continue  # Nomad ignores NOMAD_VAR_ for undeclared names
        try:
            if d.type is None or d.type[0] in ("string", "number"):
                value: Value = raw
            else:
                value = literal(Source(raw, 1), f"var.{name}")
            value = _convert(d, value, d.line, None)
        except VarProblem as p:
            raise VarProblem(d.line, f"var.{name}", f"{key} of the service: {p.message}") from None
        d.values.append((f"environment ({key})", value))


def file_values(declared: Mapping[str, Declared], file: str, attrs: Mapping[str, Source]) -> None:
    for name, src in attrs.items():
        d = declared.get(name)
        if d is None:
            raise VarProblem(
                src.line, name, f'no variable "{name}" is declared in the job file', file
            )
        d.values.append((f"var file {file}", _convert(d, literal(src, name), src.line, file)))


def _convert(d: Declared, value: Value, line: int | None, file: str | None) -> Value:
    if d.type is None:
        return value
    try:
        return ht.convert(value, d.type)
    except ht.ConvertError as e:
        raise VarProblem(
            line, f"var.{d.name}", f"does not match the type {ht.describe(d.type)}: {e}", file
        ) from None


def final_values(
    declared: Mapping[str, Declared], functions: Mapping[str, ev.Function], var_file_hint: str
) -> tuple[dict[str, Value], list[VarProblem]]:
    values: dict[str, Value] = {}
    problems: list[VarProblem] = []
    for name, d in declared.items():
        if not d.values:
            problems.append(
                VarProblem(
                    d.line,
                    f"var.{name}",
                    f"no value; declare a default or set it in {var_file_hint} (or {ENV_PREFIX}{name})",
                )
            )
            continue
        origin, value = d.values[-1]
        values[name] = value
        for v in d.validations:
            scope = ev.Scope({"var": {name: value}}, functions, keep_unknown=False)
            try:
                ok = ev.evaluate(v.condition, scope)
            except ev.EvalError as e:
                problems.append(
                    v.source.problem(e.pos, f"var.{name}", f"validation condition: {e.message}")
                )
                continue
            if not isinstance(ok, bool):
                problems.append(
                    VarProblem(
                        v.source.line,
                        f"var.{name}",
                        "the validation condition must be true or false",
                    )
                )
            elif not ok:
                problems.append(
                    VarProblem(
                        v.source.line,
                        f"var.{name}",
                        f"invalid value from the {origin}: {v.message}",
                    )
                )
    return values, problems


def evaluate_locals(
    sources: Mapping[str, Source], scope_of: ev.Scope
) -> tuple[dict[str, Value], list[VarProblem]]:
    """Locals in dependency order (they may refer to each other in any order)."""
    nodes: dict[str, syn.Node] = {}
    problems: list[VarProblem] = []
    for name, src in sources.items():
        try:
            nodes[name] = src.parse(f"local.{name}")
        except VarProblem as p:
            problems.append(p)
    deps = {
        n: {s for r, s in references(node) if r == "local" and s in sources}
        for n, node in nodes.items()
    }
    done: dict[str, Value] = {}
    failed: set[str] = set()
    pending = list(nodes)
    while pending:
        ready = [n for n in pending if deps[n] <= (done.keys() | failed)]
        if not ready:
            cycle = ", ".join(f"local.{n}" for n in sorted(pending))
            problems.append(
                VarProblem(
                    sources[pending[0]].line,
                    f"local.{pending[0]}",
                    f"these locals refer to each other in a cycle: {cycle}",
                )
            )
            break
        for name in ready:
            pending.remove(name)
            if deps[name] & failed:
                failed.add(name)
                continue
            scope = scope_of.child({"local": dict(done)})
            try:
                done[name] = ev.evaluate(nodes[name], scope)
            except ev.EvalError as e:
                failed.add(name)
                problems.append(sources[name].problem(e.pos, f"local.{name}", e.message))
    return done, problems
