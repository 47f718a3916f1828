"""nomadService under the real service: job A serves on loopback and registers a Nomad
service; job B's template lists it (address:port). Stopping A renders B's file again and,
with change_mode "signal", the same process gets the signal."""

from __future__ import annotations

import socket

from tests.e2e.service import ServiceProc
from tests.e2e.test_cli import free_port

SERVER = """
job "a" {
  group "g" {
    network {
      port "http" { static = %d }
    }
    task "web" {
      driver = "exec"
      config {
        command = "/usr/bin/python3"
        args = ["-m", "http.server", "--bind", "127.0.0.1", "${NOMAD_PORT_http}"]
      }
      service {
        name = "web"
        provider = "nomad"
        port = "http"
        tags = ["v1"]
      }
    }
  }
}
"""

CLIENT = """
job "b" {
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args = ["-c", "trap 'echo reloaded; cat /local/upstreams' HUP; cat /local/upstreams; while :; do sleep 0.1; done"]
      }
      template {
        data = <<EOT
{{ range nomadService "v1.web" }}upstream {{ .Address }}:{{ .Port }} {{ .Name }}
{{ else }}no upstream
{{ end }}
EOT
        destination = "local/upstreams"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }
    }
  }
}
"""


def serves(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_a_template_lists_a_service_and_is_signalled_when_it_goes(svc: ServiceProc) -> None:
    port = free_port()
    (svc.jobs / "a.hcl").write_text(SERVER % port)
    (svc.jobs / "b.hcl").write_text(CLIENT)
    svc.start()
    want = f"upstream 127.0.0.1:{port} web"
    svc.wait(lambda: serves(port), 30, "job a serving on loopback")
    svc.wait(lambda: want in svc.cli("logs", "b/t").stdout, 30, "b's template listing a")
    pid = svc.pids("b")["b/g/0/t"]
    [rendered] = svc.data.glob("**/t/local/upstreams")
    assert rendered.read_text() == want + "\n\n"
    before = svc.cli("logs", "b/t").stdout.count("reloaded")  # 1 if b started before a

    (svc.jobs / "a.hcl").unlink()
    svc.wait(lambda: "no upstream" in rendered.read_text(), 30, "b's file rendered again")
    svc.wait(lambda: svc.cli("logs", "b/t").stdout.count("reloaded") > before, 30, "b signalled")
    assert svc.pids("b")["b/g/0/t"] == pid  # signalled, not restarted
    assert svc.cli("logs", "b/t").stdout.endswith("reloaded\nno upstream\n\n")
    assert not serves(port)


SELF_READER = """
job "self" {
  group "g" {
    network {
      port "http" { static = %d }
    }
    service {
      name = "self"
      provider = "nomad"
      port = "http"
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args = ["-c", "while :; do sleep 0.1; done"]
      }
      template {
        data = "{{ range nomadService \\"self\\" }}{{ .Address }}:{{ .Port }}{{ end }}"
        destination = "local/peers"
        change_mode = "noop"
      }
      template {
        data = "ok"
        destination = "local/health"
      }
    }
  }
}
"""


def test_a_task_listing_its_own_group_service_is_not_restarted(svc: ServiceProc) -> None:
    """The noop template's output changes once the group service registers; the static
    template beside it (change_mode restart by default) renders the same, so nothing
    restarts: as Nomad's template manager, which acts per template whose output changed."""
    port = free_port()
    (svc.jobs / "self.hcl").write_text(SELF_READER % port)
    svc.start()
    svc.wait(lambda: "self/g/0/t" in svc.pids("self"), 30, "the task running")
    pid = svc.pids("self")["self/g/0/t"]
    svc.wait(lambda: any(p.read_text() == f"127.0.0.1:{port}"
                         for p in svc.data.glob("**/t/local/peers")), 30, "its own service listed")  # fmt: skip
    svc.wait(lambda: "Template Rendered" in svc.cli("history", "self").stdout, 30, "the re-render")
    assert svc.pids("self") == {"self/g/0/t": pid}
    assert "Restart Signaled" not in svc.cli("history", "self").stdout
