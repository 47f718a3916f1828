"""The HTTP listener's rules (token, loopback, routes, chunked streams) and the translation of
store rows into Nomad's JSON shapes. No service: a router with test routes on 127.0.0.1."""

from __future__ import annotations

import http.client as client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.service import http, jobjson, nomad
from reconciler.service.streams import _topics
from reconciler.spec.load import JobSpec, Loader, parse_text

BIG = [{"ID": f"alloc-{i}", "TaskStates": {"t": {"Events": ["x" * 200] * 3}}} for i in range(2000)]


def _server(token: str) -> Iterator[int]:
    router = http.Router()
    router.add("GET", "/v1/thing/([^/]+)", lambda r: {"id": r.params[0], "n": r.number("n")})
    router.add("GET", "/v1/stream", lambda r: http.Stream(iter([b"a\n", b"", b"b\n"])))
    router.add("POST", "/v1/fields", lambda r: r.fields())
    router.add("GET", "/v1/big", lambda r: {"n": r.number("n"), "items": BIG[: r.number("n")]})
    server = http.serve(router, "127.0.0.1:0", token, poll=0.05)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def open_port() -> Iterator[int]:
    yield from _server("")


@pytest.fixture
def token_port() -> Iterator[int]:
    yield from _server("s3cret")


def _get(port: int, path: str, **headers: str) -> tuple[int, bytes, client.HTTPResponse]:
    conn = client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, resp


def test_routes_params_and_errors(open_port: int) -> None:
    code, body, _ = _get(open_port, "/v1/thing/a%2Fb?n=3")
    assert code == 200 and json.loads(body) == {"id": "a/b", "n": 3}
    assert _get(open_port, "/v1/thing/x?n=zz")[0] == 400
    code, body, _ = _get(open_port, "/v1/nothing")
    assert code == 404 and b"Invalid URL path" in body


def test_a_body_is_a_json_object_or_refused(open_port: int) -> None:
    def post(body: bytes) -> tuple[int, bytes]:
        conn = client.HTTPConnection("127.0.0.1", open_port, timeout=10)
        conn.request("POST", "/v1/fields", body=body)
        resp = conn.getresponse()
        out = resp.status, resp.read()
        conn.close()
        return out

    code, body = post(b'{"Task": "t"}')
    assert code == 200 and json.loads(body) == {"Task": "t"}
    assert post(b"") == (200, b"{}")
    code, body = post(b'["t"]')
    assert code == 400 and b"must be a JSON object" in body
    code, body = post(b"{nope")
    assert code == 400 and b"not JSON" in body


def test_a_large_reply_goes_out_in_pieces_and_reads_the_same(open_port: int) -> None:
    code, body, resp = _get(open_port, "/v1/big?n=2000")
    assert code == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    assert json.loads(body) == {"n": 2000, "items": BIG}
    code, body, resp = _get(open_port, "/v1/big?n=2")
    assert resp.getheader("Content-Length") == str(len(body))
    assert json.loads(body) == {"n": 2, "items": BIG[:2]}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)),
       st.integers(1, 64))  # fmt: skip
def test_json_in_pieces_is_the_same_json(value: object, size: int) -> None:
    assert b"".join(http._json_pieces(value, size)) == json.dumps(value, separators=(",", ":")).encode()


def test_streams_are_chunked(open_port: int) -> None:
    code, body, resp = _get(open_port, "/v1/stream")
    assert code == 200 and body == b"a\nb\n" and resp.getheader("Transfer-Encoding") == "chunked"


def test_token_is_required_when_configured(token_port: int) -> None:
    assert _get(token_port, "/v1/thing/x")[0] == 403
    assert _get(token_port, "/v1/thing/x", **{"X-Nomad-Token": "wrong"})[0] == 403
    assert _get(token_port, "/v1/thing/x", **{"X-Nomad-Token": "s3cret"})[0] == 200
    assert _get(token_port, "/v1/thing/x", Authorization="Bearer s3cret")[0] == 200


def test_only_loopback_without_a_token() -> None:
    assert http.is_loopback("127.0.0.1") and http.is_loopback("::1")
    assert http.is_loopback("127.8.9.10")
    assert not http.is_loopback("10.1.2.3") and not http.is_loopback("::ffff:10.1.2.3")
    assert not http.is_loopback("not-an-address")


def test_dashboard_assets_only_by_plain_name(open_port: int) -> None:
    assert _get(open_port, "/ui/")[0] == 200
    assert _get(open_port, "/ui/..%2f__init__.py")[0] == 404
    assert _get(open_port, "/")[0] == 307


JOB = """
job "web" {
  group "g" {
    count = 2
    restart { attempts = 1  delay = "3s" }
    task "srv" {
      driver = "exec"
      config { command = "/bin/true" }
      env { A = "1" }
      kill_timeout = "2s"
      resources { memory = 64 }
    }
  }
}
"""


