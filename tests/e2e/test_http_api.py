"""The Nomad-compatible HTTP API of a running service, driven by python-nomad (the community
client) and by plain HTTP where python-nomad has no call (following a log)."""

from __future__ import annotations

import base64
import json
import os
import queue
import select
import subprocess
import time
from collections.abc import Iterator

import nomad
import pytest
import requests
from nomad.api import exceptions

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import BIN, ServiceProc
from tests.e2e.test_cli import free_port

WEB = """
job "web" {
  group "g" {
    count = 2
    task "srv" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo got-hup' HUP; echo hello-$NOMAD_ALLOC_INDEX; while true; do sleep 0.1; done"]
      }
      kill_signal = "SIGTERM"
      kill_timeout = "2s"
    }
  }
}
"""
EXTRA = WEB.replace('job "web"', 'job "extra"').replace("count = 2", "count = 1")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProc]:
    root = tmp_path_factory.mktemp("http")
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "web.hcl").write_text(WEB)
    port = free_port()
    s = ServiceProc(jobs, root / "data", "--http-addr", f"127.0.0.1:{port}")
    s.port = port  # type: ignore[attr-defined]
    s.start()
    s.wait(lambda: len(s.pids("web")) == 2)
    yield s
    s.kill()
    teardown(s.data)


@pytest.fixture
def client(svc: ServiceProc) -> nomad.Nomad:
    return nomad.Nomad(host="127.0.0.1", port=svc.port, timeout=30)  # type: ignore[attr-defined]


def _alloc(client: nomad.Nomad, index: int) -> dict:
    allocs = client.job.get_allocations("web")
    return next(a for a in allocs if a["Name"] == f"web.g[{index}]")


def test_lists_jobs_reads_a_job_and_its_allocations(client: nomad.Nomad, svc: ServiceProc) -> None:
    assert "web" in [j["ID"] for j in client.jobs.get_jobs()]
    job = client.job.get_job("web")
    assert job["Type"] == "service" and job["Status"] == "running"
    group = job["TaskGroups"][0]
    assert group["Name"] == "g" and group["Count"] == 2
    task = group["Tasks"][0]
    assert task["Name"] == "srv" and task["Driver"] == "exec"
    assert task["Config"]["command"] == "/bin/sh" and task["KillTimeout"] == 2_000_000_000
    allocs = client.job.get_allocations("web")
    assert sorted(a["Name"] for a in allocs) == ["web.g[0]", "web.g[1]"]
    svc.wait(lambda: {a["ClientStatus"] for a in client.job.get_allocations("web")} == {"running"})
    one = client.allocation.get_allocation(allocs[0]["ID"])
    assert one["Job"]["ID"] == "web" and one["TaskStates"]["srv"]["State"] == "running"
    assert "Started" in [e["Type"] for e in one["TaskStates"]["srv"]["Events"]]
    versions = client.job.get_versions("web")["Versions"]
    assert versions[0]["Version"] == 0 and versions[0]["ID"] == "web"
    node = client.nodes.get_nodes()[0]
    assert node["Status"] == "ready" and node["Drivers"]["exec"]["Healthy"]
    assert client.agent.get_agent()["config"]["Region"] == "global"
    with pytest.raises(exceptions.URLNotFoundNomadException):
        client.job.get_job("nope")


def test_streams_logs_framed_and_plain(client: nomad.Nomad, svc: ServiceProc) -> None:
    aid = _alloc(client, 0)["ID"]
    svc.wait(lambda: "hello-0" in client.client.stream_logs.stream(aid, "srv", "stdout", plain=True))
    framed = client.client.stream_logs.stream(aid, "srv", "stdout")
    frames = [json.loads(f) for f in framed.replace("}{", "}\n{").splitlines()]
    data = b"".join(base64.b64decode(f["Data"]) for f in frames if f)
    assert b"hello-0" in data and frames[0]["File"] == "alloc/logs/srv.stdout.0"


