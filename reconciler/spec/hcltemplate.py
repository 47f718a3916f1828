"""HCL2 templates: quoted strings, heredocs, `${…}` interpolations, `%{if}`/`%{for}` directives,
`~` strip markers and the `$${` / `%%{` escapes (the template half of hclsyntax's parser)."""

from __future__ import annotations

import re

from reconciler.spec.hclast import HclSyntaxError, Lit, Node, Template, TFor, TIf

_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_-]*)\r?\n")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class TemplateParser:
    """Mixed into the expression parser, which provides the methods below that raise."""

    src: str
    i: int
    depth: int

    def expression(self) -> Node:
        raise NotImplementedError

    def ident(self) -> str | None:
        raise NotImplementedError

    def accept(self, token: str) -> bool:
        raise NotImplementedError

    def keyword(self, word: str) -> bool:
        raise NotImplementedError

    def expect(self, token: str, what: str = "") -> None:
        raise NotImplementedError

    def skip(self) -> None:
        raise NotImplementedError

    def enter(self) -> None:
        raise NotImplementedError

    def heredoc(self) -> Node:
        pos = self.i
        m = _HEREDOC.match(self.src, pos)
        if m is None:
            raise HclSyntaxError("a heredoc starts with <<NAME or <<-NAME and a newline", pos)
        trim, marker = m.group(1) == "-", m.group(2)
        body_start = m.end()
        close = re.compile(r"^[ \t]*" + re.escape(marker) + r"[ \t]*\r?$", re.M)
        end = close.search(self.src, body_start)
        if end is None:
            raise HclSyntaxError(f"heredoc {marker} is never closed", pos)
        self.i = end.end()
        sub = type(self)(self.src)  # type: ignore[call-arg]
        sub.i = body_start
        tpl = sub.template_until(end.start(), heredoc=True, start=pos)
        if trim:
            body = self.src[body_start : end.start()].split("\n")
            indents = [len(ln) - len(ln.lstrip(" \t")) for ln in body if ln.strip()]
            tpl = _dedent(tpl, self.src, body_start, min(indents) if indents else 0)
        return tpl

    def template_until(self, end: int, heredoc: bool, start: int) -> Template:
        """Template parts up to `end` (heredoc) or the closing quote (end < 0)."""
        parts, _ = self._template_parts(end, heredoc, stop=())
        return Template(start, tuple(_merge(parts)))

    def _template_parts(
        self, end: int, heredoc: bool, stop: tuple[str, ...]
    ) -> tuple[list[Node], str | None]:
        """Parts until the end, or until a directive named in `stop` (returned, consumed)."""
        parts: list[Node] = []
        buf: list[str] = []
        text_pos = self.i
        src = self.src
        limit = end if end >= 0 else len(src)

        def flush() -> None:
            if buf:
                parts.append(Lit(text_pos, "".join(buf)))
                buf.clear()

        while True:
            if self.i >= limit:
                if end < 0:
                    raise HclSyntaxError("unterminated string", self.i)
                flush()
                if stop:
                    raise HclSyntaxError(f"missing %{{{stop[0]}}}", self.i)
                return parts, None
            c = src[self.i]
            if end < 0 and c == '"':
                self.i += 1
                flush()
                if stop:
                    raise HclSyntaxError(f"missing %{{{stop[0]}}}", self.i)
                return parts, None
            if end < 0 and c == "\n":
                raise HclSyntaxError("a quoted string cannot span lines (use a heredoc)", self.i)
            if src.startswith("$${", self.i) or src.startswith("%%{", self.i):
                buf.append(c + "{")
                self.i += 3
                continue
            if src.startswith("${", self.i):
                flush()
                self.i += 2
                strip_left = self._strip_marker()
                expr = self.expression()
                strip_right = self._close_directive()
                if strip_left:
                    _rstrip_last(parts)
                parts.append(expr)
                if strip_right:
                    self._skip_template_space(limit)
                text_pos = self.i
                continue
            if src.startswith("%{", self.i):
                flush()
                dpos = self.i
                self.i += 2
                strip_left = self._strip_marker()
                if strip_left:
                    _rstrip_last(parts)
                word = self.ident() or ""
                if word in stop:
                    strip_right = self._close_directive()
                    if strip_right:
                        self._skip_template_space(limit)
                    return parts, word
                if word == "if":
                    parts.append(self._if_directive(dpos, end, heredoc, limit))
                elif word == "for":
                    parts.append(self._for_directive(dpos, end, heredoc, limit))
                else:
                    raise HclSyntaxError(f"unexpected template directive %{{{word}}}", dpos)
                text_pos = self.i
                continue
            if c == "\\" and not heredoc:
                buf.append(self._escape())
                continue
            buf.append(c)
            self.i += 1

    def _if_directive(self, pos: int, end: int, heredoc: bool, limit: int) -> Node:
        self.enter()
        try:
            cond = self.expression()
            if self._close_directive():
                self._skip_template_space(limit)
            then, word = self._template_parts(end, heredoc, stop=("else", "endif"))
            other: list[Node] = []
            if word == "else":
                other, _ = self._template_parts(end, heredoc, stop=("endif",))
            return TIf(
                pos, cond, Template(pos, tuple(_merge(then))), Template(pos, tuple(_merge(other)))
            )
        finally:
            self.depth -= 1

    def _for_directive(self, pos: int, end: int, heredoc: bool, limit: int) -> Node:
        self.enter()
        try:
            first = self.ident()
            if first is None:
                raise HclSyntaxError("expected a variable name after %{for", self.i)
            second = self.ident() if self.accept(",") else None
            if not self.keyword("in"):
                raise HclSyntaxError("expected 'in' in %{for}", self.i)
            coll = self.expression()
            if self._close_directive():
                self._skip_template_space(limit)
            body, _ = self._template_parts(end, heredoc, stop=("endfor",))
            key_var, val_var = (first, second) if second is not None else (None, first)
            return TFor(pos, key_var, val_var, coll, Template(pos, tuple(_merge(body))))
        finally:
            self.depth -= 1

    def _strip_marker(self) -> bool:
        if self.src.startswith("~", self.i):
            self.i += 1
            return True
        return False

    def _close_directive(self) -> bool:
        """`}` or `~}`; True for the strip marker."""
        self.skip()
        if self.src.startswith("~}", self.i):
            self.i += 2
            return True
        self.expect("}", " closing the template sequence")
        return False

    def _skip_template_space(self, limit: int) -> None:
        while self.i < limit and self.src[self.i] in " \t\r\n":
            self.i += 1

    def _escape(self) -> str:
        src, i = self.src, self.i
        nxt = src[i + 1 : i + 2]
        if nxt in _ESCAPES:
            self.i += 2
            return _ESCAPES[nxt]
        if nxt in ("u", "U"):
            width = 4 if nxt == "u" else 8
            digits = src[i + 2 : i + 2 + width]
            if len(digits) == width and all(d in "0123456789abcdefABCDEF" for d in digits):
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    self.i += 2 + width
                    return chr(code)
            raise HclSyntaxError(f"invalid unicode escape \\{nxt}{digits}", i)
        raise HclSyntaxError(f"invalid escape sequence \\{nxt}", i)