def test_job_in_nomads_shape() -> None:
    spec = parse_text(JOB, "web.hcl").jobs[0]
    row = {"id": "web", "status": "ready", "reason": "", "paused": False, "source_file": "web.hcl",
           "applied": "d", "attempted": "d", "applied_at": 10.0}  # fmt: skip
    job = nomad.job("web", spec.job.model_dump(mode="json"), row, 3)
    assert (job["ID"], job["Version"], job["Status"], job["Stable"]) == ("web", 3, "running", True)
    group = job["TaskGroups"][0]
    assert group["Name"] == "g" and group["Count"] == 2
    assert group["RestartPolicy"]["Attempts"] == 1 and group["RestartPolicy"]["Delay"] == 3_000_000_000
    task = group["Tasks"][0]
    assert task["KillTimeout"] == 2_000_000_000 and task["Env"] == {"A": "1"}
    assert task["Resources"]["MemoryMB"] == 64 and task["Config"]["command"] == "/bin/true"
    assert job["SubmitTime"] == 10_000_000_000


def test_reschedule_both_ways() -> None:
    """Nomad's JSON (ReschedulePolicy in a group, Reschedule in the job, durations in ns)
    reads as the block, and is written back the same way."""
    from reconciler.service.jobjson import to_hcl

    sent = {"ID": "w", "Type": "service", "Reschedule": {"Delay": 10_000_000_000},
            "TaskGroups": [{"Name": "g", "Count": 1, "ReschedulePolicy": {
                "Attempts": 0, "Interval": 0, "Delay": 30_000_000_000,
                "DelayFunction": "fibonacci", "MaxDelay": 3_600_000_000_000, "Unlimited": True},
                "Tasks": [{"Name": "t", "Driver": "exec", "Config": {"command": "/bin/true"}}]}]}  # fmt: skip
    result = parse_text(to_hcl(sent), "w.hcl")
    assert not result.problems
    spec = result.jobs[0]
    r = spec.job.group["g"].reschedule
    assert r is not None and (r.delay, r.max_delay, r.delay_function) == (30.0, 3600.0, "fibonacci")
    row = {"id": "w", "status": "ready", "reason": "", "paused": False, "source_file": "w.hcl",
           "applied": "d", "attempted": "d", "applied_at": 10.0}  # fmt: skip
    back = nomad.job("w", spec.job.model_dump(mode="json"), row, 1)
    assert back["Reschedule"]["Delay"] == 10_000_000_000
    assert back["TaskGroups"][0]["ReschedulePolicy"]["MaxDelay"] == 3_600_000_000_000


def _slot(state: str, **kw: object) -> dict[str, object]:
    return {"job_id": "web", "group_name": "g", "idx": 0, "task": "t", "state": state,
            "reason": "", "restarts": 0, "started_at": 5.0, "first_started": 5.0,
            "last_finished": None, "runs": 1, "stop_intent": "", "updated_at": 6.0} | kw  # fmt: skip


def test_allocation_status_and_ids() -> None:
    node = {"ID": "n", "Name": "host"}
    a = nomad.allocation([_slot("running")], [], node)
    assert a["ID"] == nomad.alloc_id("web", "g", 0) and a["Name"] == "web.g[0]"
    assert a["ClientStatus"] == "running" and a["TaskStates"]["t"]["State"] == "running"
    assert nomad.allocation([_slot("failed")], [], node)["ClientStatus"] == "failed"
    assert nomad.allocation([_slot("complete"), _slot("dead", task="u")], [], node)["ClientStatus"] == "complete"
    assert nomad.alloc_id("web", "g", 0) != nomad.alloc_id("web", "g", 1)
    assert a["RescheduleTracker"] is None
    moved = nomad.allocation([_slot("pending", reschedule='{"n":1,"e":[[100.0,30.0]]}')], [], node)
    assert moved["RescheduleTracker"]["Events"] == [{
        "RescheduleTime": 100_000_000_000, "PrevAllocID": a["ID"], "PrevNodeID": "n",
        "Delay": 30_000_000_000}]  # fmt: skip
    assert nomad.rfc3339(None) == nomad.ZERO_TIME


def test_events_and_topics() -> None:
    row = {"id": 7, "at": 1.0, "job_id": "web", "group_name": "g", "idx": 0, "task": "t",
           "type": "Terminated", "message": "exit code 3, signal 9"}  # fmt: skip
    e = nomad.event(row, {"Allocation": None})
    assert (e["Topic"], e["Index"], e["FilterKeys"]) == ("Allocation", 7, ["web"])
    assert nomad.task_event(row)["ExitCode"] == 3 and nomad.task_event(row)["Signal"] == 9
    job_row = row | {"task": "", "group_name": "", "idx": None, "type": "Job Stopped"}
    assert nomad.event(job_row, {})["Type"] == "JobDeregistered"
    assert _topics([]) == {"*": {"*"}}
    assert _topics(["Job:web", "Allocation", "Node"]) == {"Job": {"web"}, "Allocation": {"*"}}


# ---- Nomad's JSON job -> a job file ----

