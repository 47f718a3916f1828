"""Child jobs in the running service: they join the desired state next to the job files, and
the operator launches them (`reconciler periodic force`, `reconciler dispatch`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from reconciler.apply import Applier
from reconciler.db.snapshot import Observed
from reconciler.db.store import Store
from reconciler.plan import children, periodic
from reconciler.spec.load import Desired, JobSpec
from reconciler.spec.models import Job


class Children:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.specs: dict[str, JobSpec] = {}  # changed only by add and drop
        self._version = 0  # counts those changes
        self._merged: tuple[Desired, int, Desired] | None = None  # (files, _version, merged)
        for row in store.child_rows():
            job = Job.model_validate_json(row.canonical)
            self.specs[row.id] = JobSpec(row.id, job, row.source_file, row.digest, row.canonical)

    def merged(self, desired: Desired) -> Desired:
        """The job files' desired state plus every child not yet garbage-collected. A pass asks
        several times; the map is copied again only when the files or the children changed."""
        if not self.specs:
            return desired
        last = self._merged
        fresh = last is not None and last[1] == self._version
        if last is not None and fresh and (desired is last[0] or desired is last[2]):
            return last[2]
        out = replace(desired, jobs=MappingProxyType({**desired.jobs, **self.specs}))
        self._merged = (desired, self._version, out)
        return out

    def add(self, spec: JobSpec) -> None:
        self.specs[spec.id] = spec
        self._version += 1

    def drop(self, ids: tuple[str, ...]) -> None:
        for i in ids:
            self.specs.pop(i, None)
        self._version += 1

    # ---- operator launches ----

    def force(self, applier: Applier, files: Mapping[str, JobSpec], observed: Observed,
              job: str, now: float) -> dict[str, Any]:  # fmt: skip
        """Launch a periodic job's child now, whatever prohibit_overlap says (Nomad's force)."""
        parent = files.get(job) or self.specs.get(job)
        if parent is None:
            raise KeyError(f"no job {job!r}")
        p = parent.job.periodic
        if p is None:
            raise ValueError("can't force launch non-periodic job")
        record = observed.jobs.get(job)
        if not p.enabled or parent.job.parameterized is not None or (record and record.paused):
            raise ValueError(f"can't force run non-tracked job {job}")
        name = periodic.child_id(job, now)
        child = children.child_spec(parent, name, periodic=True)
        if not applier.launch(child, job, "forced", ("Periodic Launch", f"{name}: forced by operator"),
                              now, anchor=(now, parent.digest)):  # fmt: skip
            raise ValueError(f"{name} exists already (one launch per second)")
        return {"child": name}

    def dispatch(self, applier: Applier, files: Mapping[str, JobSpec], observed: Observed,
                 job: str, meta: Mapping[str, str], payload: bytes | None, token: str,
                 now: float, suffix: Callable[[], str] = lambda: uuid.uuid4().hex[:8],
                 prefix: str = "") -> dict[str, Any]:  # fmt: skip
        """`prefix`: Nomad's IdPrefixTemplate, JOB/dispatch-<prefix>-<time>-<id>."""
        parent = files.get(job) or self.specs.get(job)
        record = observed.jobs.get(job)
        why = children.dispatch_problem(parent, job, bool(record and record.paused), meta, payload)
        if why:
            raise (KeyError if parent is None else ValueError)(why)
        if why := children.prefix_problem(prefix):
            raise ValueError(why)
        assert parent is not None
        if token and (existing := self.store.dispatched(job, token)):
            return {"child": existing, "existing": True}
        name = f"{job}/dispatch-{prefix + '-' if prefix else ''}{int(now)}-{suffix()}"
        full_meta = children.dispatch_meta(parent, meta)
        child = children.child_spec(parent, name, periodic=False, meta=full_meta)
        applier.launch(child, job, "dispatch", ("Dispatched", name), now,
                       meta=json.dumps(full_meta, sort_keys=True), payload=payload,
                       token=token or None)  # fmt: skip
        return {"child": name, "existing": False}
