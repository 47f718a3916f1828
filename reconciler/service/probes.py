"""Non-blocking tcp and http(s) probes on one selector: a probe is a socket and a few
callbacks, never a thread. Script checks are the only ones that spawn (see checks.py)."""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.plan.health import Result

if TYPE_CHECKING:
    import ssl

OUTPUT_LIMIT = 3 * 1024  # Nomad keeps at most 3 KiB of a check's output


@dataclass(frozen=True)
class Target:
    kind: str  # http | tcp
    host: str
    port: int
    path: str = "/"
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    protocol: str = "http"
    tls_skip_verify: bool = False
    warn_429: bool = False  # Consul's provider: 429 Too Many Requests is a warning


Done = Callable[[Result, str], None]


def request_bytes(t: Target) -> bytes:
    host = f"[{t.host}]" if ":" in t.host else t.host
    lines = [f"{t.method} {t.path or '/'} HTTP/1.1"]
    names = {k.lower() for k, _ in t.headers}
    if "host" not in names:
        lines.append(f"Host: {host}:{t.port}")
    if "user-agent" not in names:
        lines.append("User-Agent: reconciler-check")
    lines += [f"{k}: {v}" for k, v in t.headers]
    body = t.body.encode()
    if body or t.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace") + body


def judge_http(head: bytes, body: bytes, warn_429: bool) -> tuple[Result, str]:
    """Nomad: a status below 400 passes (redirects are not followed here: a 3xx passes)."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return "critical", f"reconciler: not an HTTP response: {line[:200]!r}"
    code = int(parts[1])
    text = body[:OUTPUT_LIMIT].decode("utf-8", "replace")
    if 200 <= code < 400:
        return "passing", f"HTTP {code}" + ("" if code == 200 else f": {text}")
    if code == 429 and warn_429:
        return "warning", f"HTTP {code}: {text}"
    return "critical", f"HTTP {code}: {text}"


class Probe:
    """One probe in flight. `step` is called when its socket is ready; `finish` once."""

    __slots__ = ("_buf", "_head", "_sent", "deadline", "done", "phase", "sel", "sock", "target")

    def __init__(self, sel: selectors.BaseSelector, target: Target, deadline: float, done: Done):
        self.sel, self.target, self.deadline, self.done = sel, target, deadline, done
        self._buf = bytearray()
        self._head: bytes | None = None
        self._sent = 0
        self.phase = "connect"
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        self.sock: socket.socket | ssl.SSLSocket = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        err = self.sock.connect_ex((target.host, target.port))
        if err not in (0, errno.EINPROGRESS):
            self.finish(
                "critical", f"dial tcp {target.host}:{target.port}: {errno.errorcode.get(err, err)}"
            )
            return
        sel.register(self.sock, selectors.EVENT_WRITE, self)

    def _want(self, events: int) -> None:
        self.sel.modify(self.sock, events, self)

    def finish(self, result: Result, output: str) -> None:
        if self.phase == "done":
            return
        if self.phase != "connect" or self.sock.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.sock)
        self.phase = "done"
        self.sock.close()
        self.done(result, output)

    def step(self) -> None:
        try:
            self._step()
        except OSError as e:  # ssl's errors too; ssl is imported by the first https probe
            tls = sys.modules.get("ssl")
            if tls is not None and isinstance(e, tls.SSLWantReadError):
                self._want(selectors.EVENT_READ)
            elif tls is not None and isinstance(e, tls.SSLWantWriteError):
                self._want(selectors.EVENT_WRITE)
            else:
                self.finish("critical", f"{self.target.kind}: {e}")

    def _step(self) -> None:
        t = self.target
        if self.phase == "connect":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.finish(
                    "critical",
                    f"dial tcp {t.host}:{t.port}: {errno.errorcode.get(err, err)} ({err})",
                )
                return
            if t.kind == "tcp":
                self.finish("passing", "tcp ok")
                return
            if t.protocol == "https":
                import ssl  # only for https checks: 2 MB the service need not hold otherwise

                ctx = ssl.create_default_context()
                if t.tls_skip_verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self.sel.unregister(self.sock)
                self.sock = ctx.wrap_socket(self.sock, server_hostname=t.host,
                                            do_handshake_on_connect=False)  # fmt: skip
                self.sel.register(self.sock, selectors.EVENT_WRITE, self)
                self.phase = "handshake"
            else:
                self.phase = "send"
                self._buf = bytearray(request_bytes(t))
        if self.phase == "handshake":
            import ssl  # loaded already: the socket was wrapped

            assert isinstance(self.sock, ssl.SSLSocket)
            self.sock.do_handshake()
            self.phase = "send"
            self._buf = bytearray(request_bytes(t))
        if self.phase == "send":
            self._sent += self.sock.send(self._buf[self._sent :])
            if self._sent < len(self._buf):
                self._want(selectors.EVENT_WRITE)
                return
            self._buf = bytearray()
            self.phase = "recv"
            self._want(selectors.EVENT_READ)
            return
        if self.phase == "recv":
            chunk = self.sock.recv(8192)
            if chunk:
                self._buf += chunk
                if self._head is None and (end := self._buf.find(b"\r\n\r\n")) >= 0:
                    self._head = bytes(self._buf[:end])
                    del self._buf[: end + 4]
                if self._head is None or len(self._buf) < OUTPUT_LIMIT:
                    return
            if self._head is None:
                self._head = bytes(self._buf)
                self._buf = bytearray()
            self.finish(*judge_http(self._head, bytes(self._buf), t.warn_429))
