"""Starts the HTTP listener: Nomad's API (api, streams, writes) and the dashboard."""

from __future__ import annotations

from pathlib import Path

from reconciler.service import http
from reconciler.service.api import Api
from reconciler.service.loop import Service
from reconciler.service.streams import Streams
from reconciler.service.writes import Writes


def start(service: Service, data_dir: Path, addr: str, token: str = "") -> http.Server:
    api = Api(service, data_dir, addr, token)
    router = http.Router()
    api.routes(router)
    Streams(api).routes(router)
    Writes(api).routes(router)
    return http.serve(router, addr, token)
