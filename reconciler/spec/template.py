"""The template subset reconciler renders: plain text, `{{ env "NAME" }}` and comments.

consul-template's Consul, Vault and Nomad-variable functions need a cluster; a template that
uses them is refused at validation, never rendered blank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.spec.models import Template

_ENV = re.compile(r'env\s+"([^"\\]*)"')
_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def _actions(t: Template, text: str) -> list[tuple[int, int, str]]:
    left, right = re.escape(t.left_delimiter), re.escape(t.right_delimiter)
    pattern = re.compile(left + r"(-?)(.*?)(-?)" + right, re.S)
    return [(m.start(), m.end(), m.group(0)) for m in pattern.finditer(text)]


def _body(t: Template, action: str) -> tuple[str, bool, bool]:
    inner = action[len(t.left_delimiter) : -len(t.right_delimiter)]
    trim_left = inner.startswith("- ") or inner == "-"
    trim_right = inner.endswith(" -")
    inner = inner[2:] if trim_left else inner
    inner = inner[:-2] if trim_right else inner
    return inner.strip(), trim_left, trim_right


def check_template(t: Template, text: str | None = None) -> str | None:
    """Why this template is outside the supported subset, or None."""
    text = t.data if text is None else text
    if text is None:
        return None
    for _, _, action in _actions(t, text):
        inner, _, _ = _body(t, action)
        if _ENV.fullmatch(inner) or _COMMENT.fullmatch(inner):
            continue
        return (
            f"template action {action!r} is not supported: reconciler renders "
            '{{ env "NAME" }} and comments (no Consul, Vault or Nomad variables)'
        )
    return None


def render(t: Template, text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    pos = 0
    for start, end, action in _actions(t, text):
        inner, trim_left, trim_right = _body(t, action)
        chunk = text[pos:start]
        out.append(chunk.rstrip() if trim_left else chunk)
        if m := _ENV.fullmatch(inner):
            out.append(env.get(m.group(1), ""))
        pos = end
        if trim_right:
            while pos < len(text) and text[pos].isspace():
                pos += 1
    out.append(text[pos:])
    return "".join(out)
