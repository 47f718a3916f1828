"""A parsed job file -> the plain body the loader validates, after HCL2 evaluation.

The parse (spec/hcl.py) gives the outline: blocks, attributes and where each expression is;
every expression is read again by hclsyntax and evaluated with `var`, `local`, the jobspec functions and `dynamic`
blocks. A file made only of literals needs none of this: its parsed body is used as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.spec import hcl
from reconciler.spec import hclexpr as ev
from reconciler.spec import hclsyntax as syn
from reconciler.spec import variables as vs
from reconciler.spec.hclfiles import JobDirectory
from reconciler.spec.hclfuncs import FUNCTIONS as BASE_FUNCTIONS
from reconciler.spec.hclfuncs_data import FUNCTIONS as DATA_FUNCTIONS
from reconciler.spec.hclfuncs_data import UNSUPPORTED
from reconciler.spec.hcloutline import NOT_LITERAL, Attribute, Block, Outline

FUNCTIONS: dict[str, ev.Function] = {**BASE_FUNCTIONS, **DATA_FUNCTIONS}
FS_FUNCTIONS = (
    "abspath",
    "basename",
    "dirname",
    "file",
    "filebase64",
    "fileexists",
    "fileset",
    "pathexpand",
)
TOP_LEVEL = ("variable", "variables", "locals")


@dataclass(frozen=True)
class VarFile:
    name: str  # as problems show it: jobs/web.vars.hcl
    text: str


@dataclass(frozen=True)
class Inputs:
    """What a job file's expressions may read besides the file itself."""

    env: Mapping[str, str] = field(default_factory=dict)  # NOMAD_VAR_* of the service
    var_files: tuple[VarFile, ...] = ()
    var_file_hint: str = "a var file"
    directory: JobDirectory | None = None  # None: the filesystem functions are refused


@dataclass
class Evaluated:
    body: dict[str, Any]
    problems: list[vs.VarProblem] = field(default_factory=list)


# -- evaluation -------------------------------------------------------------------------------
def evaluate(parsed: hcl.Parsed, text: str, inputs: Inputs) -> Evaluated:
    """Needs a parse with positions. Problems are returned, never raised."""
    try:
        return _evaluate(parsed.outline, text, inputs)
    except vs.VarProblem as p:
        return Evaluated({}, [p])


def _source(attr: Attribute, text: str, file: str | None = None) -> vs.Source:
    e = attr.expression
    return vs.Source(text[e.start : e.end], e.line or 0, file, e.column)


def _attrs(children: Outline, text: str, file: str | None = None) -> dict[str, vs.Source]:
    return {c.name: _source(c, text, file) for c in children if isinstance(c, Attribute)}


def _blocks(children: Outline) -> list[tuple[str, list[str], Block]]:
    return [(c.kind, list(c.labels), c) for c in children if isinstance(c, Block)]


def scope(variables: dict[str, Any], directory: JobDirectory | None = None) -> ev.Scope:
    """The functions of Nomad's jobspec, those refused with why, and `variables`."""
    functions: dict[str, ev.Function] = dict(FUNCTIONS)
    unsupported = dict(UNSUPPORTED)
    if directory is not None:
        functions.update(directory.functions())
    else:
        unsupported.update(dict.fromkeys(FS_FUNCTIONS, "filesystem functions are disabled here"))
    return ev.Scope(variables, functions, unsupported)


def _evaluate(outline: Outline, text: str, inputs: Inputs) -> Evaluated:
    base = scope({}, inputs.directory)
    problems: list[vs.VarProblem] = []
    declared: dict[str, vs.Declared] = {}
    local_sources: dict[str, vs.Source] = {}
    rest: list[Attribute | Block] = []
    for child in outline:
        if not isinstance(child, Block):
            rest.append(child)
            continue
        kind, labels, block = child.kind, list(child.labels), child
        line = block.line or 0
        try:
            if kind == "variable":
                if len(labels) != 1:
                    raise vs.VarProblem(
                        line, "variable", 'a variable block has one label: variable "name"'
                    )
                if labels[0] in declared:
                    raise vs.VarProblem(line, f"variable.{labels[0]}", "duplicate variable")
                validations = []
                for vkind, _, vblock in _blocks(block.children):
                    if vkind != "validation":
                        raise vs.VarProblem(
                            vblock.line,
                            f"variable.{labels[0]}.{vkind}",
                            f'unsupported block "{vkind}"',
                        )
                    validations.append((vblock.line or 0, _attrs(vblock.children, text)))
                declared[labels[0]] = vs.declare_block(
                    labels[0], line, _attrs(block.children, text), validations
                )
            elif kind == "variables":
                for name, src in _attrs(block.children, text).items():
                    if name in declared:
                        raise vs.VarProblem(src.line, f"variable.{name}", "duplicate variable")
                    declared[name] = vs.declare_block(name, src.line, {"default": src}, [])
            elif kind == "locals":
                for name, src in _attrs(block.children, text).items():
                    if name in local_sources:
                        raise vs.VarProblem(src.line, f"local.{name}", "duplicate value in locals")
                    local_sources[name] = src
            else:
                rest.append(child)
        except vs.VarProblem as p:
            problems.append(p)
    if problems:
        return Evaluated({}, problems)
    vs.env_values(declared, inputs.env)
    for vf in inputs.var_files:
        _var_file(declared, vf)
    no_fs = {k: v for k, v in base.functions.items() if k not in FS_FUNCTIONS}
    values, problems = vs.final_values(declared, no_fs, inputs.var_file_hint)
    if problems:
        return Evaluated({}, problems)
    local_values, problems = vs.evaluate_locals(
        local_sources, base.child({"var": values, "local": {}})
    )
    if problems:
        return Evaluated({}, problems)
    walker = _Walker(text, problems)
    body = walker.body_of(rest, base.child({"var": values, "local": local_values}), ())
    return Evaluated(body, problems)


