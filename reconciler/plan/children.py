"""Child jobs: the copy of a parent that a periodic launch or a dispatch runs, and when a
finished child is garbage-collected. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from reconciler.db.snapshot import ChildRecord, JobRecord, SlotRecord
from reconciler.spec.load import JobSpec, canonical_json

DONE = frozenset({"complete", "failed", "removed", "stopped"})
HOLDING = frozenset({"running", "stopping", "pending"})


def child_spec(
    parent: JobSpec, child_id: str, *, periodic: bool, meta: Mapping[str, str] | None = None
) -> JobSpec:
    """A periodic launch drops `periodic`; a dispatch drops `parameterized` and adds its meta to
    the job's (group and task meta still win, as in Nomad) and stays periodic if the parent is."""
    job = parent.job
    if periodic:
        job = job.model_copy(update={"periodic": None})
    else:
        job = job.model_copy(update={"parameterized": None, "meta": {**job.meta, **(meta or {})}})
    canonical = canonical_json(job)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return JobSpec(child_id, job, parent.file, digest, canonical)


def running(children: tuple[ChildRecord, ...]) -> list[ChildRecord]:
    return [c for c in children if c.status not in DONE]


def collectable(
    record: JobRecord, status: str, slots: list[SlotRecord], now: float, gc_after: float
) -> tuple[bool, float | None]:
    """(collect now?, when to look again) for a child job: finished and nothing of it
    running for `gc_after` seconds. Never while a task of it still runs."""
    if not record.parent_id or status not in ("complete", "failed"):
        return False, None
    if any(s.state in HOLDING for s in slots):
        return False, None
    due = (record.finished_at or now) + gc_after
    return (now >= due), (None if now >= due else due)


MAX_PAYLOAD = 16384  # bytes (Nomad's DispatchPayloadSizeLimit)


def dispatch_problem(parent: JobSpec | None, job_id: str, stopped: bool,
                     meta: Mapping[str, str], payload: bytes | None) -> str:  # fmt: skip
    """Why a dispatch is refused, in Nomad's words and order (job_endpoint.go Dispatch,
    validateDispatchRequest), or ""."""
    if parent is None:
        return f"parameterized job {job_id!r} not found"
    config = parent.job.parameterized
    if config is None:
        return f"Specified job {job_id!r} is not a parameterized job"
    if stopped:
        return f"Specified job {job_id!r} is stopped"
    if config.payload == "required" and not payload:
        return "Payload is not provided but required by parameterized job"
    if config.payload == "forbidden" and payload:
        return "Payload provided but forbidden by parameterized job"
    if payload is not None and len(payload) > MAX_PAYLOAD:
        return f"Payload exceeds maximum size; {len(payload)} > {MAX_PAYLOAD}"
    allowed = set(config.meta_required) | set(config.meta_optional)
    if extra := sorted(k for k in meta if k not in allowed):
        return f"Dispatch request included unpermitted metadata keys: {extra}"
    if missing := sorted(k for k in config.meta_required if k not in meta):
        return f"Dispatch did not provide required meta keys: {missing}"
    return ""


def prefix_problem(prefix: str) -> str:
    """An IdPrefixTemplate becomes part of the child's ID, which lives under its parent's:
    no "/" (a job ID of its own), no spaces or control characters (Nomad refuses those in a
    job ID)."""
    if any(c == "/" or c.isspace() or not c.isprintable() for c in prefix):
        return f"id prefix template {prefix!r}: no '/', spaces or control characters"
    return ""


def dispatch_meta(parent: JobSpec, meta: Mapping[str, str]) -> dict[str, str]:
    """The meta a dispatched child adds to its job meta: an unsupplied optional key is ""."""
    config = parent.job.parameterized
    optional = config.meta_optional if config else []
    return {**dict.fromkeys(optional, ""), **meta}
