"""Nomad's task lifecycle inside one group instance: which phase a task is in, and which
phases may start now (prestart must succeed, sidecars run, then main, poststart, poststop)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from reconciler.db.snapshot import SlotKey, SlotRecord
from reconciler.spec.models import Job, Task

Phase = Literal["prestart", "sidecar", "main", "poststart", "poststop"]


def phase(task: Task) -> Phase:
    lc = task.lifecycle
    if lc is None:
        return "main"
    if lc.hook == "prestart":
        return "sidecar" if lc.sidecar else "prestart"
    return lc.hook


@dataclass(frozen=True)
class Gate:
    main_ok: bool
    poststart_ok: bool
    poststop_ok: bool
    phases: Mapping[str, Phase]


def gates(
    job: Job, gname: str, keys: list[SlotKey], current: Mapping[SlotKey, SlotRecord],
    wanted: Mapping[SlotKey, str],
) -> Gate:  # fmt: skip
    """Nomad's lifecycle order inside one group instance."""
    group = job.group[gname]
    phases = {k.task: phase(group.task[k.task]) for k in keys}

    def states(p: Phase) -> list[str]:
        out = []
        for k in keys:
            if phases[k.task] == p:
                s = current.get(k)
                ok = s is not None and s.spec_digest == wanted[k]
                out.append(s.state if ok and s else "pending")
        return out

    prestart_done = all(st == "complete" for st in states("prestart"))
    sidecars_up = all(st == "running" for st in states("sidecar"))
    mains = states("main")
    return Gate(
        main_ok=prestart_done and sidecars_up,
        poststart_ok=bool(mains) and all(st == "running" for st in mains),
        poststop_ok=bool(mains) and all(st in ("complete", "failed", "dead") for st in mains),
        phases=phases,
    )
