"""Every verb against a running service (real executor): human and JSON output, exit codes,
and the errors for a wrong or ambiguous task address."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc

WEB = """
job "web" {
  group "g" {
    count = 2
    task "srv" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo got-hup' HUP; echo hello-$NOMAD_ALLOC_INDEX; echo oops >&2; while true; do sleep 0.1; done"]
      }
      kill_signal = "SIGTERM"
    }
  }
}
"""
ONE = WEB.replace('job "web"', 'job "one"').replace("count = 2", "count = 1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProc]:
    root = tmp_path_factory.mktemp("cli")
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "web.hcl").write_text(WEB)
    (jobs / "one.hcl").write_text(ONE)
    port = free_port()
    s = ServiceProc(jobs, root / "data", "--metrics-addr", f"127.0.0.1:{port}")
    s.metrics_port = port  # type: ignore[attr-defined]
    s.start()
    s.wait(lambda: len(s.pids()) == 3)
    yield s
    s.kill()
    teardown(s.data)


def test_version(svc: ServiceProc) -> None:
    assert svc.cli("version").stdout.startswith("reconciler ")


def test_status_human_and_json(svc: ServiceProc) -> None:
    out = svc.cli("status").stdout
    assert "web: " in out and "web/g/1/srv" in out and "running" in out
    data = json.loads(svc.cli("status", "web", "--json").stdout)
    assert {t["state"] for t in data["tasks"]} == {"running"} and len(data["tasks"]) == 2
    missing = svc.cli("status", "nope", check=False)
    assert missing.returncode == 4 and "no job 'nope'" in missing.stderr


def test_logs_and_address_forms(svc: ServiceProc) -> None:
    svc.wait(lambda: "hello-0" in svc.cli("logs", "web/g/0/srv", check=False).stdout, 10)
    assert "oops" in svc.cli("logs", "one/srv", "--stderr").stdout
    assert svc.cli("logs", "one/srv", "--tail", "1").stdout.strip() == "hello-0"
    amb = svc.cli("logs", "web/srv", check=False)
    assert (
        amb.returncode == 2
        and "ambiguous" in amb.stderr
        and "web/g/0/srv, web/g/1/srv" in amb.stderr
    )
    wrong = svc.cli("logs", "web/nosuch", check=False)
    assert wrong.returncode == 4 and "the job has: web/g/0/srv, web/g/1/srv" in wrong.stderr
    bad = svc.cli("logs", "a/b/c", check=False)
    assert bad.returncode == 2


def test_exec_passes_exit_code_through(svc: ServiceProc) -> None:
    p = svc.cli("exec", "one/srv", "--", "sh", "-c", "echo inside-$$; exit 7", check=False)
    assert p.returncode == 7 and "inside-" in p.stdout
    ps = svc.cli("exec", "one/srv", "--", "ps", "ax").stdout.strip().splitlines()
    assert len(ps) <= 4  # header, sh (PID 1), its sleep, ps


def test_signal(svc: ServiceProc) -> None:
    svc.cli("signal", "one/srv", "HUP")
    svc.wait(lambda: "got-hup" in svc.cli("logs", "one/srv").stdout, 10)
    bad = svc.cli("signal", "one/srv", "SIGNOPE", check=False)
    assert bad.returncode == 2 and "unknown signal" in bad.stderr


def test_restart_task_and_job(svc: ServiceProc) -> None:
    before = svc.pids("one")["one/g/0/srv"]
    assert "restarting one/g/0/srv" in svc.cli("restart", "one/srv").stdout
    svc.wait(lambda: svc.pids("one").get("one/g/0/srv") not in (None, before), 15)
    web = svc.pids("web")
    svc.cli("restart", "web")
    svc.wait(
        lambda: (p := svc.pids("web")) and len(p) == 2 and not set(p.values()) & set(web.values()),
        15,
    )
    restarts = svc.query("SELECT restarts FROM task_slots WHERE job_id='one'")[0][0]
    assert restarts == 0


def test_stop_and_start_a_job(svc: ServiceProc) -> None:
    svc.cli("stop", "one")
    svc.wait(lambda: svc.states("one") == {"one/g/0/srv": "dead"}, 15)
    assert "Stopped" in svc.cli("status", "one").stdout
    svc.cli("start", "one")
    svc.wait(lambda: svc.states("one") == {"one/g/0/srv": "running"}, 15)
    missing = svc.cli("stop", "nope", check=False)
    assert missing.returncode == 4


def test_history(svc: ServiceProc) -> None:
    out = json.loads(svc.cli("history", "one", "--json").stdout)
    types = {e["type"] for e in out["events"]}
    assert {"Started", "Killing", "Terminated", "Restarting"} <= types
    assert any(r["outcome"] == "killed" for r in out["runs"])
    human = svc.cli("history", "one", "--since", "1h").stdout
    assert "runs" in human and "events" in human
    assert svc.cli("history", "--since", "yesterday-ish", check=False).returncode == 2


def test_node(svc: ServiceProc) -> None:
    data = json.loads(svc.cli("node", "--json").stdout)
    assert data["healthy"] and data["attributes"]["driver.exec"] == "true"
    assert "cgroup v" in svc.cli("node").stdout


def test_validate_and_plan(svc: ServiceProc, tmp_path: Path) -> None:
    bad = tmp_path / "bad.hcl"
    bad.write_text(WEB.replace("count = 2", "count = -2"))
    p = svc.cli("validate", str(bad), check=False)
    assert (
        p.returncode == 1
        and f"{bad}:4: job.web.group.g.count: must be greater than or equal to 0" in p.stderr
    )
    out = json.loads(svc.cli("validate", str(bad), "--json", check=False).stdout)
    assert out["ok"] is False and out["problems"][0]["line"] == 4
    assert svc.cli("validate", str(svc.jobs)).returncode == 0
    plan = json.loads(svc.cli("plan", "--jobs", str(svc.jobs), "--json").stdout)
    assert not plan["start"] and not plan["stop"] and len(plan["keep"]) == 3


def test_acting_verbs_explain_when_the_service_is_down(tmp_path: Path) -> None:
    s = ServiceProc(tmp_path, tmp_path / "nodata")
    (tmp_path / "nodata").mkdir()
    p = s.cli("stop", "web", check=False)
    assert p.returncode == 3 and "not running" in p.stderr
    p = s.cli("status", check=False)
    assert p.returncode == 4 and "no state store" in p.stderr


def test_metrics_move_when_a_task_restarts(svc: ServiceProc) -> None:
    url = f"http://127.0.0.1:{svc.metrics_port}/metrics"  # type: ignore[attr-defined]

    def value(name: str) -> float:
        for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert value('reconciler_tasks{state="running"}') >= 3
    before_restarts = value("reconciler_task_restarts_total")
    before_failures = value('reconciler_task_exits_total{outcome="failure"}')
    import os
    import signal

    pid = svc.pids("one")["one/g/0/srv"]
    os.kill(pid, signal.SIGKILL)
    svc.wait(lambda: value('reconciler_task_exits_total{outcome="failure"}') > before_failures, 10)
    assert value("reconciler_task_restarts_total") > before_restarts
    assert value("reconciler_reconcile_seconds_count") > 0
