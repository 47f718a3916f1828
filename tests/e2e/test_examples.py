"""Every example in jobs/ validates, runs under the real service, and does what it says."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from reconciler.spec.load import Loader, is_job_file
from tests.e2e.service import ServiceProc

EXAMPLES = Path(__file__).parents[2] / "jobs"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProc]:
    root = tmp_path_factory.mktemp("examples")
    jobs = root / "jobs"
    shutil.copytree(EXAMPLES, jobs)
    s = ServiceProc(jobs, root / "data")
    s.start()
    yield s
    s.kill()
    teardown(s.data)


def test_every_example_validates() -> None:
    d = Loader(EXAMPLES).scan()
    assert not d.errors, [str(p) for p in d.errors]
    assert len(d.jobs) >= 5


def test_every_example_reaches_its_steady_state(svc: ServiceProc) -> None:
    want = {
        "web": {"web/site/0/server": "running", "web/site/1/server": "running"},
        "report": {"report/nightly/0/summarize": "complete"},
        "greeter": {"greeter/main/0/greet": "running"},
        "flaky": {"flaky/worker/0/work": "running"},
        "seeded": {"seeded/app/0/seed": "complete", "seeded/app/0/app": "running"},
    }
    for job, states in want.items():
        svc.wait(lambda j=job, s=states: svc.states(j) == s, 30, f"{job} steady")  # type: ignore[misc]
    assert {j for (j,) in svc.query("SELECT id FROM jobs")} == {
        p.stem for p in EXAMPLES.glob("*.hcl") if is_job_file(p.name)
    }  # web's two replicas come from jobs/web.vars.hcl


def _port(svc: ServiceProc, alloc: str) -> int:
    conf = (
        (svc.data / "allocs" / alloc / "tasks" / "server" / "shim.conf").read_bytes().split(b"\0")
    )
    return int(next(v for v in conf if v.startswith(b"NOMAD_PORT_http=")).split(b"=")[1])


def test_web_replicas_serve_their_template(svc: ServiceProc) -> None:
    for idx in (0, 1):
        port = _port(svc, f"web/site/{idx}")
        body = ""
        for _ in range(100):
            try:
                body = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read().decode()
                )
                break
            except OSError:
                time.sleep(0.1)
        assert f"replica {idx} of job web" in body


def test_report_and_seeded_outputs(svc: ServiceProc) -> None:
    count = svc.data / "allocs" / "report" / "nightly" / "0" / "alloc" / "data" / "count.txt"
    svc.wait(count.exists, 10, "report output")
    assert int(count.read_text()) > 10
    out = svc.cli("logs", "report/summarize").stdout
    assert "report for report by nobody" in out
    svc.wait(lambda: "seeded-at-" in svc.cli("logs", "seeded/app").stdout, 10, "seeded output")


def test_greeter_env_template(svc: ServiceProc) -> None:
    svc.wait(lambda: "hello from greet" in svc.cli("logs", "greeter/greet").stdout, 10, "greeting")
    assert (
        "running as task greet in alloc greeter.main[0]" in svc.cli("logs", "greeter/greet").stdout
    )


def test_web_replicas_are_registered_and_pass_their_check(svc: ServiceProc) -> None:
    import json

    def passing() -> list[tuple[str, str]]:
        out = json.loads(svc.cli("services", "web", "--json").stdout)["services"]
        return sorted((s["owner"], s["health"]) for s in out)

    svc.wait(lambda: passing() == [("web/site/0", "passing"),
                                   ("web/site/1", "passing")], 60, "web checks")  # fmt: skip
