"""Which git commit each job version came from, when jobs/ lies in a git work tree."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from reconciler.db.hot import VersionRow

# After a version is recorded without its commit, how long HEAD is looked at closely (a
# push's `git reset --hard` writes the files and the index before it moves the branch), and
# how often meanwhile. Later, every rescan looks (an edit committed afterwards).
RECHECK_FOR = 30.0
RECHECK_EVERY = 0.25


class GitInfo:
    """When jobs/ lies in a git work tree: the commit each job version came from.

    git runs only when the directory is in a work tree, and once per scan, not per file. A
    version read while git was still moving HEAD, or from an edit not committed yet, is
    recorded without a commit and given it once HEAD names it (`fill`)."""

    def __init__(self, jobs: Path) -> None:
        self.jobs = jobs
        self._scan: tuple[str | None, set[str]] | None = None
        self._scan_marker: tuple[int, ...] = ()  # `marker()` when that scan's git ran
        self._filled_at: tuple[int, ...] = ()  # `marker()` at the last look
        self._waiting: dict[tuple[str, str], str] = {}  # (job, digest) -> its file
        self._recheck_until = 0.0

    def _git_dir(self) -> Path | None:
        d = self.jobs.resolve()
        for p in (d, *d.parents):
            g = p / ".git"
            if g.is_dir():
                return g
            if g.is_file():  # a linked work tree: "gitdir: PATH"
                try:
                    text = g.read_text().strip()
                except OSError:
                    return None
                return (p / text[8:]).resolve() if text.startswith("gitdir: ") else None
        return None

    def in_work_tree(self) -> bool:
        return self._git_dir() is not None

    def marker(self) -> tuple[int, ...]:
        """What moves when a commit is made or checked out: HEAD, the branch it names and
        packed-refs (inode, mtime and size of each); () outside a work tree."""
        g = self._git_dir()
        if g is None:
            return ()
        paths = [g / "HEAD", g / "packed-refs"]
        try:
            head = (g / "HEAD").read_text()
        except OSError:
            head = ""
        if head.startswith("ref: "):
            paths.append(g / head[5:].strip())
        out: tuple[int, ...] = ()
        for p in paths:
            try:
                st = os.stat(p)
                out += (st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                out += (0,)
        return out

    def new_scan(self) -> None:
        self._scan = None

    def _state(self) -> tuple[str | None, set[str]]:
        if self._scan is None:
            self._scan_marker = self.marker()  # before git runs: a move meanwhile shows later
            head = self._git("rev-parse", "HEAD") if self._scan_marker else None
            dirty: set[str] = set()
            if head is not None:
                out = self._git("status", "--porcelain", "--untracked-files=all", "--", ".") or ""
                dirty = {os.path.basename(line[3:].strip().strip('"')) for line in out.splitlines()}
            self._scan = (head, dirty)
        return self._scan

    def _git(self, *args: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", str(self.jobs), *args], capture_output=True,
                               text=True, timeout=5)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    def commit_of(self, file: str) -> str | None:
        head, dirty = self._state()
        return head if head is not None and os.path.basename(file) not in dirty else None

    # ---- versions recorded without their commit ----

    def recorded(self, versions: Sequence[VersionRow], now: float) -> None:
        """After a scan's versions were recorded with `commit_of`: remember those that got no
        commit although jobs/ is a work tree."""
        if not versions or self._scan is None or not self._scan_marker:
            return
        for v in versions:
            if self.commit_of(v.source_file) is None:
                self._waiting[(v.job_id, v.digest)] = v.source_file
                self._recheck_until = now + RECHECK_FOR
        self._filled_at = self._scan_marker

    def recheck_at(self, now: float) -> float | None:
        """When the loop should look at HEAD again (None: no sooner than it would anyway)."""
        return now + RECHECK_EVERY if self._waiting and now < self._recheck_until else None

    def fill(self, current: Mapping[str, str],
             record: Callable[[dict[tuple[str, str], str]], None]) -> None:  # fmt: skip
        """Once HEAD has moved: the commit of each waiting version that is still its job's
        (`current`: job id -> digest), handed to `record`."""
        if not self._waiting or self.marker() == self._filled_at:
            return
        self.new_scan()
        found: dict[tuple[str, str], str] = {}
        for (job, digest), file in list(self._waiting.items()):
            if current.get(job) != digest:
                del self._waiting[(job, digest)]  # replaced or gone: its commit is moot
            elif (commit := self.commit_of(file)) is not None:
                found[(job, digest)] = commit
        if found:
            record(found)
        for key in found:
            del self._waiting[key]
        self._filled_at = self._scan_marker