ROOT = Path(__file__).parents[2]
EXAMPLES = [
    spec for d in (ROOT / "jobs", ROOT / "tests" / "nomad_style")
    for spec in sorted(Loader(d).scan().jobs.values(), key=lambda s: s.id)
]  # fmt: skip


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda s: s.id)
def test_json_round_trip_gives_the_same_job(spec: JobSpec) -> None:
    as_json = nomad.job(spec.id, spec.job.model_dump(mode="json"), None, 0)
    again = parse_text(jobjson.to_hcl(json.loads(json.dumps(as_json))), "<json>")
    assert [s.canonical for s in again.jobs] == [spec.canonical], again.problems


def test_json_from_a_nomad_client() -> None:
    """The shape `nomad job plan` sends: unset fields null, Nomad-only blocks present."""
    job = {
        "ID": "api", "Name": "api", "Type": "service", "Datacenters": ["dc1"], "Priority": 50,
        "Region": "global", "Meta": None, "Constraints": None, "Update": None,
        "TaskGroups": [{
            "Name": "g", "Count": 0, "Constraints": None, "Meta": None,
            "EphemeralDisk": {"Sticky": False, "SizeMB": 300, "Migrate": False},
            "RestartPolicy": {"Interval": 1_800_000_000_000, "Attempts": 0, "Delay": 15_000_000_000,
                              "Mode": "fail", "RenderTemplates": False},
            "Networks": [{"Mode": "bridge", "DynamicPorts": [{"Label": "http", "Value": 0, "To": 8080}],
                          "ReservedPorts": None}],
            "Tasks": [{
                "Name": "t", "Driver": "exec", "User": "",
                "Config": {"command": "/bin/sh", "args": ["-c", "echo ${NOMAD_TASK_NAME} \"q\""]},
                "Env": {"A": "1"}, "Services": None, "Vault": None, "Templates": None,
                "Resources": {"CPU": 100, "MemoryMB": 64, "DiskMB": None, "IOPS": 0},
                "KillTimeout": 5_000_000_000, "Leader": False, "ShutdownDelay": 0,
                "LogConfig": {"MaxFiles": 10, "MaxFileSizeMB": 10, "Disabled": False},
            }],
        }],
    }  # fmt: skip
    result = parse_text(jobjson.to_hcl(job), "<json>")
    assert result.ok, result.problems
    spec = result.jobs[0].job
    group = spec.group["g"]
    assert group.count == 0 and group.restart is not None and group.restart.attempts == 0
    assert group.network.mode == "bridge" and group.network.port["http"].to == 8080
    task = group.task["t"]
    assert task.config.args == ["-c", 'echo ${NOMAD_TASK_NAME} "q"'] and task.env == {"A": "1"}
    assert task.resources.memory == 64
    assert any("ephemeral_disk" in p.path for p in result.problems)  # a warning, named


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
))  # fmt: skip
def test_any_json_gives_a_file_or_problems(body: object) -> None:
    job = {"ID": "x", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "exec", "Config": body}]}],
           "Meta": body if isinstance(body, dict) else None}  # fmt: skip
    result = parse_text(jobjson.to_hcl(job), "<json>")
    assert result.ok or result.problems


def test_a_dispatch_request_is_read_as_nomad_reads_it() -> None:
    """Field names in any case (Go's decoder), Payload in base64, the token from the query
    first; what is malformed is a 400 before the service is asked."""
    import base64
    from types import SimpleNamespace

    from reconciler.service.writes import Writes

    asked: list[tuple[str, dict[str, object]]] = []

    class Service:
        def request(self, action: str, **args: object) -> object:
            asked.append((action, args))
            return SimpleNamespace(result=lambda timeout: {"child": "w/dispatch-1-ab", "existing": True})

    writes = Writes(SimpleNamespace(service=Service()))  # type: ignore[arg-type]

    def post(body: object, query: dict[str, list[str]] | None = None) -> dict[str, object]:
        return writes.dispatch(http.Request("POST", "/v1/job/w/dispatch", query or {}, body, ("w",)))

    for body, message in [({"JobID": "x"}, "Job ID does not match"), ({"Meta": {"a": 1}}, "Meta"),
                          ({"Payload": "%%"}, "Payload: not base64"), ({"Priority": 101}, "priority"),
                          ([1], "JSON object")]:  # fmt: skip
        with pytest.raises(http.HttpError, match=message) as e:
            post(body)
        assert e.value.code == 400
    assert not asked
    out = post({"payload": base64.b64encode(b"hi").decode(), "META": {"who": "a"},
                "IdempotencyToken": "body", "IdPrefixTemplate": "p"},
               {"idempotency_token": ["query"]})  # fmt: skip
    assert out["DispatchedJobID"] == "w/dispatch-1-ab" and out["EvalID"] == ""
    assert asked == [("dispatch", {"job": "w", "meta": {"who": "a"}, "payload": b"hi".hex(),
                                   "token": "query", "prefix": "p"})]  # fmt: skip
