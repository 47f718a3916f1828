"""Checks and services on real tasks: HTTP servers on loopback and in bridge namespaces."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc
from tests.e2e.test_service import write

# A handler that answers 200 for its first N requests, then 500 (a wedged server).
SERVER = """
import http.server, os, sys
seen = [0]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen[0] += 1
        code = 200 if seen[0] <= int(sys.argv[3]) else 500
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"version %s request %d" % (os.environ["VERSION"].encode(), seen[0]))
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def http_job(name: str, *, healthy_for: int = 1000000, mode: str = "host", port: str = "",
             check: str = "", extra_group: str = "", extra_job: str = "", count: int = 1,
             bind: str = "127.0.0.1", version: str = "1") -> str:  # fmt: skip
    port = port or 'port "http" {}'
    return f"""
job "{name}" {{
  {extra_job}
  group "g" {{
    count = {count}
    network {{
      mode = "{mode}"
      {port}
    }}
    {extra_group}
    task "web" {{
      driver = "exec"
      config {{
        command = "/usr/bin/python3"
        args    = ["/local/server.py", "{bind}", "${{NOMAD_PORT_http}}", "{healthy_for}"]
      }}
      env {{ VERSION = "{version}" }}
      template {{
        destination = "local/server.py"
        data        = <<EOT
{SERVER}
EOT
      }}
      kill_timeout = "2s"
      resources {{ memory = 64 }}
      service {{
        name     = "{name}"
        port     = "http"
        provider = "nomad"
        tags     = ["v{version}"]
        {check}
      }}
    }}
  }}
}}
"""


HTTP_CHECK = """
        check {
          name     = "http-ok"
          type     = "http"
          path     = "/health"
          interval = "1s"
          timeout  = "1s"
          %s
        }"""


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProc]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    s = ServiceProc(jobs, tmp_path / "data", "--allow-empty")
    s.start()
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def services(svc: ServiceProc) -> list[dict[str, object]]:
    out = json.loads(svc.cli("services", "--json").stdout)["services"]
    return out  # type: ignore[no-any-return]


def test_check_restart_restarts_a_wedged_server(svc: ServiceProc) -> None:
    restart = 'check_restart {\n limit = 2\n grace = "2s"\n }'
    write(svc, "flap.hcl", http_job("flap", healthy_for=3, check=HTTP_CHECK % restart,
                                    extra_group='restart {\n attempts = 5\n delay = "1s"\n'
                                                ' interval = "10m"\n mode = "fail"\n}'))  # fmt: skip
    svc.wait(lambda: svc.query("SELECT restarts FROM task_slots") == [(1,)], 60, "a check restart")
    [(msg,)] = svc.query("SELECT message FROM task_events WHERE type = 'Restart Signaled'")
    assert msg == 'healthcheck: check "http-ok" unhealthy'
    transitions = svc.query("SELECT previous, status, check_name FROM v_checks ORDER BY id")
    assert transitions[:2] == [("pending", "passing", "http-ok"), ("passing", "critical", "http-ok")]
    types = [t for (t,) in svc.query("SELECT type FROM task_events ORDER BY id")]
    assert types.index("Restart Signaled") < types.index("Restarting")
    # the restarted server passes again (a fresh instance, a fresh check)
    svc.wait(lambda: [s["health"] for s in services(svc)] == ["passing"], 30, "passing again")


