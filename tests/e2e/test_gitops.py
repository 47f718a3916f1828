"""The GitOps recipe of docs/operations.md, with a real `git push` into a bare repository."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc

HOOK = Path(__file__).parents[2] / "contrib" / "post-receive"
JOB = """job "site" {{
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo {text}; exec sleep 100000"]
      }}
    }}
  }}
}}
"""


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProc]:
    s = ServiceProc(tmp_path / "jobs", tmp_path / "data")
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip


def test_push_deploys_and_records_the_commit(svc: ServiceProc, tmp_path: Path) -> None:
    bare = tmp_path / "jobs.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    shutil.copy(HOOK, bare / "hooks" / "post-receive")
    git("config", "reconciler.worktree", str(svc.jobs), cwd=bare)
    svc.jobs.mkdir()
    svc.start()
    laptop = tmp_path / "laptop"
    git("init", "-q", "-b", "main", str(laptop), cwd=tmp_path)
    (laptop / "site.hcl").write_text(JOB.format(text="v1"))
    git("add", ".", cwd=laptop)
    git("commit", "-qm", "v1", cwd=laptop)
    first = git("rev-parse", "HEAD", cwd=laptop)
    git("push", "-q", str(bare), "main", cwd=laptop)
    svc.wait(
        lambda: svc.query("SELECT git_commit FROM job_versions") == [(first,)], 20, "v1 recorded"
    )
    svc.wait(lambda: len(svc.pids("site")) == 1)
    (laptop / "site.hcl").write_text(JOB.format(text="v2"))
    git("commit", "-qam", "v2", cwd=laptop)
    second = git("rev-parse", "HEAD", cwd=laptop)
    git("push", "-q", str(bare), "main", cwd=laptop)
    svc.wait(lambda: svc.query("SELECT v.git_commit FROM task_instances i JOIN job_versions v "
                               "ON v.id = i.version_id WHERE i.finished_at IS NULL") == [(second,)],
             20, "v2 running")  # fmt: skip
    assert "v2" in svc.cli("logs", "site/t").stdout
