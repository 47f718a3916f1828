"""Control API calls that change or read the store, answered on the loop thread (one writer)."""

from __future__ import annotations

import os
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.apply import handle_of
from reconciler.db.snapshot import JobRecord, Observed, SlotKey
from reconciler.plan import canary
from reconciler.spec.models import effective_update

if TYPE_CHECKING:
    from reconciler.service.loop import Service


@dataclass
class Request:
    """A control API call, answered by the loop thread."""

    action: str
    args: dict[str, Any]
    reply: Future[Any] = field(default_factory=Future)


def answer(service: Service, req: Request) -> None:
    try:
        req.reply.set_result(_do(service, req.action, req.args))
    except Exception as e:
        req.reply.set_exception(e)


def _do(service: Service, action: str, args: dict[str, Any]) -> Any:
    if action == "health":
        return {
            "pid": os.getpid(), "passes": service.passes, "change_passes": service.change_passes,
            "startup_seconds": service.startup_seconds, "adopted": service.adopted,
            "running": len(service.applier.running),
        }  # fmt: skip
    if action == "reload":
        service.rescan_all()
        return {"ok": True}
    now = service.clock()
    if action in ("stop", "start"):
        job = args["job"]
        service.touch({job})
        if not service.store.set_paused(job, action == "stop", now):
            raise KeyError(f"no job {job!r}")
        return {"ok": True}
    if action == "promote":  # health_check = "manual": the operator says it is healthy
        job = args["job"]
        rec = service.store.observed(service.applier.live, {job}).jobs.get(job)
        if rec is None:
            raise KeyError(f"no job {job!r}")
        if rec.attempted_digest is None or rec.attempted_digest == rec.applied_digest:
            raise ValueError(f"{job}: no new version is waiting to be promoted")
        if (waiting := _canaries(service, job, rec, now)) is not None:
            service.store.promote_canaries(job, now, "by operator")
            service.touch({job})
            return {"promoted": rec.attempted_digest[:12], "canaries": waiting}
        service.store.promote([job], now)
        service.touch({job})
        return {"promoted": (rec.attempted_digest or "")[:12]}
    obs: Observed = service.store.observed(service.applier.live)
    files = service.desired_files()
    if action == "periodic_force":
        return service.children.force(service.applier, files, obs, args["job"], now)
    if action == "dispatch":
        payload = bytes.fromhex(args["payload"]) if args.get("payload") is not None else None
        return service.children.dispatch(service.applier, files, obs, args["job"],
                                         args.get("meta", {}), payload, args.get("token", ""),
                                         now, prefix=args.get("prefix", ""))  # fmt: skip
    keys = [SlotKey(*k) for k in args.get("keys", [])]
    service.touch({k.job for k in keys})
    if action == "restart":
        done = [str(k) for k in keys if service.applier.operator_restart(k, obs)]
        return {"restarted": done}
    if action == "stats":
        return {
            str(k): asdict(service.executor.stats(handle_of(k, s.instance)))
            for k in keys if (s := obs.slots.get(k)) is not None and s.instance is not None
        }  # fmt: skip
    if action == "signal":
        for k in keys:
            service.applier.operator_signal(k, args["signal"], obs)
        return {"signalled": [str(k) for k in keys]}
    raise ValueError(f"unknown action {action!r}")


def _canaries(service: Service, job: str, rec: JobRecord, now: float) -> int | None:
    """How many canaries a promotion of `job` promotes; None when it has no deployment
    waiting for one. As Nomad's, a promotion needs every canary healthy (with
    health_check = "manual" the operator's word is what makes them healthy)."""
    spec = service.desired_files().get(job)
    if spec is None or spec.digest != rec.attempted_digest:
        return None
    obs = service.store.observed(service.applier.live, {job})
    tally = canary.awaiting(spec, rec, obs.slots, now, obs.checks)
    if tally is None:
        return None
    healthy, total = tally
    manual = effective_update(spec.job, next(iter(spec.job.group.values()))).health_check == "manual"
    if healthy < total and not manual:
        raise ValueError(f"{job}: {healthy}/{total} canaries healthy: a deployment is promoted"
                         " once every canary is healthy")  # fmt: skip
    return total
