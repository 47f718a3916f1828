"""The job directory is hostile input: the real service with every odd kind of entry in jobs/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import BIN, ServiceProc

JOB = """job "{name}" {{
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "exec sleep 100000"]
      }}
      kill_timeout = "2s"
    }}
  }}
}}
"""

# name -> words its problem must hold (its kind)
ODD = {
    "pipe.hcl": "FIFO",
    "sock.hcl": "Unix socket",
    "loop.hcl": "symlink loop",
    "dangling.hcl": "dangling symlink",
    "big.hcl": "larger than",
    "x.hcl": "directory",
}


@pytest.fixture
def odd_dir() -> Iterator[Path]:
    """A job directory that the unprivileged user can reach (pytest's tmp dirs are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="reconciler-jobdir-"))
    d.chmod(0o755)
    jobs = d / "jobs"
    jobs.mkdir()
    os.mkfifo(jobs / "pipe.hcl")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(jobs / "sock.hcl"))
    sock.close()  # the socket file stays
    os.symlink("loop.hcl", jobs / "loop.hcl")
    os.symlink("nowhere.hcl", jobs / "dangling.hcl")
    (jobs / "big.hcl").write_bytes(b"# padding\n" * ((3 << 20) // 10))
    (jobs / "x.hcl").mkdir()
    (jobs / "secret.hcl").write_text(JOB.format(name="secret"))
    (jobs / "secret.hcl").chmod(0)
    os.symlink("big.hcl", jobs / ".#big.hcl")  # an emacs lock link: ignored, never a problem
    yield jobs
    shutil.rmtree(d)


@pytest.fixture
def svc(odd_dir: Path, tmp_path: Path) -> Iterator[ServiceProc]:
    s = ServiceProc(odd_dir, tmp_path / "data")
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def test_odd_entries_are_reported_and_cost_the_other_jobs_nothing(svc: ServiceProc) -> None:
    svc.start()
    tmp = svc.jobs / ".web.hcl.tmp"
    tmp.write_text(JOB.format(name="web"))
    tmp.rename(svc.jobs / "web.hcl")
    svc.wait(lambda: len(svc.pids("web")) == 1, 20, "the new job running")

    status = json.loads(svc.cli("status", "--json").stdout)
    problems = {Path(p["file"]).name: p["message"] for p in status["file_problems"]}
    for name, kind in ODD.items():
        assert kind in problems.get(name, ""), (name, problems)
    assert ".#big.hcl" not in problems
    # root reads a file whatever its mode: the service (root) runs it; unprivileged `validate`
    # below cannot read it and says so
    assert "secret.hcl" not in problems and len(svc.pids("secret")) == 1

    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(BIN), "validate",
         "--json", str(svc.jobs)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1, p.stderr
    found = {Path(x["file"]).name: x["message"] for x in json.loads(p.stdout)["problems"]}
    for name, kind in {**ODD, "secret.hcl": "Permission denied"}.items():
        assert kind in found.get(name, ""), (name, found)

    assert svc.proc is not None
    started = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    svc.proc.wait(10)
    assert time.monotonic() - started < 10
