"""Write routes that fit reconciler's file-first model. Job files stay the truth:

- registering a job (`POST /v1/jobs`, `POST /v1/job/:id`) writes its HCL source into the job
  directory (the file that already defines the job, else `ID.nomad.hcl`): the HCL source the
  client sent, or for a JSON-only job the file jobjson.py writes from it;
- `DELETE /v1/job/:id` stops the job as `reconciler stop` does (the file stays); `purge` is
  refused: deleting the file removes a job;
- allocation restart, stop (a restart here: one node, nowhere to move it) and signal go
  through the loop's request queue, as the CLI's verbs do;
- `POST /v1/job/:id/dispatch` dispatches a parameterized job as `reconciler dispatch` does
  (the same request to the loop, the same checks and words);
- `POST /v1/jobs/parse` and `POST /v1/job/:id/plan` change nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import signal as signals
import time
from pathlib import Path
from typing import Any

from reconciler.db import reads
from reconciler.plan import plan
from reconciler.service import jobjson, nomad
from reconciler.service.api import Api
from reconciler.service.http import HttpError, Request, Router
from reconciler.spec.load import JOB_SUFFIXES, Desired, FileResult, parse_text

FROM_JSON = "# Written by reconciler from a job registered as JSON through its HTTP API.\n"
_OK = {"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": 0, "Index": 0, "LastContact": 0,
       "KnownLeader": True}  # fmt: skip


class Writes:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self, r: Router) -> None:
        r.add("POST PUT", "/v1/jobs/parse", self.parse)
        r.add("POST PUT", "/v1/jobs", self.register)
        r.add("POST PUT", "/v1/job/([^/]+)", self.register)
        r.add("DELETE", "/v1/job/([^/]+)", self.deregister)
        r.add("POST PUT", "/v1/job/([^/]+)/plan", self.plan)
        r.add("POST PUT", "/v1/job/([^/]+)/dispatch", self.dispatch)
        r.add("POST PUT", "/v1/reconciler/job/([^/]+)/(stop|start)", self.stop_start)
        r.add("POST PUT", "/v1/client/allocation/([^/]+)/restart", self.restart)
        r.add("POST PUT", "/v1/allocation/([^/]+)/stop", self.restart)
        r.add("POST PUT", "/v1/client/allocation/([^/]+)/signal", self.signal)

    def _act(self, action: str, **args: Any) -> Any:
        fut = self.api.service.request(action, **args)
        try:
            return fut.result(timeout=60)
        except KeyError as e:
            raise HttpError(404, str(e.args[0]) if e.args else "not found") from None
        except (ValueError, ProcessLookupError) as e:
            raise HttpError(400, str(e)) from None

    # ---- job source ----

    @staticmethod
    def _source(body: dict[str, Any]) -> str:
        """The job file's text: the HCL source a client sent (Submission.Source, as `nomad
        job run` sends it, or JobHCL), else one written from the JSON job."""
        if isinstance(body.get("JobHCL"), str):
            return str(body["JobHCL"])
        sub = body.get("Submission") or {}
        source = sub.get("Source") if isinstance(sub, dict) else None
        if isinstance(source, str) and source.strip():
            if sub.get("Format", "hcl2") not in ("hcl2", "hcl", ""):
                raise HttpError(400, f"Submission.Format {sub.get('Format')!r}: only HCL job files are kept")
            return source
        job = body.get("Job")
        if isinstance(job, dict):
            try:
                return FROM_JSON + jobjson.to_hcl(job)
            except ValueError as e:
                raise HttpError(400, str(e)) from None
        raise HttpError(400, "the request has no job: send Job (Nomad's JSON), JobHCL or Submission.Source")

    @staticmethod
    def _parsed(text: str, name: str) -> FileResult:
        result = parse_text(text, name)
        if not result.ok:
            raise HttpError(400, "\n".join(str(p) for p in result.problems if p.severity == "error"))
        return result

    def parse(self, r: Request) -> dict[str, Any]:
        result = self._parsed(self._source(r.fields()), "<request>")
        spec = result.jobs[0]
        return nomad.job(spec.id, spec.job.model_dump(mode="json"), None, 0)

    def register(self, r: Request) -> dict[str, Any]:
        text = self._source(r.fields())
        result = self._parsed(text, "<request>")
        spec = result.jobs[0]
        if r.params and r.params[0] != spec.id:
            raise HttpError(400, f"Job ID does not match name: the URL names {r.params[0]!r}, the file {spec.id!r}")
        name = self._file_for(spec.id)
        _write_job_file(self.api.service.jobs, name, text)
        job = r.fields().get("Job")
        if not (isinstance(job, dict) and job.get("Stop")):
            with contextlib.suppress(HttpError):
                self._act("start", job=spec.id)  # registering runs a stopped job, as in Nomad
        warnings = "\n".join(str(p) for p in result.problems)
        return _OK | {"Warnings": warnings, "reconciler": {"File": name}}

    def _file_for(self, job_id: str) -> str:
        """The job directory's file that defines the job now, else ID.nomad.hcl."""
        desired = self.api.service.desired
        if desired is not None and (spec := desired.jobs.get(job_id)) is not None:
            return os.path.basename(spec.file)
        rows = reads.jobs(self.api.store, job_id)
        if rows and rows[0]["source_file"]:
            name = os.path.basename(str(rows[0]["source_file"]))
            if name.endswith(JOB_SUFFIXES):
                return name
        return f"{job_id}.nomad.hcl"

    def deregister(self, r: Request) -> dict[str, Any]:
        job = r.params[0]
        if r.flag("purge"):
            raise HttpError(400, f"purge is refused: job files are the truth; delete the file of "
                                 f"{job!r} from the job directory to remove it")  # fmt: skip
        self._act("stop", job=job)
        return _OK

    def stop_start(self, r: Request) -> dict[str, Any]:
        self._act(r.params[1], job=r.params[0])
        return {"ok": True}

    def plan(self, r: Request) -> dict[str, Any]:
        result = self._parsed(self._source(r.fields()), "<request>")
        spec = result.jobs[0]
        if r.params[0] != spec.id:
            raise HttpError(400, "Job ID does not match")
        service = self.api.service
        current = service.desired or Desired({}, {})
        jobs = dict(current.jobs) | {spec.id: spec}
        desired = Desired(jobs, current.files, current.held - {spec.id}, current.broken_files)
        observed = self.api.store.observed()
        live = frozenset(s.instance.id for s in observed.slots.values() if s.instance)
        observed = type(observed)(observed.jobs, observed.slots, live)
        p = plan(desired, observed, service.host, time.time(), scope=frozenset({spec.id}))
        updates: dict[str, dict[str, int]] = {}
        kinds = {"start": "Place", "stop": "Stop", "restart": "DestructiveUpdate",
                 "rerender": "InPlaceUpdate", "keep": "Ignore", "adopt": "Ignore",
                 "blocked": "Ignore"}  # fmt: skip
        seen: set[tuple[str, str, int]] = set()  # Nomad counts allocations, not tasks
        actions = []
        for name, bucket in p.buckets().items():
            for a in bucket:
                actions.append({"Action": name, "Task": str(a.key), "Reason": a.reason})
                g = updates.setdefault(a.key.group, dict.fromkeys(
                    ("Ignore", "Place", "Migrate", "Stop", "InPlaceUpdate", "DestructiveUpdate",
                     "Canary", "Preemptions"), 0))  # fmt: skip
                if (name, a.key.group, a.key.idx) not in seen:
                    seen.add((name, a.key.group, a.key.idx))
                    g[kinds[name]] += 1
        return {
            "JobModifyIndex": 0, "CreatedEvals": None, "Diff": None,
            "Annotations": {"DesiredTGUpdates": updates, "PreemptedAllocs": None},
            "FailedTGAllocs": None, "NextPeriodicLaunch": nomad.ZERO_TIME,
            "Warnings": "\n".join([*(str(x) for x in result.problems), *p.warnings]),
            "reconciler": {"Actions": actions},
        }  # fmt: skip

    # ---- dispatch ----

    def dispatch(self, r: Request) -> dict[str, Any]:
        """Nomad's JobDispatchRequest (Payload base64, Meta, IdPrefixTemplate, Priority; the
        idempotency token as `?idempotency_token=` or IdempotencyToken) -> JobDispatchResponse."""
        # Go's JSON decoder matches field names whatever their case, as Nomad reads this body
        body = {str(k).lower(): v for k, v in r.fields().items()}
        job = r.params[0]
        if body.get("jobid") and body["jobid"] != job:
            raise HttpError(400, "Job ID does not match")
        meta = body.get("meta") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise HttpError(400, "Meta: must be an object of strings")
        try:
            payload = base64.b64decode(body.get("payload") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise HttpError(400, "Payload: not base64 (Nomad's JSON carries bytes as base64)") from None
        priority = body.get("priority") or 0
        if not isinstance(priority, int) or not (priority == 0 or 1 <= priority <= 100):
            raise HttpError(400, "dispatch job priority must be between [1, 100]")
        prefix = body.get("idprefixtemplate") or ""
        token = r.arg("idempotency_token") or str(body.get("idempotencytoken") or "")
        out = self._act("dispatch", job=job, meta=meta, payload=payload.hex() if payload else None,
                        token=token, prefix=str(prefix))  # fmt: skip
        return _OK | {"DispatchedJobID": out["child"], "JobCreateIndex": 0,
                      "reconciler": {"Existing": bool(out.get("existing"))}}  # fmt: skip

    # ---- allocations ----

    def restart(self, r: Request) -> dict[str, Any]:
        body = r.fields()
        task = "" if body.get("AllTasks") else str(body.get("TaskName") or body.get("Task") or "")
        self._act("restart", keys=self.api.alloc_tasks(r.params[0], task))
        return {"EvalID": "", "Index": 0}

    def signal(self, r: Request) -> dict[str, Any]:
        body = r.fields()
        sig = str(body.get("Signal") or "SIGKILL").upper()
        name = sig if sig.startswith("SIG") else "SIG" + sig
        if name not in signals.Signals.__members__:
            raise HttpError(400, f"unknown signal {sig!r}")
        self._act("signal", keys=self.api.alloc_tasks(r.params[0], str(body.get("Task") or "")),
                  signal=name)  # fmt: skip
        return {}


def _write_job_file(directory: Path, name: str, text: str) -> None:
    """Write a job file the way an editor would (temp file, then rename), without following a
    symlink anywhere: the directory and both names are opened with O_NOFOLLOW."""
    if "/" in name or name.startswith(".") or not name.endswith(JOB_SUFFIXES):
        raise HttpError(400, f"refusing to write {name!r}")
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    tmp = f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dfd)  # fmt: skip
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a symlink, never follows it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    finally:
        os.close(dfd)
