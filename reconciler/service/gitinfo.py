"""Which git commit each job version came from, when jobs/ lies in a git work tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class GitInfo:
    """When jobs/ lies in a git work tree: the commit each job version came from.

    git runs only when the directory is in a work tree, and once per scan, not per file."""

    def __init__(self, jobs: Path) -> None:
        self.jobs = jobs
        self._scan: tuple[str | None, set[str]] | None = None

    def in_work_tree(self) -> bool:
        d = self.jobs.resolve()
        return any((p / ".git").exists() for p in (d, *d.parents))

    def new_scan(self) -> None:
        self._scan = None

    def _state(self) -> tuple[str | None, set[str]]:
        if self._scan is None:
            head = self._git("rev-parse", "HEAD") if self.in_work_tree() else None
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
