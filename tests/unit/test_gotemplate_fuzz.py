"""Fuzz the template engine: random and mutated templates render or raise TemplateError,
never anything else. Bounded in CI by FUZZ_EXAMPLES like the loader's fuzz."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec.gotemplate import (
    MISSING,
    Host,
    Iface,
    TemplateError,
    Workload,
    check,
    render,
    services_read,
)
from tests.unit.test_gotemplate import CONSUL, LANGUAGE
from tests.unit.test_nomad_services import CASES as SERVICE_CASES
from tests.unit.test_nomad_services import REGS, Registry

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))


class _Vars:
    def get(self, path: str) -> tuple[dict[str, str], tuple[str, str, int, int, int, int]] | None:
        if path == "nomad/jobs/j":
            return {"k": "v", "x": "y"}, ("default", path, 1, 2, 3, 4)
        return None

    def list(self, prefix: str) -> list[tuple[str, str, int, int, int, int]]:
        return [("default", "nomad/jobs/j", 1, 2, 3, 4)]


HOST = Host(
    variables=_Vars(),
    workload=Workload("j", "g", "t"),
    env={"A": "1", "B": ""},
    now=lambda: dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    interfaces=lambda: [Iface("eth0", ipaddress.ip_interface("10.1.2.3/8"), default_route=True)],
    services=Registry(REGS),
)
SEEDS = [text for text, _, _ in LANGUAGE + CONSUL] + [text for text, _ in SERVICE_CASES]
TOKENS = ["{{", "}}", "{{-", "-}}", " ", "\n", "$x", ":=", "=", "$", ".", ".a", ".b.c", "|",
          "(", ")", ",", '"s"', "`r`", "'c'", "1", "-2", "1.5", "0x1f", "1e400", "true", "nil",
          "if", "else", "end", "range", "with", "define", "template", "block", "break",
          "continue", '"T"', "/*", "*/", "eq", "and", "or", "not", "len", "index", "slice",
          "printf", '"%d %s %v %5.2f %q %x"', "print", "println", "html", "js", "urlquery",
          "split", "join", "toJSON", "parseJSON", "toYAML", "parseYAML", "loop", "add",
          "divide", "modulo", "env", "timestamp", "sockaddr", "regexMatch", '"(a+)+$"',
          "base64Decode", "key", '"nomad/jobs/j"', "nomadVar", "nomadVarList", ".Keys", ".k.Value",
          "nomadService", "nomadServices", '"v1.api"', '"api@eu"', '"@global"', ".Port", ".Tags",
          "\\", "\x00", "\ufffd", "\ud800"]  # fmt: skip
DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),  # fmt: skip
    max_leaves=6,
)


def attempt(text: str, data: Any = MISSING) -> None:
    for missing in (False, True):
        try:
            out = render(text, HOST, data=data, missing_key_error=missing)
            out.encode("utf-8")
        except TemplateError as e:
            assert str(e)
    try:
        check(text)
    except TemplateError as e:
        assert str(e)
    assert isinstance(services_read(text), frozenset)  # never raises


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(TOKENS), max_size=40), DATA)
def test_random_token_soup(tokens: list[str], data: Any) -> None:
    attempt("".join(tokens), data)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "swap"]))
        if op == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 10)) :]
        else:
            a, b = sorted((pos, draw(st.integers(0, len(text)))))
            text = text[:a] + text[b:] + text[a:b]
    return text


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated(), DATA)
def test_mutated_templates(text: str, data: Any) -> None:
    attempt(text, data)


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=60), DATA)
def test_arbitrary_text(text: str, data: Any) -> None:
    attempt(text, data)
    attempt("{{" + text + "}}", data)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    attempt("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}")
    attempt("{{ if 1 }}" * 3000 + "x" + "{{ end }}" * 3000)
    attempt('{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}')
    attempt("{{ range loop 100000000 }}x{{ end }}")
