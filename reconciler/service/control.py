"""The local control API: JSON over HTTP on a Unix socket in the data dir (mode 0600).

Used by the CLI for actions that need the running service. Every request is answered by the
loop thread, so the store has one writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
from pathlib import Path
from typing import Any

from reconciler.service import threads
from reconciler.service.loop import Service

SOCKET_NAME = "control.sock"
# A request's head: its request line and headers (the CLI's are a few hundred bytes).
HEAD_LIMIT = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}  # fmt: skip


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    service: Service


class _Handler(socketserver.StreamRequestHandler):
    """One HTTP/1.0 exchange: a request line, headers, a body of Content-Length bytes; a
    JSON reply, then the connection closes. Served without http.server, whose imports
    (http.client, email's parser, html, mimetypes) would stay in the service's memory for
    this socket alone (docs/operations.md, "Memory")."""

    server: _Server

    def handle(self) -> None:
        try:
            method, path, length = self._head()
        except ValueError as e:
            self._reply(400, {"error": str(e)})
            return
        if method == "GET":
            self._handle("health", {})
        elif method == "POST":
            try:
                args = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._reply(400, {"error": "body is not JSON"})
                return
            if not isinstance(args, dict):
                self._reply(400, {"error": "body is not a JSON object"})
                return
            self._handle(path.strip("/").removeprefix("v1/"), args)
        else:
            self._reply(501, {"error": f"unsupported method {method!r}"})

    def _head(self) -> tuple[str, str, int]:
        """(method, path, Content-Length) of the request, or ValueError."""
        lines: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(HEAD_LIMIT + 1)
            size += len(line)
            if size > HEAD_LIMIT:
                raise ValueError("request head too long")
            if not line:
                raise ValueError("request ends before its headers")
            if line in (b"\r\n", b"\n"):
                break
            lines.append(line)
        if not lines:
            raise ValueError("no request line")
        words = lines[0].decode("latin-1").split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            raise ValueError(f"bad request line {lines[0][:80]!r}")
        length = 0
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ValueError(f"bad header line {line[:80]!r}")
            if name.strip().lower() == "content-length":
                if not value.strip().isdigit():
                    raise ValueError("bad Content-Length")
                length = int(value)
        return words[0], words[1], length

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        head = (f"HTTP/1.0 {code} {REASONS.get(code, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")  # fmt: skip
        self.wfile.write(head.encode() + data)

    def _handle(self, action: str, args: dict[str, Any]) -> None:
        if action == "state":  # answered here, not by the loop: a stuck pass cannot hide
            self._reply(200, self.server.service.report())
            return
        service = self.server.service
        if service.check_stuck():  # the loop would not answer for a long while: say why now
            self._reply(503, {"error": f"the service is busy: a pass has run for over "
                                       f"{service.recovery.stuck_after:g}s (at {service.where()})"})
            return
        fut = service.request(action, **args)
        try:
            self._reply(200, fut.result(timeout=60))
        except KeyError as e:
            self._reply(404, {"error": str(e.args[0]) if e.args else "not found"})
        except (ValueError, ProcessLookupError) as e:
            self._reply(400, {"error": str(e)})
        except Exception as e:
            self._reply(500, {"error": f"{type(e).__name__}: {e}"})


def serve(service: Service, data_dir: Path) -> _Server:
    path = data_dir / SOCKET_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        server = _Server(str(path), _Handler)
    finally:
        os.umask(old)
    server.service = service
    threads.start(server.serve_forever, "control")
    return server


class NotRunning(Exception):
    pass


def call(data_dir: Path, action: str, timeout: float = 65, **args: Any) -> tuple[int, Any]:
    import http.client  # the CLI's side: the service does not load it

    class _UnixConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self.path = path

        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(self.path)

    conn = _UnixConnection(str(data_dir / SOCKET_NAME), timeout)
    try:
        body = json.dumps(args)
        conn.request(
            "POST", f"/v1/{action}", body=body, headers={"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(
            f"the reconciler service is not running on {data_dir} (start it with `reconciler run`)"
        ) from None
    finally:
        conn.close()
