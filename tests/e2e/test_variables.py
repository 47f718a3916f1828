"""Nomad Variables under the real service: a template gets the secret, `reconciler var put`
re-renders the file and signals the task (no restart), another job cannot read it."""

from __future__ import annotations

from tests.e2e.service import ServiceProc

APP = """
job "app" {
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args = ["-c", "trap 'echo reloaded; cat /local/db.env' HUP; cat /local/db.env; while :; do sleep 0.1; done"]
      }
      template {
        data = <<EOT
{{ with nomadVar "nomad/jobs/app" }}password={{ .password }}{{ end }}
EOT
        destination = "local/db.env"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }
    }
  }
}
"""


def test_template_reads_a_variable_and_a_new_value_signals_the_task(svc: ServiceProc) -> None:
    svc.cli("var", "put", "nomad/jobs/app", "password=first-secret")
    (svc.jobs / "app.hcl").write_text(APP)
    svc.start()
    svc.wait(lambda: "password=first-secret" in svc.cli("logs", "app/t").stdout, 30, "first")
    pid = svc.pids("app")["app/g/0/t"]
    svc.cli("var", "put", "nomad/jobs/app", "password=second-secret")
    svc.wait(lambda: "password=second-secret" in svc.cli("logs", "app/t").stdout, 30, "second")
    assert "reloaded" in svc.cli("logs", "app/t").stdout
    assert svc.pids("app")["app/g/0/t"] == pid  # signalled, not restarted
    assert b"second-secret" not in (svc.data / "variables.db").read_bytes()
    assert "second-secret" in svc.cli("var", "get", "nomad/jobs/app").stdout

    other = APP.replace('job "app"', 'job "other"')
    (svc.jobs / "other.hcl").write_text(other)
    r = svc.cli("validate", str(svc.jobs / "other.hcl"), check=False)
    assert r.returncode == 1
    assert "the task other/g/t may read only nomad/jobs, nomad/jobs/other" in r.stdout + r.stderr
    svc.wait(lambda: svc.query("SELECT message FROM spec_errors WHERE message LIKE "
                               "'%may read only nomad/jobs, nomad/jobs/other%'"), 30,
             "the service refusing other.hcl")  # fmt: skip
    assert "other/g/0/t" not in svc.states()
