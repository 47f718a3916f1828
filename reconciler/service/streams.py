"""Streamed routes: a task's logs (`/v1/client/fs/logs/:alloc`, Nomad's StreamFrame JSON or
plain text, with `follow`) and the event stream (`/v1/event/stream`, NDJSON, topics Job and
Allocation). Both wake on inotify, never on a timer, and send a heartbeat `{}` every 10 s of
silence, as Nomad does."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from itertools import groupby
from typing import Any

from reconciler.db import reads
from reconciler.service import nomad
from reconciler.service.api import Api
from reconciler.service.follow import Changes, LogTail, log_dir, store_files
from reconciler.service.http import HttpError, Request, Router, Stream

HEARTBEAT = 10.0
FRAME = 64 * 1024  # Nomad's streamFrameSize


class Streams:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self, r: Router) -> None:
        r.add("GET", "/v1/client/fs/logs/([^/]+)", self.logs)
        r.add("GET", "/v1/event/stream", self.events)

    def logs(self, r: Request) -> Stream:
        task = r.arg("task")
        if not task:
            raise HttpError(400, "must provide task name")
        stream = r.arg("type")
        if stream not in ("stdout", "stderr"):
            raise HttpError(400, "must provide log type (stdout/stderr)")
        origin = r.arg("origin", "start")
        if origin not in ("start", "end"):
            raise HttpError(400, "origin must be start or end")
        follow, plain, offset = r.flag("follow"), r.flag("plain"), r.number("offset")
        [(job, group, idx, _task)] = self.api.alloc_tasks(r.params[0], task)
        directory = log_dir(self.api.data_dir, job, group, idx)
        if not directory.is_dir():
            raise HttpError(404, f"task {task!r} has not written logs yet")

        def frames() -> Iterator[bytes]:
            # Watching before the first read (no gap); a plain read needs no watcher threads.
            with Changes(directory) if follow else contextlib.nullcontext() as changes:
                tail = LogTail(directory, task, stream, origin, offset)
                while True:
                    data = tail.read(FRAME)
                    if data:
                        if plain:
                            yield data
                        else:
                            yield json.dumps({"Offset": tail.pos, "Data": base64.b64encode(data).decode(),
                                              "File": tail.name}).encode()  # fmt: skip
                        continue
                    if changes is None:
                        return
                    # b"" after a wake with nothing new: the listener checks the client is there
                    yield b"" if changes.wait(HEARTBEAT) or plain else b"{}"

        return Stream(frames(), "text/plain; charset=utf-8" if plain else "application/json")

    def events(self, r: Request) -> Stream:
        topics = _topics(r.query.get("topic", []))
        start = r.number("index")
        store = self.api.store

        def frames() -> Iterator[bytes]:
            with Changes(self.api.db.parent, store_files(self.api.db)) as changes:  # commits
                after = start or reads.last_event_id(store)
                while True:
                    rows = reads.task_events(store, after=after, limit=500)
                    if rows:
                        after = rows[-1]["id"]
                        for frame in self._frames(rows, topics):
                            yield json.dumps(frame).encode() + b"\n"
                        continue
                    # b"" after a wake with nothing new: the listener checks the client is there
                    yield b"" if changes.wait(HEARTBEAT) else b"{}\n"

        return Stream(frames(), "application/json")

    def _frames(self, rows: list[dict[str, Any]], topics: dict[str, set[str]]) -> Iterator[dict[str, Any]]:
        allocs: dict[str, dict[str, Any]] = {}
        jobs: dict[str, dict[str, Any] | None] = {}
        for _, group in groupby(rows, key=lambda e: e["at"]):  # one transaction, one frame
            events = []
            for e in group:
                topic = "Allocation" if e["task"] else "Job"
                wanted = topics.get(topic, set()) | topics.get("*", set())
                if not wanted or not ({"*", e["job_id"]} & wanted):
                    continue
                if topic == "Allocation":
                    aid = nomad.alloc_id(e["job_id"], e["group_name"], e["idx"])
                    if aid not in allocs:
                        allocs.update({a["ID"]: a for a in self.api.alloc_list(e["job_id"])})
                    payload = {"Allocation": allocs.get(aid)}
                else:
                    if e["job_id"] not in jobs:
                        found = reads.jobs(self.api.store, e["job_id"])
                        jobs[e["job_id"]] = self.api.job_body(found[0]) if found else None
                    payload = {"Job": jobs[e["job_id"]]}
                events.append(nomad.event(e, payload))
            if events:
                yield {"Index": events[-1]["Index"], "Events": events}


def _topics(params: list[str]) -> dict[str, set[str]]:
    """?topic=Job:web&topic=Allocation -> {"Job": {"web"}, "Allocation": {"*"}}; none = all."""
    if not params:
        return {"*": {"*"}}
    out: dict[str, set[str]] = {}
    for p in params:
        topic, _, key = p.partition(":")
        if topic not in ("Job", "Allocation", "*"):
            continue  # Nomad's other topics (Node, Deployment, ...) have no events here
        out.setdefault(topic, set()).add(key or "*")
    return out
