"""The local control API: JSON over HTTP on a Unix socket in the data dir (mode 0600).

Used by the CLI for actions that need the running service. Every request is answered by the
loop thread, so the store has one writer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import socketserver
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from reconciler.service import threads
from reconciler.service.loop import Service

SOCKET_NAME = "control.sock"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    service: Service


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("health", {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            args = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(400, {"error": "body is not JSON"})
            return
        self._handle(self.path.strip("/").removeprefix("v1/"), args)

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


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(data_dir: Path, action: str, timeout: float = 65, **args: Any) -> tuple[int, Any]:
    path = data_dir / SOCKET_NAME
    conn = _UnixConnection(str(path), timeout)
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
