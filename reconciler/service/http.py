"""The HTTP listener (`reconciler run --http-addr 127.0.0.1:4646`): a subset of Nomad's HTTP
API in Nomad's JSON shapes (routes in api.py), and the dashboard at /ui/.

It reads the store read-only and sends every action through the loop's request queue, as the
control socket does. With a token in the node configuration every /v1 request must carry it
(`X-Nomad-Token`); without one, only loopback clients are served.
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import json
import logging
import mimetypes
import re
import select
import socket
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from reconciler.executor.linux.memory import trim_heap
from reconciler.service import threads

log = logging.getLogger("reconciler")
# A reply larger than this goes out chunked in pieces of about this size (a list of 1,000
# allocations is megabytes of JSON), and the heap is trimmed after it.
BIG_REPLY = 256 * 1024


class HttpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Request:
    def __init__(self, method: str, path: str, query: dict[str, list[str]], body: Any,
                 params: tuple[str, ...]) -> None:  # fmt: skip
        self.method, self.path, self.query, self.body, self.params = (
            method, path, query, body, params,
        )  # fmt: skip

    def fields(self) -> dict[str, Any]:
        """The JSON body as an object ({} when there is none); anything else is refused."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return self.body

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.arg(name, "")
        if v == "":
            return default
        if v.lower() in ("1", "t", "true"):
            return True
        if v.lower() in ("0", "f", "false"):
            return False
        raise HttpError(400, f"failed to parse {name} field to boolean: {v!r}")

    def number(self, name: str, default: int = 0) -> int:
        v = self.arg(name, "")
        try:
            return int(v) if v else default
        except ValueError:
            raise HttpError(400, f"error parsing {name}: {v!r} is not a number") from None


class Stream:
    """A streamed reply: chunks of bytes until the generator ends or the client leaves. An
    empty chunk sends nothing; the listener only checks that the client is still there."""

    def __init__(self, chunks: Iterator[bytes], content_type: str = "application/json") -> None:
        self.chunks, self.content_type = chunks, content_type