def _var_file(declared: dict[str, vs.Declared], vf: VarFile) -> None:
    try:
        parsed = hcl.parse(vf.text, positions=True)
    except hcl.HclSyntaxError as e:
        raise vs.VarProblem(e.line, "", e.message, vf.name) from None
    for kind, _, block in _blocks(parsed.outline):
        if kind == "variable":
            raise vs.VarProblem(
                block.line,
                "variable",
                "a var file sets values (name = value); declare variables in the job file",
                vf.name,
            )
        raise vs.VarProblem(
            block.line,
            kind,
            f'unexpected block "{kind}"; a var file holds only name = value lines',
            vf.name,
        )
    vs.file_values(declared, vf.name, _attrs(parsed.outline, vf.text, vf.name))


class _Walker:
    """Evaluates a body into python-hcl2's dict shape, expanding `dynamic` blocks."""

    def __init__(self, text: str, problems: list[vs.VarProblem]) -> None:
        self.text = text
        self.problems = problems

    def body_of(
        self, children: Outline | list[Attribute | Block], scope: ev.Scope, path: tuple[str, ...]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in children:
            if isinstance(child, Attribute):
                name = child.name
                literal = child.expression.literal
                if literal is not NOT_LITERAL:  # read by the parser as the evaluator would
                    ok, value = True, _fresh(literal)
                else:
                    ok, value = self.value(_source(child, self.text), scope, (*path, name))
                if ok and value is not None:  # null leaves the field unset, as in Nomad
                    out[name] = value
            else:
                kind, labels = child.kind, list(child.labels)
                if kind == "dynamic":
                    self.dynamic(labels, child, scope, path, out)
                    continue
                inner = self.body_of(child.children, scope, (*path, kind, *labels))
                out.setdefault(kind, []).append(_nest(labels, inner))
        return out

    def value(self, src: vs.Source, scope: ev.Scope, path: tuple[str, ...]) -> tuple[bool, Any]:
        what = ".".join(path)
        try:
            node = src.parse(what)
            return True, ev.evaluate(node, scope)
        except vs.VarProblem as p:
            self.problems.append(p)
        except ev.EvalError as e:
            self.problems.append(src.problem(e.pos, what, e.message))
        return False, None

    def dynamic(
        self,
        labels: list[str],
        block: Block,
        scope: ev.Scope,
        path: tuple[str, ...],
        out: dict[str, Any],
    ) -> None:
        line = block.line or 0
        where = ".".join((*path, "dynamic", *labels))
        if len(labels) != 1:
            self.problems.append(
                vs.VarProblem(
                    line, where, "a dynamic block has one label: the type of block it makes"
                )
            )
            return
        kind = labels[0]
        attrs = _attrs(block.children, self.text)
        contents = [b for k, _, b in _blocks(block.children) if k == "content"]
        if "for_each" not in attrs or len(contents) != 1:
            self.problems.append(
                vs.VarProblem(line, where, "a dynamic block needs for_each and one content block")
            )
            return
        for key in attrs:
            if key not in ("for_each", "iterator", "labels"):
                self.problems.append(
                    vs.VarProblem(
                        attrs[key].line, f"{where}.{key}", f'unsupported argument "{key}"'
                    )
                )
                return
        iterator = kind
        if "iterator" in attrs:
            node = attrs["iterator"].parse(f"{where}.iterator")
            if not (isinstance(node, syn.Traversal) and not node.steps):
                self.problems.append(
                    vs.VarProblem(
                        attrs["iterator"].line, f"{where}.iterator", "must be a plain name"
                    )
                )
                return
            iterator = node.root
        ok, coll = self.value(attrs["for_each"], scope, (*path, "dynamic", kind, "for_each"))
        if not ok:
            return
        if isinstance(coll, dict):
            pairs = sorted(coll.items())
        elif isinstance(coll, list):
            pairs = list(enumerate(coll))
        else:
            self.problems.append(
                vs.VarProblem(
                    attrs["for_each"].line,
                    f"{where}.for_each",
                    "must be a list, set, map or object",
                )
            )
            return
        for k, v in pairs:
            inner_scope = scope.child({iterator: {"key": k, "value": v}})
            block_labels: list[str] = []
            if "labels" in attrs:
                ok, got = self.value(
                    attrs["labels"], inner_scope, (*path, "dynamic", kind, "labels")
                )
                if not ok:
                    return
                if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
                    self.problems.append(
                        vs.VarProblem(
                            attrs["labels"].line, f"{where}.labels", "must be a list of strings"
                        )
                    )
                    return
                block_labels = got
            inner = self.body_of(contents[0].children, inner_scope, (*path, kind, *block_labels))
            out.setdefault(kind, []).append(_nest(block_labels, inner))


def _fresh(value: Any) -> Any:
    return [_fresh(v) for v in value] if isinstance(value, list) else value


def _nest(labels: list[str], body: dict[str, Any]) -> dict[str, Any]:
    for label in reversed(labels):
        body = {label: body}
    return body
