"""Fuzz the HCL2 evaluator: random expressions, templates and job files with variables give
located problems, never an uncaught exception. Bounded like the loader's fuzz (FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec import hclexpr, hclsyntax
from reconciler.spec.hclbody import FUNCTIONS, Inputs, VarFile
from reconciler.spec.load import parse_text

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
SEEDS = [
    p.read_text()
    for p in sorted(Path(__file__).parents[1].joinpath("nomad_style").glob("*.nomad*"))
]
EXPR_TOKENS = [
    "var.x", "local.y", "NOMAD_ALLOC_ID", "attr.kernel.name", "1", "-2.5", "1e400", '"s"', '"${',
    "}", '"', "%{ if true }", "%{ else }", "%{ endif }", "%{ for a in [1,2] }", "%{ endfor }",
    "[", "]", "{", "}", "(", ")", ",", "=", "=>", ":", "?", "...", "[*]", ".*", ".", "+", "-", "*",
    "/", "%", "==", "!=", "<", ">=", "&&", "||", "!", "for", "in", "if", "x", "null", "true",
    "<<EOT\n", "\nEOT\n", "<<-EOT\n", "~", "\\", "\\u00", "\n", " ",
    *[f"{name}(" for name in sorted(FUNCTIONS)[::3]], "try(", "can(", "convert(", "list(string)",
    "range(100000000)", "pow(10, 9999)", "format(", '"%v"', '"%[9]d"', "$${", "%%{",
]  # fmt: skip
SCOPE = hclexpr.Scope(
    {"var": {"x": [1, "a", {"k": None}], "m": {"a": 1}}, "local": {"y": "text"}},
    FUNCTIONS,
)


def evaluate(src: str) -> None:
    try:
        node = hclsyntax.parse_expression(src)
    except hclsyntax.HclSyntaxError as e:
        assert e.message and 0 <= e.pos <= len(src) + 1
        return
    try:
        hclexpr.evaluate(node, SCOPE)
    except hclexpr.EvalError as e:
        assert e.message


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(EXPR_TOKENS), max_size=40))
def test_random_expressions(tokens: list[str]) -> None:
    evaluate(" ".join(tokens))
    evaluate("".join(tokens))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=80))
def test_random_text_as_expression(text: str) -> None:
    evaluate(text)
    evaluate('"' + text + '"')


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(FUNCTIONS)), st.lists(st.sampled_from(
    ['"a"', "1", "-1", "0", "1.5", "null", "true", "[1, 2]", '["a", "b"]', '{a = 1}', "[]", "{}",
     '"10.0.0.0/8"', '"2024-01-02T03:04:05Z"', '"%s %d"', '"1h"', '"dns"', '"a,b\\n1,2"']),
    max_size=4))  # fmt: skip
def test_every_function_with_odd_arguments(name: str, args: list[str]) -> None:
    evaluate(f"{name}({', '.join(args)})")


@st.composite
def job_file(draw):  # type: ignore[no-untyped-def]
    text = draw(st.sampled_from(SEEDS))
    head = draw(
        st.lists(
            st.sampled_from(
                [
                    'variable "x" {\n  default = 1\n}\n',
                    'variable "y" {\n  type = list(string)\n}\n',
                    'variable "z" {\n  type = number\n  validation {\n    condition = var.z > 0\n'
                    '    error_message = "Must be positive."\n  }\n}\n',
                    "locals {\n  a = local.b\n  b = var.x\n}\n",
                    "locals {\n  c = local.c\n}\n",
                    'variables {\n  w = "q"\n}\n',
                ]
            ),
            max_size=3,
        )
    )
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.sampled_from(EXPR_TOKENS)) + text[pos:]
    return "".join(head) + text


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(job_file(), st.sampled_from(["", "x = 2\n", "y = [1]\n", "z = -1\n", "nope = 1\n", "x = {"]))
def test_job_files_with_variables(text: str, var_text: str) -> None:
    inputs = Inputs(
        env={"NOMAD_VAR_z": "5", "NOMAD_VAR_y": "[a"},
        var_files=(VarFile("jobs/f.vars.hcl", var_text),),
    )
    result = parse_text(text, "jobs/fuzz.hcl", inputs)
    for p in result.problems:
        assert p.file in ("jobs/fuzz.hcl", "jobs/f.vars.hcl") and p.message