Handler = Callable[[Request], Any]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, methods: str, pattern: str, handler: Handler) -> None:
        for m in methods.split():
            self.routes.append((m, re.compile(pattern + r"\Z"), handler))

    def find(self, method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
        allowed = False
        for m, rx, handler in self.routes:
            if found := rx.match(path):
                if m == method:
                    return handler, tuple(unquote(g) for g in found.groups())
                allowed = True
        if allowed:
            raise HttpError(405, f"Invalid method {method} for {path}")
        raise HttpError(404, f"Invalid URL path: {path}")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    router: Router
    token: str

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        threads.name_this_thread("http-req")
        super().process_request_thread(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "reconciler"
    # HTTP/1.1: streams go out chunked, so a client sees each frame as it is written
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            if url.path == "/" or url.path == "/ui":
                self._redirect("/ui/")
                return
            if url.path.startswith("/ui/"):
                self._static(url.path.removeprefix("/ui/"))
                return
            self._authorize()
            handler, params = self.server.router.find(method, url.path)
            body = self._body() if method in ("POST", "PUT") else None
            result = handler(Request(method, url.path, parse_qs(url.query), body, params))
        except HttpError as e:
            self._send(e.code, str(e).encode(), "text/plain; charset=utf-8")
            return
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as e:
            log.exception("HTTP %s %s", method, url.path)
            self._send(500, f"{type(e).__name__}: {e}".encode(), "text/plain; charset=utf-8")
            return
        if isinstance(result, Stream):
            self._stream(result)
            trim_heap()
        elif isinstance(result, bytes):
            self._send(200, result, "text/plain; charset=utf-8")
        else:
            pieces = _json_pieces(result)
            del result
            first = next(pieces)
            if (second := next(pieces, None)) is None:
                self._send(200, first, "application/json")
            else:  # megabytes of allocations go out in pieces, never as one string
                self._chunked(itertools.chain((first, second), pieces))
                trim_heap()

    def _chunked(self, pieces: Iterator[bytes]) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _authorize(self) -> None:
        token = self.server.token
        if token:
            given = self.headers.get("X-Nomad-Token") or ""
            auth = self.headers.get("Authorization") or ""
            if auth.startswith("Bearer "):
                given = given or auth.removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise HttpError(403, "Permission denied: a valid X-Nomad-Token is required")
        elif not is_loopback(self.client_address[0]):
            raise HttpError(
                403,
                "Permission denied: without a token (reconciler { http_token = ... } in the node "
                "configuration) only loopback clients are served",
            )

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 4 << 20:
            raise HttpError(413, "request body over 4 MiB")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise HttpError(400, f"request body is not JSON: {e}") from None

    def _send(self, code: int, data: bytes, content_type: str) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _client_gone(self) -> bool:
        return _peek_closed(self.connection)

    def _redirect(self, where: str) -> None:
        self.send_response(307)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _static(self, name: str) -> None:
        name = name or "index.html"
        if not re.fullmatch(r"[a-z0-9_-]+\.(html|js|css|svg)", name):
            self._send(404, b"not found", "text/plain")
            return
        try:
            data = resources.files("reconciler.web").joinpath(name).read_bytes()
        except (FileNotFoundError, OSError):
            self._send(404, b"not found", "text/plain")
            return
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(200, data, kind + ("; charset=utf-8" if kind.startswith("text") else ""))

    def _stream(self, s: Stream) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", s.content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            for chunk in s.chunks:
                # Before every write: the first write after a hang-up succeeds, so a stream
                # that sends only heartbeats would otherwise outlive its client by two of them.
                if self._client_gone():
                    return
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            close = getattr(s.chunks, "close", None)
            if close:
                close()
            self.close_connection = True


_COMPACT = (",", ":")


def _json_pieces(value: Any, size: int = BIG_REPLY) -> Iterator[bytes]:
    """A reply's JSON in pieces of about `size` bytes: lists (at the top or as a value of the
    top object) are encoded item by item, so a list of 1,000 allocations is never one string."""
    buf: list[str] = []
    held = 0

    def put(text: str) -> Iterator[bytes]:
        nonlocal held
        buf.append(text)
        held += len(text)
        if held >= size:
            yield "".join(buf).encode()
            buf.clear()
            held = 0

    def items(v: Any) -> Iterator[bytes]:
        if not isinstance(v, list):
            yield from put(json.dumps(v, separators=_COMPACT))
            return
        yield from put("[")
        for n, item in enumerate(v):
            yield from put(("," if n else "") + json.dumps(item, separators=_COMPACT))
        yield from put("]")

    if isinstance(value, dict):
        yield from put("{")
        for n, (k, v) in enumerate(value.items()):
            yield from put(("," if n else "") + json.dumps(str(k)) + ":")
            yield from items(v)
        yield from put("}")
    else:
        yield from items(value)
    if buf:
        yield "".join(buf).encode()


class _Server6(Server):
    address_family = socket.AF_INET6


def _peek_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed its end (a readable socket with nothing to read)."""
    try:  # poll, not select: with a thousand tasks the socket's number may be past 1,024
        p = select.poll()
        p.register(sock, select.POLLIN)
        return bool(p.poll(0)) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def serve(router: Router, addr: str, token: str, poll: float = 3600) -> Server:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not token and not is_loopback(host):
        log.warning("HTTP API on %s without a token: only loopback clients are served", addr)
    server: Server = (_Server6 if ":" in host else Server)((host, int(port)), _Handler)
    server.router, server.token = router, token
    # A long poll interval: the listener thread sleeps in select() instead of waking twice a
    # second (shutdown is never needed: the thread dies with the process).
    threads.start(server.serve_forever, "http", poll)
    log.info("HTTP API and dashboard on http://%s/ui/", addr)
    return server