def test_services_lists_host_and_bridge_instances_until_removed(svc: ServiceProc) -> None:
    write(svc, "host.hcl", http_job("hostsvc", check=HTTP_CHECK % ""))
    write(svc, "bridge.hcl", http_job("bridgesvc", mode="bridge", bind="0.0.0.0",
                                      port='port "http" { to = 8080 }', check=HTTP_CHECK % ""))  # fmt: skip

    def both_registered() -> bool:
        # The bridge's own check is not awaited: reconciler0 is shared with other data dirs,
        # whose cleanup may take it down under load; reachability is test_isolation's.
        health = {s["name"]: s["health"] for s in services(svc)}
        return health.get("hostsvc") == "passing" and "bridgesvc" in health

    svc.wait(both_registered, 90, "both services registered, the host one passing")
    by_name = {s["name"]: s for s in services(svc)}
    host, bridge = by_name["hostsvc"], by_name["bridgesvc"]
    conf = (svc.data / "allocs/hostsvc/g/0/tasks/web/shim.conf").read_bytes().split(b"\0")
    port = int(next(v for v in conf if v.startswith(b"NOMAD_PORT_http=")).split(b"=")[1])
    assert (host["address"], host["port"], host["owner"]) == ("127.0.0.1", port, "hostsvc/g/0/web")
    assert ipaddress.ip_address(bridge["address"]) in ipaddress.ip_network("172.26.64.0/20")
    assert bridge["port"] == 8080 and bridge["tags"] == ["v1"]
    text = svc.cli("services").stdout
    assert "hostsvc" in text and f"127.0.0.1:{port}" in text
    (svc.jobs / "host.hcl").unlink()
    (svc.jobs / "bridge.hcl").unlink()
    svc.wait(lambda: services(svc) == [], 60, "services removed")
    assert svc.cli("services", "hostsvc", check=False).returncode != 0


def _ports(svc: ServiceProc, job: str, count: int) -> list[int]:
    out = []
    for idx in range(count):
        conf = (svc.data / f"allocs/{job}/g/{idx}/tasks/web/shim.conf").read_bytes().split(b"\0")
        out.append(int(next(v for v in conf if v.startswith(b"NOMAD_PORT_http=")).split(b"=")[1]))
    return out


def _serving(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
            return r.read().decode()
    except (urllib.error.URLError, OSError):
        return ""


def test_a_version_whose_check_never_passes_is_reverted(svc: ServiceProc) -> None:
    update = ('update {\n max_parallel = 1\n min_healthy_time = "2s"\n healthy_deadline = "8s"\n'
              ' auto_revert = true\n health_check = "checks"\n}')  # fmt: skip
    write(svc, "rev.hcl", http_job("rev", count=2, check=HTTP_CHECK % "", extra_job=update))
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'rev'") == [("ready",)], 90,
             "version 1 ready")  # fmt: skip
    ports = _ports(svc, "rev", 2)
    gaps: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # someone answers with version 1 at every moment
        while not stop.is_set():
            if not any("version 1" in _serving(p) for p in ports):
                gaps.append(time.monotonic())
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        write(svc, "rev.hcl", http_job("rev", count=2, check=HTTP_CHECK % "", extra_job=update,
                                       healthy_for=0, version="2"))  # fmt: skip
        svc.wait(lambda: svc.query("SELECT count(*) FROM task_events WHERE type = 'Rolled Back'")
                 == [(1,)], 90, "the roll back")  # fmt: skip
        svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'rev'") == [("failed",)]
                 and all("version 1" in _serving(p) for p in ports), 60, "version 1 on both")  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    assert not gaps, f"no instance served version 1 at {len(gaps)} moments"
    [(msg,)] = svc.query("SELECT message FROM task_events WHERE type = 'Rolled Back'")
    assert 'not healthy within healthy_deadline: check "http-ok" of task web is critical' in msg
    [(reason,)] = svc.query("SELECT reason FROM jobs WHERE id = 'rev'")
    assert "rolled back" in reason
    status = svc.cli("status", "rev").stdout
    assert "rev: Failed" in status and "rolled back" in status


SCRIPTED = """
job "scripted" {
  group "g" {
    task "app" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "sleep 3; touch /local/ready; exec sleep 1000"]
      }
      kill_timeout = "1s"
      resources { memory = 32 }
      service {
        name = "scripted"
        check {
          name     = "ready-file"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "test -f /local/ready || exit 2"]
          interval = "1s"
          timeout  = "5s"
        }
      }
    }
  }
}
"""


def test_script_check_runs_inside_the_task(svc: ServiceProc) -> None:
    write(svc, "scripted.hcl", SCRIPTED)
    svc.wait(lambda: [s["health"] for s in services(svc)] == ["passing"], 60, "the file seen")
    transitions = svc.query("SELECT previous, status FROM v_checks ORDER BY id")
    assert transitions == [("pending", "critical"), ("critical", "passing")]