def test_follows_a_log_line_written_after_the_request(client: nomad.Nomad, svc: ServiceProc) -> None:
    aid = _alloc(client, 1)["ID"]
    url = f"http://127.0.0.1:{svc.port}/v1/client/fs/logs/{aid}"  # type: ignore[attr-defined]
    params = {"task": "srv", "type": "stdout", "follow": "true", "plain": "true", "origin": "end"}
    with requests.get(url, params=params, stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        time.sleep(0.3)  # the stream is open before the signal (not an assertion on time)
        client.client.allocation.signal_allocation(aid, "SIGHUP", task="srv")
        seen = b""
        deadline = time.monotonic() + 20
        for chunk in resp.iter_content(chunk_size=None):
            seen += chunk
            if b"got-hup" in seen or time.monotonic() > deadline:
                break
    assert b"got-hup" in seen


def test_reads_events(client: nomad.Nomad, svc: ServiceProc) -> None:
    stream, stop, events = client.event.stream.get_stream(timeout=30)
    stream.daemon = True
    stream.start()
    time.sleep(0.5)  # subscribed before the restart below
    aid = _alloc(client, 0)["ID"]
    client.client.allocation.restart_allocation(aid)
    found: list[dict] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            frame = events.get(timeout=1)
        except queue.Empty:
            continue
        found += [e for e in frame["Events"] if e["Topic"] == "Allocation" and e["Key"] == aid]
        if any(e["reconciler"]["Type"] == "Started" for e in found):
            break
    stop.set()
    assert found and found[0]["Type"] == "AllocationUpdated"
    assert found[0]["Payload"]["Allocation"]["JobID"] == "web"
    assert {"Restarting", "Started"} <= {e["reconciler"]["Type"] for e in found}
    svc.wait(lambda: len(svc.pids("web")) == 2)


def _listener_threads(svc: ServiceProc) -> int:
    """The service's threads serving HTTP (request threads and the watchers they started,
    which inherit the kernel name)."""
    n = 0
    for task in os.listdir(f"/proc/{svc.proc.pid}/task"):  # type: ignore[union-attr]
        try:
            with open(f"/proc/{svc.proc.pid}/task/{task}/comm") as f:  # type: ignore[union-attr]
                n += f.read().strip() == "rc-http-req"
        except FileNotFoundError:
            pass
    return n


def test_dropped_event_streams_end_with_their_threads(svc: ServiceProc) -> None:
    before = _listener_threads(svc)
    url = f"http://127.0.0.1:{svc.port}/v1/event/stream"  # type: ignore[attr-defined]
    streams = [requests.get(url, stream=True, timeout=30) for _ in range(3)]
    try:
        assert all(r.status_code == 200 for r in streams)
        svc.wait(lambda: _listener_threads(svc) >= before + 3, 30, "three streams served")
    finally:
        for r in streams:
            r.close()
    # Reading the store meanwhile (as every request does) must not keep them awake.
    svc.wait(lambda: bool(svc.query("SELECT count(*) FROM task_events")) and
             _listener_threads(svc) <= before, 60, "dropped streams ended")  # fmt: skip


def test_stats(client: nomad.Nomad, svc: ServiceProc) -> None:
    svc.wait(lambda: len(svc.pids("web")) == 2)
    stats = client.client.allocation.read_allocation_stats(_alloc(client, 1)["ID"])
    assert stats["Tasks"]["srv"]["ResourceUsage"]["MemoryStats"]["RSS"] > 0


def test_parse_plan_register_and_stop(client: nomad.Nomad, svc: ServiceProc) -> None:
    parsed = client.jobs.parse(EXTRA)
    assert parsed["ID"] == "extra" and parsed["TaskGroups"][0]["Count"] == 1
    with pytest.raises(exceptions.BadRequestNomadException) as bad:
        client.jobs.parse(EXTRA.replace('"exec"', '"docker"'))
    assert "<request>:" in bad.value.nomad_resp.text  # file:line of the problem
    # Nomad's JSON job, as `nomad job plan` sends it
    plan = client.job.plan_job("web", {"Job": client.jobs.parse(WEB.replace("count = 2", "count = 3"))})
    assert plan["Annotations"]["DesiredTGUpdates"]["g"]["Place"] == 1
    assert not (svc.jobs / "web.nomad.hcl").exists()  # a plan writes nothing
    # a JSON-only job is written as a job file; with its HCL source, the source is written
    client.job.register_job("extra", {"Job": parsed})
    written = (svc.jobs / "extra.nomad.hcl").read_text()
    assert written.startswith("# Written by reconciler") and 'job "extra"' in written
    client.job.register_job("extra", {"Job": parsed, "Submission": {"Source": EXTRA, "Format": "hcl2"}})
    assert (svc.jobs / "extra.nomad.hcl").read_text() == EXTRA
    svc.wait(lambda: len(svc.pids("extra")) == 1, what="the registered job to run")
    client.job.deregister_job("extra")
    svc.wait(lambda: not svc.pids("extra"), what="the job to stop")
    assert client.job.get_job("extra")["Stop"] is True
    with pytest.raises(exceptions.BadRequestNomadException):
        client.job.deregister_job("extra", purge=True)
    (svc.jobs / "extra.nomad.hcl").unlink()


def test_dashboard_assets_are_served(svc: ServiceProc) -> None:
    base = f"http://127.0.0.1:{svc.port}"  # type: ignore[attr-defined]
    page = requests.get(base + "/ui/", timeout=10)
    assert page.status_code == 200 and "reconciler" in page.text
    assert requests.get(base + "/ui/../state.db", timeout=10).status_code in (400, 404)
    overview = requests.get(base + "/v1/reconciler/overview", timeout=10).json()
    assert {j["id"] for j in overview["jobs"]} >= {"web"}


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 20) -> bytes:
    """Output of a following command until `needle` shows (polls the pipe, never sleeps)."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def _follow(svc: ServiceProc, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN), args[0], "--data-dir", str(svc.data), *args[1:]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def test_cli_logs_follow_and_events_follow(svc: ServiceProc) -> None:
    svc.wait(lambda: len(svc.pids("web")) == 2)
    logs = _follow(svc, "logs", "-f", "web/g/1/srv")
    events = _follow(svc, "events", "-f", "--json", "--last", "0", "web")
    try:
        assert b"hello-1" in _read_until(logs, b"hello-1")
        svc.cli("signal", "web/g/1/srv", "HUP")
        assert b"got-hup" in _read_until(logs, b"got-hup")
        seen = _read_until(events, b'"Signaling"')
        lines = [json.loads(x) for x in seen.splitlines() if x.strip()]
        assert any(e["type"] == "Signaling" and e["task"] == "srv" for e in lines)
    finally:
        for p in (logs, events):
            p.kill()
            p.wait(10)
    past = svc.cli("events", "web", "--last", "50").stdout
    assert "web/g/1/srv  Signaling" in past


WORK = """
job "work" {
  type = "batch"
  parameterized {
    payload       = "optional"
    meta_required = ["who"]
  }
  group "g" {
    restart {
      attempts = 1
      delay    = "1s"
      mode     = "fail"
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        # the first run reads the payload and removes it; the restart finds it gone: the
        # payload is written once per task, as Nomad's dispatch hook does
        args    = ["-c", "echo run who=$NOMAD_META_who; cat local/in.txt || echo no-payload; rm -f local/in.txt; exit 1"]
      }
      dispatch_payload { file = "in.txt" }
      resources { memory = 32 }
    }
  }
}
"""


def test_dispatch_through_the_api(client: nomad.Nomad, svc: ServiceProc) -> None:
    (svc.jobs / "work.hcl").write_text(WORK)
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'work'") == [("running",)],
             what="the parameterized job registered")  # fmt: skip
    payload = base64.b64encode(b"hello payload\n").decode()
    out = client.job.dispatch_job("work", payload=payload, meta={"who": "alice"})
    child = out["DispatchedJobID"]
    assert child.startswith("work/dispatch-") and {"EvalID", "EvalCreateIndex", "JobCreateIndex",
                                                    "Index"} <= set(out)  # fmt: skip
    svc.wait(lambda: svc.query("SELECT count(*) FROM task_instances WHERE job_id = ?"
                               " AND finished_at IS NOT NULL", child) == [(2,)],
             what="the child to run twice")  # fmt: skip
    logs = svc.cli("logs", f"{child}/t").stdout
    assert logs.count("run who=alice") == 2 and logs.count("hello payload") == 1, logs
    assert "no-payload" in logs
    # the checks and words of `reconciler dispatch`, as 400s naming the field
    with pytest.raises(exceptions.BadRequestNomadException) as bad:
        client.job.dispatch_job("work", meta={})
    assert "Dispatch did not provide required meta keys: ['who']" in bad.value.nomad_resp.text
    with pytest.raises(exceptions.BadRequestNomadException) as bad:
        client.job.dispatch_job("web", meta={"who": "x"})
    assert "is not a parameterized job" in bad.value.nomad_resp.text
    with pytest.raises(exceptions.URLNotFoundNomadException):
        client.job.dispatch_job("nothere")
    # an idempotency token (Nomad's ?idempotency_token=) returns the first child again
    url = f"http://127.0.0.1:{svc.port}/v1/job/work/dispatch"  # type: ignore[attr-defined]
    body = {"Meta": {"who": "bob"}, "IdPrefixTemplate": "nightly"}
    first = requests.post(url, params={"idempotency_token": "t1"}, json=body, timeout=30).json()
    again = requests.post(url, params={"idempotency_token": "t1"}, json=body, timeout=30).json()
    assert first["DispatchedJobID"].startswith("work/dispatch-nightly-")
    assert again["DispatchedJobID"] == first["DispatchedJobID"]
    (svc.jobs / "work.hcl").unlink()
