"""The fast HCL path against python-hcl2 (the full parser): for any text, either the fast path
declines or both give the same body, outline (expression offsets included), line index,
duplicates and need for evaluation -- and a text the full parser refuses is always declined."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec import hcl, hclbody, hclexpr, hclfast, hclsyntax
from reconciler.spec.hcloutline import NOT_LITERAL, Attribute, Outline

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
ROOT = Path(__file__).parents[2]


def compare(text: str) -> bool:
    """True when the fast path took the text (and agreed with the full parser)."""
    try:
        fast = hclfast.parse(text, hcl.MAX_TOKENS, hcl.MAX_PARSE_SECONDS)
    except hclfast.Declined:
        return False
    try:
        full = hcl.parse_full(text)
    except hcl.HclSyntaxError as e:
        raise AssertionError(f"the fast path took a text the full parser refuses: {e}") from None
    assert fast.outline == full.outline
    if fast.body is not None:
        assert fast.body == full.body
        assert repr(fast.body) == repr(full.body)  # 1 and 1.0, True and 1 told apart
    assert fast.needs_evaluation == full.needs_evaluation
    took = hcl.parse(text)
    assert (took.lines, took.duplicates) == (full.lines, full.duplicates)
    assert took.body == full.body
    for attr in attributes(fast.outline):
        e = attr.expression
        if e.literal is not NOT_LITERAL:  # the evaluator takes it instead of the text
            assert e.start is not None and e.end is not None
            node = hclsyntax.parse_expression(text[e.start : e.end])
            value = hclexpr.evaluate(node, hclbody.scope({}))
            assert repr(value) == repr(e.literal)
    return True


def attributes(outline: Outline) -> list[Attribute]:
    out: list[Attribute] = []
    for child in outline:
        out += [child] if isinstance(child, Attribute) else attributes(child.children)
    return out


# -- generated documents ------------------------------------------------------------------------
NAMES = st.sampled_from(["a", "b", "job", "task", "x_y", "x-y", "env", "in", "for_each", "count",
                         "dynamic", "locals", "variable", "true", "_u", "A1"])  # fmt: skip
STRING_PIECES = st.sampled_from([
    "plain", " ", "é", "日本", "\\n", "\\t", '\\"', "\\\\", "\\u00e9", "\\U0001F600", "\\u12",
    "\\uD800", "\\q", "\\$", "${NOMAD_TASK_DIR}", "${var.x}", "${ var.x }", "${local.a[0]}",
    "${upper(\"a\")}", "${f(1, 2)}", "$${x}", "%%{x}", "%{ if true }", "$", "%", "$$", "{", "}",
    "${", "~", "${~x}", "\\", "\r", "\t", "#", "//", "/*", "$${a b}", "%%{ if x }", "$$${x}",
    "\\$${x}", "%$${x}", "$${x\"}",
])  # fmt: skip
NUMBERS = st.sampled_from(["0", "1", "-1", "007", "1.5", "-2.25", "1.0", "1e3", "1E-2", "2.5e+3",
                           "0x10", "1.", ".5", "- 1", "-1-2.5", "1_000", "123456789012345678901234567890",
                           "1.2.3", "--1", "1e", "1x"])  # fmt: skip
REFERENCES = st.sampled_from(["var.x", "local.args", "NOMAD_TASK_DIR", "var.m[\"k\"]", "x[0]",
                              "a.b.c", "x.0", "upper(\"a\")", "concat([1], [2])", "f()", "f(1,)",
                              "f(\n1,\n2\n)", "f(x...)", "x[*].y", "x.*", "a :: b", "ns::f(1)",
                              "var.true", "var.for", "x.0.1", "for", "in", "(1)", "!true", "-x",
                              "1 + 2", "var.x >= 1 && var.x <= 4", "a ? b : c", "f (1)",
                              "x +\n 1", "x\n+ 1", "a ? b : c + 1", "a ?\n b\n : c", "x + 1 # c\n",
                              "- 1", "!!x", "x -1", "x - 12", "x-1", "1 / /* c */ 2", "x // c\n",
                              "a || b", "a & b", "(x + 1\n)", "(x).y", '"${a + 1}"', "a ? b",
                              '"${a ? 1 : 2}"', "x * 2 % 3 / 4", "a != b == c", "1 + 2 /* c */",
                              "!x.y", "-(1)", "a<=b", "a=>b", "a + b ? c + d : e + f"])  # fmt: skip
GAPS = st.sampled_from(["", " ", "\t", "  ", " # c", " // c", " /* c */", "\r"])
NEWLINES = st.sampled_from(["\n", "\n\n", "\r\n", "\n  \n", "\n# comment\n", "\n/* a\nb */\n",
                            "\n// c\n", " \n"])  # fmt: skip


@st.composite
def strings(draw: st.DrawFn) -> str:
    return '"' + "".join(draw(st.lists(STRING_PIECES, max_size=6))) + '"'


@st.composite
def heredocs(draw: st.DrawFn) -> str:
    marker = draw(st.sampled_from(["EOT", "EOF", "E", "E.X", "_X", "eot"]))
    trim = draw(st.sampled_from(["", "-"]))
    lines = draw(st.lists(st.sampled_from(["x", "  indented", "\ttab", "", "${x}", '"q"', "\\n",
                                           marker + "X", " " + marker + " ", "\r"]),
                          max_size=4))  # fmt: skip
    close = draw(st.sampled_from([marker, "  " + marker, marker + " ", "\t" + marker]))
    return f"<<{trim}{marker}\n" + "".join(ln + "\n" for ln in lines) + close


def values(depth: int = 2) -> st.SearchStrategy[str]:
    leaves = st.one_of(strings(), NUMBERS, st.sampled_from(["true", "false", "null"]), REFERENCES,
                       heredocs())  # fmt: skip
    if depth == 0:
        return leaves
    inner = values(depth - 1)
    seps = st.sampled_from([", ", ",", ",\n", "\n", " ,", ",\n\n", ", # c\n"])

    @st.composite
    def lists(draw: st.DrawFn) -> str:
        items = draw(st.lists(inner, max_size=4))
        out = "["
        for item in items:
            out += draw(st.sampled_from(["", " ", "\n"])) + item + draw(seps)
        if items and draw(st.booleans()):
            out = out.rstrip(", \n")
        return out + draw(st.sampled_from(["]", "\n]", " ]"]))

    @st.composite
    def objects(draw: st.DrawFn) -> str:
        items = draw(st.lists(st.tuples(st.one_of(NAMES, strings()), inner), max_size=4))
        out = "{" + draw(st.sampled_from(["", " ", "\n"]))
        for key, value in items:
            eq = draw(st.sampled_from([" = ", "=", ": ", " : "]))
            out += key + eq + value + draw(seps)
        return out + "}"

    return st.one_of(leaves, lists(), objects())


@st.composite
def bodies(draw: st.DrawFn, depth: int = 3) -> str:
    out = ""
    for _ in range(draw(st.integers(0, 4))):
        out += draw(st.sampled_from(["", "  ", "\t"]))
        name = draw(NAMES)
        if depth and draw(st.booleans()):
            labels = draw(st.lists(st.one_of(strings(), NAMES), max_size=2))
            inner = draw(bodies(depth - 1))
            out += " ".join([name, *labels]) + draw(st.sampled_from([" {", "{", " {\n"]))
            out += draw(st.sampled_from(["", "\n", " "])) + inner + "}"
        else:
            out += name + draw(st.sampled_from([" = ", "=", "  =  "])) + draw(values())
        out += draw(GAPS) + draw(NEWLINES)
    return out


@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies())
def test_generated_documents_read_the_same_both_ways(text: str) -> None:
    compare(text)
    compare('job "j" {\n' + text + "}\n")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(['"', "${", "}", "{", "[", "]", ",", "=", "\n", " ", "a", "1",
                                 "<<EOT\n", "EOT\n", "#", "/*", "*/", "-", ".", "\\", "x.y"]),
                max_size=30))  # fmt: skip
def test_token_soup_is_declined_or_read_the_same(tokens: list[str]) -> None:
    compare("a = " + "".join(tokens) + "\n")
    compare("".join(tokens))


# -- every file of the repository ---------------------------------------------------------------
def repository_files() -> list[Path]:
    globs = ["jobs/*.hcl", "tests/nomad_style/*", "tests/corpus/*", "examples/**/*.hcl",
             "contrib/**/*.hcl"]  # fmt: skip
    return sorted(p for g in globs for p in ROOT.glob(g) if p.is_file())


def test_every_file_of_the_repository_reads_the_same_both_ways() -> None:
    files = repository_files()
    took = [f for f in files if compare(f.read_text(encoding="utf-8-sig", errors="replace"))]
    assert len(files) >= 15
    # the job files people write take the fast path
    assert {f.name for f in took} >= {"flaky.hcl", "greeter.hcl", "report.hcl", "seeded.hcl"}


@pytest.mark.parametrize(
    "text",
    [
        'a = "x"\nb = [1, 2.5, true, null, "y"]\nc = { k = "v", "q-k" = 1 }\n',
        'task "t" {\n  config {\n    args = ["-c", "echo ${NOMAD_TASK_DIR}"]\n  }\n}\n',
        "data = <<EOT\nline\nEOT\nnext = 1\n",
        "data = <<-EOT\n    line\n  EOT\n",
        "a = 1 # comment\nb = 2 // another\n/* block\ncomment */ c = 3\n",
        'a = 1\r\nb = "x"\r\n',
        'env {\n  A = "1"\n}\nenv {\n  B = "2"\n}\na = 1\na = 2\n',
    ],
)
def test_the_shapes_of_job_files_take_the_fast_path(text: str) -> None:
    assert compare(text)


@pytest.mark.parametrize(
    "text",
    [
        "a = 1 b = 2\n",  # python-hcl2 reads it; the fast path leaves such files to it
        'a = "${x}"\na {}\n',  # a block named as an attribute: python-hcl2's error
        "a = [1,,2]\n",
        'a = "x\ny"\n',
        "a = 1e3\nb = x[*].y\n",
        'job "x" {\n' * 30 + "}\n" * 30,  # near the depth limit
    ],
)
def test_other_shapes_are_left_to_the_full_parser(text: str) -> None:
    assert not compare(text)


def test_limits_are_left_to_the_full_parser() -> None:
    many = "".join(f'K{i} = "v"\n' for i in range(hcl.MAX_TOKENS // 8))
    with pytest.raises(hclfast.Declined, match="token limit"):
        hclfast.parse(many, hcl.MAX_TOKENS, hcl.MAX_PARSE_SECONDS)
    deep = "a = " + "[" * (hcl.MAX_DEPTH + 1) + "]" * (hcl.MAX_DEPTH + 1) + "\n"
    with pytest.raises(hclfast.Declined, match="depth limit"):
        hclfast.parse(deep, hcl.MAX_TOKENS, hcl.MAX_PARSE_SECONDS)
    chain = "a = x" + ".y" * (hcl.MAX_DEPTH + 1) + "\n"
    with pytest.raises(hclfast.Declined, match="depth limit"):
        hclfast.parse(chain, hcl.MAX_TOKENS, hcl.MAX_PARSE_SECONDS)


def test_a_fast_parse_does_not_load_lark() -> None:
    probe = (
        "import sys\n"
        "from reconciler.spec.parse import parse_text\n"
        f"r = parse_text(open({str(ROOT / 'jobs' / 'report.hcl')!r}).read(), 'report.hcl')\n"
        "assert r.jobs and not r.problems, r.problems\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'hcl2')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout  # fmt: skip
    assert out.strip() == "[]"


def test_the_parse_cache_version_covers_the_fast_path(tmp_path: Path) -> None:
    """A parse kept in the store (spec/parsecache.py) is made again when the fast path
    changes: its key hashes every source of spec/."""
    import shutil

    from reconciler.spec import parsecache

    spec = tmp_path / "spec"
    shutil.copytree(Path(parsecache.__file__).parent, spec,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    version = parsecache.version_of(spec)
    for name in ("hclfast.py", "hcloutline.py", "hclfull.py"):
        (spec / name).write_text((spec / name).read_text() + "\n# changed\n")
        assert parsecache.version_of(spec) != version
        version = parsecache.version_of(spec)
