"""The Go template engine against a table of cases whose outputs follow Go's text/template and
consul-template's documented semantics: (template, data, expected output or error)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

import pytest

from reconciler.spec.gotemplate import MISSING, Host, Iface, TemplateError, check, render


class Err:
    def __init__(self, part: str) -> None:
        self.part = part

    def __repr__(self) -> str:
        return f"Err({self.part!r})"


N = MISSING  # Nomad renders with no data: dot is nil
L = {"l": ["a", "b"], "m": {"k": "v"}, "nested": [[1, 2]]}

LANGUAGE: list[tuple[str, Any, object]] = [
    ("hello", N, "hello"),
    ('{{ "a" }}{{ `r\\n` }}', N, "ar\\n"),
    ("{{ 3 }} {{ -4 }} {{ 1.5 }} {{ 1e3 }} {{ 0x1F }} {{ 'a' }} {{ 0o17 }} {{ 017 }} {{ 1_000 }}",
     N, "3 -4 1.5 1000 31 97 15 15 1000"),
    ("{{ true }} {{ false }}", N, "true false"),
    ("{{ nil }}", N, Err("nil is not a command")),
    ("{{ .name }}", {"name": "web"}, "web"),
    ("{{ .a.b.c }}", {"a": {"b": {"c": 7}}}, "7"),
    ("{{ .nope }}", {}, "<no value>"),
    ("{{ .a.b }}", {}, "<no value>"),
    ("{{ .a.b }}", {"a": None}, Err("nil pointer evaluating interface {}.b")),
    ("{{ .Foo }}", N, "<no value>"),
    ("{{ .s.x }}", {"s": "str"}, Err("can't evaluate field x in type string")),
    ('{{ $x := "a" }}{{ $x }}{{ $x = "b" }}{{ $x }}', N, "ab"),
    ("{{ $y }}", N, Err('undefined variable "$y"')),
    ("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}", N, Err('undefined variable "$x"')),
    ("{{ range .items }}{{ $.prefix }}{{ . }} {{ end }}", {"prefix": "p-", "items": ["a", "b"]},
     "p-a p-b "),
    ("{{ if eq .n 1 }}one{{ else if eq .n 2 }}two{{ else }}many{{ end }}", {"n": 2}, "two"),
    ("{{ if eq .n 1 }}one{{ else if eq .n 2 }}two{{ else }}many{{ end }}", {"n": 5}, "many"),
    ('{{ if "" }}a{{ else }}b{{ end }}{{ if 0 }}a{{ else }}b{{ end }}{{ if .l }}a{{ else }}b'
     "{{ end }}{{ if .m }}a{{ else }}b{{ end }}{{ if 0.0 }}a{{ else }}b{{ end }}",
     {"l": [], "m": {}}, "bbbbb"),
    ('{{ if "x" }}a{{ end }}{{ if 1 }}a{{ end }}{{ if .l }}a{{ end }}{{ if .m }}a{{ end }}',
     {"l": [0], "m": {"a": 1}}, "aaaa"),
    ("{{ with .user }}{{ .name }}{{ else }}anon{{ end }}", {"user": {"name": "bob"}}, "bob"),
    ("{{ with .user }}{{ .name }}{{ else }}anon{{ end }}", {}, "anon"),
    ("{{ with .a }}A{{ else with .b }}B{{ . }}{{ end }}", {"b": 2}, "B2"),
    ("{{ range $i, $v := . }}{{ $i }}:{{ $v }},{{ end }}", ["x", "y"], "0:x,1:y,"),
    ("{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}", {"b": 2, "a": 1, "c": 3},
     "a=1;b=2;c=3;"),
    ("{{ range $v := . }}{{ $v }}{{ end }}", {"b": 2, "a": 1}, "12"),
    ("{{ range . }}x{{ else }}empty{{ end }}", [], "empty"),
    ("{{ range .none }}x{{ else }}empty{{ end }}", {}, "empty"),
    ("{{ range 3 }}{{ . }}{{ end }}", N, "012"),
    ("{{ range . }}{{ if eq . 3 }}{{ break }}{{ end }}{{ if eq . 1 }}{{ continue }}{{ end }}"
     "{{ . }}{{ end }}", [0, 1, 2, 3, 4], "02"),
    ("{{ break }}", N, Err("{{break}} outside {{range}}")),
    ('{{ range "abc" }}x{{ end }}', N, Err("range can't iterate over abc")),
    ('{{ define "item" }}<{{ . }}>{{ end }}{{ template "item" "a" }}{{ template "item" 1 }}', N,
     "<a><1>"),
    ('{{ define "T" }}[{{ . }}]{{ end }}{{ template "T" }}', N, "[<no value>]"),
    ('{{ block "b" . }}({{ . }}){{ end }}', "x", "(x)"),
    ('{{ define "b" }}x{{ end }}{{ block "b" . }}y{{ end }}', N,
     Err('multiple definition of template "b"')),
    ('{{ template "nope" }}', N, Err('no such template "nope"')),
    ("a{{/* note */}}b a {{- /* x */ -}} b", N, "ab ab"),
    ("{{ /* x */ }}", N, Err("bad character U+002F")),
    ('a  {{- "b" -}}  c|x\n  {{- 1 }}\n', N, "abc|x1\n"),
    ("{{-3}}", N, "-3"),
    ("{{ .a", N, Err("unclosed action")),
    ("{{ end }}", N, Err("unexpected {{end}}")),
    ("{{ if true }}x", N, Err("unexpected EOF")),
    ('{{ "abc" | printf "%s-%s" "x" }}', N, "x-abc"),
    ('{{ printf "%d" (len "abc") }}', N, "3"),
    ('{{ (index . "m").k }}', {"m": {"k": "v"}}, "v"),
    ('{{ and 1 0 2 }} {{ or 0 "" "x" }} {{ and 1 2 }} [{{ or 0 "" }}]', N, "0 x 2 []"),
    ("{{ and false (index . 5) }}", [], "false"),
    ('{{ not 0 }} {{ not "a" }}', N, "true false"),
    ('{{ eq 2 1 2 }} {{ eq "a" "b" }} {{ eq .x "a" }}', {}, "true false false"),
    ('{{ eq 1 "1" }}', N, Err("incompatible types for comparison")),
    ('{{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }}', N,
     "true true true true false"),
    ("{{ lt 1 1.5 }}", N, Err("incompatible types for comparison")),
    ('{{ len "héllo" }} {{ len .l }} {{ len .m }}', L, "6 2 1"),
    ("{{ len 3 }}", N, Err("len of type int")),
    ('{{ index .l 1 }} {{ index .m "k" }} {{ index .nested 0 1 }} {{ index .m "zz" }}', L,
     "b v 2 <no value>"),
    ("{{ index .l 5 }}", L, Err("index out of range: 5")),
    ('{{ index "abc" 1 }}', N, "98"),
    ('{{ slice "abcdef" 1 3 }} {{ slice .l 1 }} {{ slice .l }}', {"l": [1, 2, 3]},
     "bc [2 3] [1 2 3]"),
    ('{{ print "a" 1 2 "b" }}|{{ println "a" 1 }}', N, "a1 2b|a 1\n"),
    ('{{ printf "%s|%d|%v|%q|%x|%X|%f|%t|%%" "s" 42 .l "q" 255 "hi" 1.5 true }}',
     {"l": [1, "a"]}, 's|42|[1 a]|"q"|ff|6869|1.500000|true|%'),
    ('{{ printf "[%5s][%-5s][%05d][%.2f][%8.3f][%x][%+d]" "ab" "ab" 42 3.14159 2.5 -255 5 }}', N,
     "[   ab][ab   ][00042][3.14][   2.500][-ff][+5]"),
    ('{{ printf "%d %d" 1 }}|{{ printf "%d" "x" }}|{{ printf "%s" 1 2 }}', N,
     "1 %!d(MISSING)|%!d(string=x)|%!s(int=1)%!(EXTRA int=2)"),
    ('{{ printf "%v %v %v %v" 1.0 1e21 0.000001 123456789.0 }}', N, "1 1e+21 1e-06 1.23456789e+08"),
    ("{{ . }}", {"b": [1, 2], "a": "x"}, "map[a:x b:[1 2]]"),
    ("{{ html \"<a href='x'>&\" }}", N, "&lt;a href=&#39;x&#39;&gt;&amp;"),
    ('{{ js "it\'s \\"q\\" <b>" }}', N, "it\\'s \\\"q\\\" \\u003Cb\\u003E"),
    ('{{ urlquery "a b&c=d/é" }}', N, "a+b%26c%3Dd%2F%C3%A9"),
    ("{{ nope }}", N, Err('function "nope" not defined')),
    ("{{ len }}", N, Err("wrong number of args for len: want 1 got 0")),
    ("{{ toUpper 3 }}", N, Err("expected string; found 3")),
    ('{{ "a" "b" }}', N, Err("can't give argument to non-function")),
    ('{{ "a" | "b" }}', N, Err("non executable command in pipeline stage 2")),
]  # fmt: skip

CLOCK = dt.datetime(2024, 3, 5, 6, 7, 8, tzinfo=dt.UTC)
IFACES = [
    Iface("lo", ipaddress.ip_interface("127.0.0.1/8")),
    Iface("eth0", ipaddress.ip_interface("10.0.0.5/24"), default_route=True),
    Iface("eth0", ipaddress.ip_interface("fe80::1/64"), default_route=True),
    Iface("docker0", ipaddress.ip_interface("172.17.0.1/16")),
]

CONSUL: list[tuple[str, Any, object]] = [
    ('{{ env "HOME" }}|{{ env "NOPE" }}', N, "/h|"),
    ('{{ envOrDefault "NOPE" "d" }}|{{ envOrDefault "EMPTY" "d" }}', N, "d|"),
    ('{{ mustEnv "NOPE" }}', N, Err("required environment variable NOPE is empty")),
    ('{{ join ";" (split "," "a,b,,c") }} {{ len (split "," "") }}', N, "a;b;;c 0"),
    ('{{ range split "," "x,y" }}[{{ . }}]{{ end }}', N, "[x][y]"),
    ('{{ replaceAll "." "-" "a.b.c" }}', N, "a-b-c"),
    ('{{ regexReplaceAll "(\\\\w+)@(\\\\w+)" "$2 at $1" "me@host" }}', N, "host at me"),
    ('{{ regexReplaceAll "a(x*)b" "${1}W" "-ab-axxb-" }}|'
     '{{ regexReplaceAll "a(x*)b" "$1W" "-ab-axxb-" }}', N, "-W-xxW-|---"),
    ('{{ regexMatch "^v[0-9]+$" "v12" }} {{ regexMatch "^v[0-9]+$" "x" }}', N, "true false"),
    ('{{ toUpper "ab" }} {{ toLower "AB" }} {{ toTitle "hello wide world" }} '
     '[{{ trimSpace "  x \\n" }}]', N, "AB ab Hello Wide World [x]"),
    ('{{ trim "-" "--x--" }} {{ trimPrefix "v" "v1.2" }} {{ trimSuffix ".txt" "a.txt" }}', N,
     "x 1.2 a"),
    ('{{ contains "b" "abc" }} {{ "abc" | contains "z" }} {{ in .l "x" }}', {"l": ["x"]},
     "true false true"),
    ("{{ containsAny .want .have }} {{ containsAll .want .have }} "
     "{{ containsNone .want .have }}", {"want": ["a", "z"], "have": ["a", "b"]},
     "true false false"),
    ("{{ with parseJSON .j }}{{ .name }} {{ index .ports 0 }}{{ end }}",
     {"j": '{"name":"api","ports":[8080]}'}, "api 8080"),
    ("{{ toJSON . }}", {"b": [1, 2.5, None, True], "a": "<x>&"},
     '{"a":"\\u003cx\\u003e\\u0026","b":[1,2.5,null,true]}'),
    ("{{ toJSONPretty . }}", {"a": 1, "b": [1]}, '{\n  "a": 1,\n  "b": [\n    1\n  ]\n}'),
    ("{{ toYAML . }}", {"b": ["x", "y"], "a": 1}, "a: 1\nb:\n- x\n- y"),
    ('{{ add (parseInt "40") 2 }} {{ parseFloat "1.5" }} {{ parseBool "true" }} '
     '{{ parseInt "" }}', N, "42 1.5 true 0"),
    ('{{ parseInt "x1" }}', N, Err("error calling parseInt")),
    ('{{ base64Encode "hi there" }} {{ base64Decode "aGkgdGhlcmU=" }} {{ base64URLEncode "??>" }}',
     N, "aGkgdGhlcmU= hi there Pz8-"),
    ('{{ sha256Hex "abc" }} {{ md5sum "abc" }}', N,
     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad "
     "900150983cd24fb0d6963f7d28e17f72"),
    ("{{ range loop 2 5 }}{{ . }}{{ end }}|{{ range $i := loop 3 }}{{ $i }}{{ end }}", N,
     "234|012"),
    ("{{ add 2 3 }} {{ subtract 2 10 }} {{ multiply 4 2.5 }} {{ divide 4 10 }} {{ modulo 4 10 }}"
     " {{ minimum 3 7 }} {{ maximum 3 7 }}", N, "5 8 10 2 2 3 7"),
    ('{{ timestamp }} {{ timestamp "unix" }} {{ timestamp "2006-01-02 Jan Mon 3PM" }}', N,
     "2024-03-05T06:07:08Z 1709618828 2024-03-05 Mar Tue 6AM"),
    ('{{ sockaddr "GetPrivateIP" }}|{{ sockaddr "GetInterfaceIP \\"docker0\\"" }}|'
     '{{ sockaddr "GetInterfaceIP \\"lo\\"" }}|{{ sockaddr "GetPublicIP" }}|'
     '{{ sockaddr "GetInterfaceIPs \\"eth0\\"" }}', N, "10.0.0.5|172.17.0.1|||10.0.0.5 fe80::1"),
    ('{{ sockaddr "GetAllInterfaces" }}', N, Err('sockaddr "GetAllInterfaces" is not supported')),
    ('{{ range $k, $v := splitToMap "," "=" "a=1,b=2" }}{{ $k }}:{{ $v }} {{ end }}', N,
     "a:1 b:2 "),
    ('{{ indent 2 "a\\nb" }}', N, "  a\n  b"),
    ("{{ (explodeMap .).a.b }}", {"a/b": 1}, "1"),
    ("{{ mergeMap .x .y }}", {"x": {"a": 1}, "y": {"a": 2, "b": 3}}, "map[a:1 b:3]"),
    ('{{ key "x" }}', N, Err('function "key" needs a Consul cluster')),
    ('{{ with secret "x" }}{{ end }}', N, Err('function "secret" needs Vault')),
    ('{{ nomadService "db" }}', N, Err("the service registry is not available here")),
    ('{{ plugin "x" }}', N, Err("is disabled in Nomad's template sandbox")),
    ('{{ sprig_upper "x" }}', N, Err("Sprig functions are not supported")),
]  # fmt: skip

HOST = Host(env={"HOME": "/h", "EMPTY": ""}, now=lambda: CLOCK, interfaces=lambda: IFACES)


def run(text: str, data: Any, missing_key_error: bool = False) -> str:
    return render(text, HOST, data=data, missing_key_error=missing_key_error)


@pytest.mark.parametrize(("text", "data", "expected"), LANGUAGE + CONSUL)
def test_table(text: str, data: Any, expected: object) -> None:
    if isinstance(expected, Err):
        with pytest.raises(TemplateError) as info:
            run(text, data)
        assert expected.part in str(info.value)
    else:
        assert run(text, data) == expected


def test_table_is_large_enough() -> None:
    assert len(LANGUAGE + CONSUL) >= 60


def test_missing_key_follows_error_on_missing_key() -> None:
    assert run("{{ .nope }}", {}) == "<no value>"
    with pytest.raises(TemplateError, match='map has no entry for key "nope"'):
        run("{{ .nope }}", {}, missing_key_error=True)
    with pytest.raises(TemplateError, match='nil data; no entry for key "Foo"'):
        run("{{ .Foo }}", N, missing_key_error=True)


def test_custom_delimiters() -> None:
    out = render("[[ .a ]] {{ .a }} x [[- .a -]] y", HOST, data={"a": 1}, left="[[", right="]]")
    assert out == "1 {{ .a }} x1y"


def test_errors_carry_line_and_column() -> None:
    with pytest.raises(TemplateError) as info:
        check('line one\n  {{ env "A" }} {{ key "x" }}\n')
    assert (info.value.line, info.value.col) == (2, 20)
    assert str(info.value).startswith("line 2, column 20: ")
    with pytest.raises(TemplateError) as info:
        run("ok\n{{ index .l 9 }}", L)
    assert info.value.line == 2


def test_check_refuses_unsupported_sockaddr_without_rendering() -> None:
    with pytest.raises(TemplateError, match="GetAllInterfaces"):
        check('{{ sockaddr "GetAllInterfaces | attr \\"address\\"" }}')
    check('{{ sockaddr "GetPrivateIP" }}')
