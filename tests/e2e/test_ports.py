"""Published ports of a bridge group, through the real service: a static host port on
loopback reaches the group's `to` port; removing the job closes it and leaves no rule; rules
left by a service that died with its namespaces are removed at the next start."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux import cgroups, network, ports
from reconciler.executor.linux.cleanup import teardown
from tests.e2e.conftest import answer
from tests.e2e.service import ServiceProc

if not ports.available():
    pytest.skip("nftables (nft) is not installed", allow_module_level=True)

PORT = 28391
WEB = """job "web" {
  group "g" {
    network {
      mode = "bridge"
      port "http" {
        static = PORT
        to     = 8080
      }
    }
    task "srv" {
      driver = "exec"
      config {
        command = "/usr/bin/python3"
        args    = ["-c", <<EOT
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(8)
while True:
    c, addr = s.accept()
    c.sendall(b"pong")
    c.close()
EOT
        ]
      }
    }
  }
}
""".replace("PORT", str(PORT))


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProc]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    s = ServiceProc(jobs, tmp_path / "data", "--allow-empty")
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def tag(data: Path) -> str:
    return hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:8]


def elements(data: Path) -> list[object]:
    p = subprocess.run(["nft", "-j", "list", "map", "ip", f"reconciler-{tag(data)}", "ports"],
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        return []
    return [e for i in json.loads(p.stdout)["nftables"] for e in i.get("map", {}).get("elem", [])]


def test_static_port_answers_on_loopback_and_closes_with_the_job(svc: ServiceProc) -> None:
    (svc.jobs / "web.hcl").write_text(WEB)
    svc.start()
    svc.wait(lambda: answer(PORT) == "pong", timeout=90, what="the published port")
    assert len(elements(svc.data)) == 2  # tcp and udp
    (svc.jobs / "web.hcl").unlink()
    svc.wait(lambda: svc.states("web") == {}, what="the job removed")
    svc.wait(lambda: answer(PORT).startswith("error"), what="the port closed")
    # the task is gone before its group's elements are: removing them ends the group's teardown
    svc.wait(lambda: elements(svc.data) == [], what="the port's nftables elements removed")


def test_stale_ports_of_a_dead_service_are_removed(svc: ServiceProc) -> None:
    # a start that meets the old namespace still being torn down is retried soon and often
    # (the default policy waits 15 s twice, then gives up): this test is about the elements
    retry_soon = 'restart {\n      attempts = 20\n      delay = "1s"\n    }\n    task "srv" {'
    (svc.jobs / "web.hcl").write_text(WEB.replace('task "srv" {', retry_soon, 1))
    svc.start()
    svc.wait(lambda: answer(PORT) == "pong", timeout=90, what="the published port")
    svc.kill()
    # As after a crash that took the tasks and namespaces: the nftables elements remain.
    t = tag(svc.data)
    for version in (1, 2):
        layout = cgroups.detect(f"reconciler-{t}", version)
        for base in layout.bases.values() if layout else []:
            for d in base.iterdir() if base.is_dir() else []:
                if d.is_dir():
                    cgroups.TaskCgroup.at(layout, d.name).kill_all()  # type: ignore[arg-type]
    from pyroute2 import netns

    for ns in network.NETNS_DIR.iterdir():
        if ns.name.startswith(f"rc-{t}-"):
            netns.remove(ns.name)
    assert len(elements(svc.data)) == 2
    svc.start()
    # an old task that is still dying may answer through the stale elements for a moment, and the
    # new start may fail once while the kernel tears the old namespace down: poll for both
    svc.wait(lambda: answer(PORT) == "pong" and len(elements(svc.data)) == 2, timeout=90,
             what="the port published again")  # fmt: skip