def _merge(parts: list[Node]) -> list[Node]:
    out: list[Node] = []
    for p in parts:
        if isinstance(p, Lit) and out and isinstance(out[-1], Lit):
            prev = out[-1]
            out[-1] = Lit(prev.pos, str(prev.value) + str(p.value))
        elif not (isinstance(p, Lit) and p.value == ""):
            out.append(p)
    return out


def _rstrip_last(parts: list[Node]) -> None:
    last = parts[-1] if parts else None
    if isinstance(last, Lit) and isinstance(last.value, str):
        parts[-1] = Lit(last.pos, last.value.rstrip(" \t\r\n"))


def _dedent(tpl: Template, src: str, body_start: int, cut: int) -> Template:
    """`<<-`: remove the common indentation from the start of every literal line."""
    parts: list[Node] = []
    for p in tpl.parts:
        if isinstance(p, Lit) and isinstance(p.value, str):
            lines = p.value.split("\n")
            at_start = p.pos == body_start or src[p.pos - 1 : p.pos] == "\n"
            for k, line in enumerate(lines):
                if k > 0 or at_start:
                    n = len(line) - len(line.lstrip(" \t"))
                    lines[k] = line[min(n, cut) :]
            parts.append(Lit(p.pos, "\n".join(lines)))
        elif isinstance(p, TIf):
            then = _dedent(p.then, src, body_start, cut)
            parts.append(TIf(p.pos, p.cond, then, _dedent(p.other, src, body_start, cut)))
        elif isinstance(p, TFor):
            body = _dedent(p.body, src, body_start, cut)
            parts.append(TFor(p.pos, p.key_var, p.val_var, p.coll, body))
        else:
            parts.append(p)
    return Template(tpl.pos, tuple(parts))
