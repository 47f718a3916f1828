"""Host volumes and `network { dns }` through the real service: data outlives a run, read-only
mounts refuse writes, a missing volume blocks the job, and the task's resolv.conf is its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc

WRITER = """job "writer" {{
  type = "batch"
  group "g" {{
    volume "data" {{
      type   = "host"
      source = "shared"
    }}
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", {script}]
      }}
      volume_mount {{
        volume      = "data"
        destination = "/srv/data"
      }}
    }}
  }}
}}
"""

READER = """job "reader" {
  type = "batch"
  group "g" {
    volume "data" {
      type      = "host"
      source    = "shared"
      read_only = true
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat /srv/in/note; echo x > /srv/in/other 2>&1 || echo refused; sleep 100000"]
      }
      volume_mount {
        volume      = "data"
        destination = "/srv/in"
      }
    }
  }
}
"""

MISSING = """job "lost" {
  group "g" {
    volume "v" {
      type   = "host"
      source = "nowhere"
    }
    task "t" {
      driver = "exec"
      config { command = "/bin/sleep"  args = ["100000"] }
      volume_mount {
        volume      = "v"
        destination = "/data"
      }
    }
  }
}
"""

DNS = """job "dns" {
  type = "batch"
  group "g" {
    network {
      dns {
        servers  = ["192.0.2.53", "2001:db8::53"]
        searches = ["example.test"]
      }
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat /etc/resolv.conf; echo x >> /etc/resolv.conf 2>/dev/null || echo read-only"]
      }
    }
  }
}
"""


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProc]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    vol = tmp_path / "shared-vol"
    vol.mkdir()
    os.chmod(vol, 0o777)
    config = tmp_path / "node.hcl"
    config.write_text(f'client {{\n  host_volume "shared" {{\n    path = "{vol}"\n  }}\n}}\n')
    s = ServiceProc(jobs, tmp_path / "data", "--config", str(config))
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def logs(svc: ServiceProc, job: str) -> str:
    return svc.cli("logs", f"{job}/g/0/t").stdout


def test_volume_data_outlives_runs_and_read_only_mounts_refuse(svc: ServiceProc,
                                                               tmp_path: Path) -> None:  # fmt: skip
    script = '"n=$(cat /srv/data/count 2>/dev/null || echo 0); echo $((n+1)) > /srv/data/count; echo run $((n+1)); cp /srv/data/count /srv/data/note"'
    (svc.jobs / "writer.hcl").write_text(WRITER.format(script=script))
    svc.start()
    svc.wait(lambda: svc.states("writer") == {"writer/g/0/t": "complete"}, what="the first run")
    assert (tmp_path / "shared-vol/count").read_text() == "1\n"
    # A changed job file runs the task again: it finds the first run's data.
    (svc.jobs / "writer.hcl").write_text(WRITER.format(script=script.replace("echo run", "echo again")))
    svc.wait(lambda: "again 2" in logs(svc, "writer"), what="the second run")
    assert (tmp_path / "shared-vol/count").read_text() == "2\n"
    (svc.jobs / "reader.hcl").write_text(READER)
    svc.wait(lambda: "refused" in logs(svc, "reader"), what="the reader")
    assert logs(svc, "reader").startswith("2\n")
    assert not (tmp_path / "shared-vol/other").exists()
    node = svc.cli("node", "--config", str(tmp_path / "node.hcl")).stdout
    assert f"shared = {tmp_path / 'shared-vol'}" in node


def test_missing_volume_blocks_the_job(svc: ServiceProc) -> None:
    (svc.jobs / "lost.hcl").write_text(MISSING)
    svc.start()
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id='lost'") == [("blocked",)],
             what="the job blocked")  # fmt: skip
    status = svc.cli("status", "lost").stdout
    assert "missing compatible host volumes" in status and '"nowhere"' in status
    assert svc.pids("lost") == {}


def test_dns_block_writes_the_tasks_resolv_conf(svc: ServiceProc) -> None:
    (svc.jobs / "dns.hcl").write_text(DNS)
    svc.start()
    svc.wait(lambda: "read-only" in logs(svc, "dns"), what="the dns task")
    out = logs(svc, "dns")
    assert out.startswith("nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.test\n")
    host = Path("/etc/resolv.conf").read_text()
    assert "192.0.2.53" not in host
