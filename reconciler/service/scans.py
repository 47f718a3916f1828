"""The scan, as the loop does it: read the job files (the loader parses only what changed),
wait out a directory still being written, and note which jobs the next pass must plan; the
scan's record is written with the pass's first transaction. Part of the Service (loop.py),
kept in its own file so that the loop stays readable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from reconciler import metrics, trace
from reconciler.db.store import ProblemRow, Store, VersionRow
from reconciler.faults import raise_if_transient
from reconciler.service.gitinfo import GitInfo
from reconciler.spec.load import Desired, JobSpec, Loader
from reconciler.watch import Watcher

log = logging.getLogger("reconciler")
SETTLE = 0.5  # at most this long, a directory that is still changing is read again


class Scans:
    clock: Callable[[], float]
    store: Store
    loader: Loader
    git: GitInfo
    watcher: Watcher | None
    _last_scan: float
    _seen_errors: set[str]
    _full: bool
    _touched: set[str]
    _recorded: Desired | None = None

    def scan(self) -> Desired:
        if self.watcher is not None:
            self.watcher.check()
        desired = self.loader.scan()
        trace.mark("loaded")
        raise_if_transient(desired.directory_ok, desired.directory_error)
        settle_by = time.monotonic() + SETTLE
        while desired is not self._recorded and not self.loader.settled():
            if time.monotonic() > settle_by:
                break
            time.sleep(0.004)  # still being written (a checkout in progress): read it again
            trace.mark("read_again")
            desired = self.loader.scan()
            raise_if_transient(desired.directory_ok, desired.directory_error)
        self._last_scan = self.clock()
        if desired is self._recorded:
            return desired
        # with the loader's own record of what its scans changed, only those jobs are compared
        candidates = self.loader.changed_since(self._recorded) if self._recorded else None
        changed = _changed_jobs(self._recorded, desired, candidates)
        self._note_changes(self._recorded, desired, changed, candidates)
        self.git.new_scan()
        # only what changed since the last recorded scan: 1 file, not 1,000
        versions = [VersionRow(s.id, s.digest, s.canonical, s.file) for s in changed]
        problems = [
            ProblemRow(p.file, p.line, p.column, p.path, p.message, p.severity)
            for p in desired.problems
        ]
        # written in the pass's first transaction (a start's, after its launch) or after it;
        # then the versions git gave no commit yet are remembered
        now = self.clock()
        self.store.defer_scan(versions, problems, now, self.git.commit_of,
                              written=lambda: self.git.recorded(versions, now))  # fmt: skip
        for p in desired.problems:
            text = str(p)
            if text not in self._seen_errors:
                log.warning("%s", text.splitlines()[0])
        self._seen_errors = {str(p) for p in desired.problems}
        metrics.file_problems(desired)
        self._recorded = desired
        return desired

    def _note_changes(self, before: Desired | None, after: Desired, changed: list[JobSpec],
                      candidates: frozenset[str] | None = None) -> None:
        """Which jobs a new desired state asks the next pass to plan. `candidates`: the only
        jobs that may differ between the two (None: any may)."""
        left = False
        if before is not None:
            olds = before.jobs.keys() if candidates is None else candidates & before.jobs.keys()
            left = any(job not in after.jobs for job in olds)
        if (
            before is None or not (before.directory_ok and after.directory_ok)
            or left or before.held != after.held
            or before.broken_files != after.broken_files
        ):  # fmt: skip
            self._full = True  # a job left or is held: only a plan of every job may stop it
            return
        self._touched |= {spec.id for spec in changed}


    @property
    def desired(self) -> Desired | None:
        """The last recorded scan: immutable, so other threads (the HTTP API) may read it."""
        return self._recorded

    def _write_scan(self) -> None:
        """What the scan left to write after the starts: its record (unless a start's
        transaction took it) and the new parse-cache rows."""
        if self.store.flush_scan():
            trace.mark("scan_recorded")
        self.loader.flush_rows()

    def _fill_commits(self) -> None:
        jobs = self._recorded.jobs if self._recorded else {}
        self.git.fill({job: spec.digest for job, spec in jobs.items()}, self.store.fill_commits)


def _changed_jobs(
    before: Desired | None, after: Desired, candidates: frozenset[str] | None = None
) -> list[JobSpec]:
    """Jobs that are new, or whose spec or file differs from `before`; only `candidates` may."""
    old = before.jobs if before else {}
    specs = after.jobs.values() if candidates is None else (
        after.jobs[job] for job in sorted(candidates) if job in after.jobs)  # fmt: skip
    return [
        spec for spec in specs
        if (b := old.get(spec.id)) is None or (b.digest, b.file) != (spec.digest, spec.file)
    ]  # fmt: skip
