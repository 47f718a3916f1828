"""Two group instances whose hashed dynamic ports are the same both run under the real service:
the second is given the next free port, each task sees its own NOMAD_PORT_http, binds it on
the host's loopback and answers there."""

from __future__ import annotations

import itertools
import json
import socket

from reconciler.spec import ports
from tests.e2e.conftest import answer
from tests.e2e.service import ServiceProc

JOB = """job "NAME" {
  group "g" {
    network {
      port "http" {}
    }
    task "srv" {
      driver = "exec"
      config {
        command = "/usr/bin/python3"
        args    = ["-c", <<EOT
import os, socket
port = int(os.environ["NOMAD_PORT_http"])
print("port=%d host=%s" % (port, os.environ["NOMAD_HOST_PORT_http"]), flush=True)
s = socket.socket()
s.bind(("127.0.0.1", port))
s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(("NAME %d" % port).encode())
    c.close()
EOT
        ]
      }
    }
  }
}
"""


def free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def colliding() -> tuple[str, str, int]:
    """Two job names whose instance 0 hashes "http" to the same port, free on this host along
    with the next one."""
    seen: dict[int, str] = {}
    for i in itertools.count():
        name = f"clash{i}"
        port = ports.dynamic_port(f"{name}/g/0", "http")
        if port in seen and free(port) and free(port + 1):
            return seen[port], name, port
        seen.setdefault(port, name)
    raise AssertionError("unreachable")


def test_two_instances_whose_hashed_ports_collide_both_run(svc: ServiceProc) -> None:
    first, second, port = colliding()
    (svc.jobs / "a.hcl").write_text(JOB.replace("NAME", first))
    svc.start()
    svc.wait(lambda: answer(port) == f"{first} {port}", timeout=60, what=f"{first} on {port}")
    (svc.jobs / "b.hcl").write_text(JOB.replace("NAME", second))
    svc.wait(lambda: answer(port + 1) == f"{second} {port + 1}", timeout=60,
             what=f"{second} on {port + 1}")  # fmt: skip
    for name, expect in ((first, port), (second, port + 1)):
        key = f"{name}/g/0/srv"
        svc.wait(lambda k=key: "port=" in svc.cli("logs", k, check=False).stdout, what="output")
        assert f"port={expect} host={expect}" in svc.cli("logs", key).stdout
    rows = svc.query("SELECT job_id, state, ports FROM task_slots ORDER BY job_id")
    assert sorted((j, st, json.loads(p)["http"]) for j, st, p in rows) == sorted(
        [(first, "running", port), (second, "running", port + 1)])  # fmt: skip
    assert answer(port) == f"{first} {port}"  # the first still has its own
