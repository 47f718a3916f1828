"""A node never gives one host port to two live group instances (Nomad's NetworkIndex): the
planner chooses an instance's ports when it places it, a static port another instance holds
(or the node reserves) blocks the placement until it is freed, a dynamic port is the hashed
one when free, else the next free one; the choice is recorded with the slots and kept across
task restarts, service restarts and re-adoption."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.db import engine as db_engine
from reconciler.db.snapshot import Observed, SlotKey
from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.plan import Host, plan
from reconciler.service.loop import Service
from reconciler.spec import ports
from reconciler.spec.models import Network, Port
from reconciler.spec.node import NodeConfigError, load_node_config
from tests.unit.conftest import Harness, job
from tests.unit.test_cores import desired

NOW = 1_800_000_000.0


def port_job(name: str, block: str = "", count: int = 1) -> str:
    return job(name, count=count, extra_group=f'network {{\n port "http" {{\n {block}\n }}\n}}',
               extra_task='service {\n name = "api"\n port = "http"\n}')  # fmt: skip


def host_ports(h: Harness, job_id: str | None = None) -> dict[str, int]:
    """The host port each running task was started with, by task id."""
    return {c.id: int(c.env["NOMAD_HOST_PORT_http"]) for c in h.fake.started
            if "NOMAD_HOST_PORT_http" in c.env
            and (job_id is None or c.id.startswith(f"{job_id}/"))}  # fmt: skip


def registered(h: Harness, job_id: str) -> list[int]:
    with h.store.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT port FROM services WHERE job_id = ?", (job_id,)).all()
    return [r[0] for r in rows]


def recorded(h: Harness, key: str) -> tuple[tuple[str, int], ...]:
    job_id, group, idx, task = key.split("/")
    return h.store.observed().slots[SlotKey(job_id, group, int(idx), task)].ports


def restart_service(h: Harness, survivors: set[str], node: NodeConfig | None = None) -> None:
    h.fake.survivors = survivors
    h.service = Service(h.jobs, h.store, h.fake, node or NodeConfig(), clock=h.clock, watch=False)
    h.service.applier.jitter = lambda: 0.0


# ---- the pure chooser ----

LABEL = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
NETWORK = st.dictionaries(LABEL, st.builds(Port, static=st.none() | st.integers(1, 65535)),
                          min_size=1, max_size=4).map(lambda p: Network(port=p))  # fmt: skip


@given(NETWORK, st.integers(0, 30), st.data())
def test_the_chooser_never_gives_a_held_or_reserved_port(network: Network, idx: int,
                                                         data: st.DataObject) -> None:  # fmt: skip
    alloc = f"web/g/{idx}"
    lo, hi = ports.DYNAMIC_PORTS
    # what others hold and the node reserves crowds the hashed ports and their neighbours
    near = [ports.dynamic_port(alloc, label) + d for label in network.port for d in range(-2, 4)]
    statics = [p.static for p in network.port.values() if p.static]
    pool = st.sampled_from([n for n in near if lo <= n < hi] + statics)
    held = data.draw(st.dictionaries(pool, st.sampled_from(["other/g/0", "x/g/1", alloc])))
    reserved = data.draw(st.frozensets(pool))
    keep = data.draw(st.dictionaries(st.sampled_from(list(network.port)), st.integers(lo, hi - 1)))
    got, why = ports.choose(network, alloc, held, reserved, keep)
    assert (got, why) == ports.choose(network, alloc, dict(held), set(reserved), dict(keep))
    if why:
        assert got == () and why.startswith("network: ")
        clash = [p.static for p in network.port.values()
                 if p.static and (p.static in reserved or held.get(p.static, alloc) != alloc)]  # fmt: skip
        assert clash, why
        return
    assert [label for label, _ in got] == list(network.port)
    values = [port for _, port in got]
    assert len(set(values)) == len(values) or len(set(statics)) < len(statics)
    for label, port in got:
        static = network.port[label].static
        assert port == static if static else lo <= port < hi
        assert port not in reserved and held.get(port, alloc) == alloc
        if not static and keep.get(label) == port:
            continue
        if not static and port != ports.dynamic_port(alloc, label):  # moved on: hashed was taken
            first = ports.dynamic_port(alloc, label)
            assert first in reserved or held.get(first, alloc) != alloc or first in values


def test_a_dynamic_port_moves_to_the_next_free_one_and_keeps_what_it_had() -> None:
    network = Network(port={"http": Port()})
    first = ports.dynamic_port("a/g/0", "http")
    assert ports.choose(network, "a/g/0", {}) == ((("http", first),), "")
    assert ports.choose(network, "a/g/0", {first: "b/g/0"}, {first + 1}) == (
        (("http", first + 2),), "")  # fmt: skip
    assert ports.choose(network, "a/g/0", {first: "a/g/0"}) == ((("http", first),), "")
    kept = {"http": 20005}
    assert ports.choose(network, "a/g/0", {}, keep=kept) == ((("http", 20005),), "")
    last = ports.DYNAMIC_PORTS[1] - 1
    full = {p: "b/g/0" for p in range(*ports.DYNAMIC_PORTS) if p != 20000}
    assert ports.choose(network, "a/g/0", full) == ((("http", 20000),), "")  # wraps around
    full[20000] = "b/g/0"
    assert ports.choose(network, "a/g/0", full) == ((), "network: dynamic port selection failed")
    assert last in full


def test_nomads_words_for_a_static_port_that_is_taken() -> None:
    network = Network(port={"http": Port(static=8080)})
    assert ports.choose(network, "a/g/0", {8080: "b/g/0"})[1] == (
        "network: reserved port collision http=8080 (held by b/g/0)")  # fmt: skip
    assert ports.choose(network, "a/g/0", {}, frozenset({8080}))[1] == (
        "network: reserved port collision http=8080 (the node's reserved_ports)")  # fmt: skip


def test_reserved_ports_in_the_node_config(tmp_path: Path) -> None:
    path = tmp_path / "node.hcl"
    path.write_text('client {\n reserved {\n reserved_ports = "22,80,8000-8002"\n }\n}\n')
    settings = load_node_config(path)
    assert ports.parse_ranges(settings.reserved.reserved_ports) == {22, 80, 8000, 8001, 8002}
    path.write_text('client {\n reserved {\n reserved_ports = "80-22"\n }\n}\n')
    with pytest.raises(NodeConfigError, match="reserved_ports"):
        load_node_config(path)


def test_the_planner_skips_reserved_ports_and_refuses_a_static_one_in_them() -> None:
    from reconciler.spec.load import parse_text

    def spec(name: str, block: str):  # type: ignore[no-untyped-def]
        r = parse_text(port_job(name, block), f"{name}.hcl")
        assert r.ok, r.problems
        return r.jobs[0]

    dyn, static = spec("dyn", ""), spec("static", "static = 8080")
    first = ports.dynamic_port("dyn/g/0", "http")
    host = Host(reserved_ports=frozenset({first, 8080}))
    p = plan(desired(dyn, static), Observed(), host, NOW)
    assert [(str(a.key), a.ports) for a in p.start] == [("dyn/g/0/t", (("http", first + 1),))]
    assert p.status["static"] == ("blocked", "Resources exhausted: network: reserved port "
                                  "collision http=8080 (the node's reserved_ports)")  # fmt: skip


# ---- through the service and its store ----

def test_100_instances_with_dynamic_ports_get_100_distinct_ports(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 ports for 100 instances: hashing alone would give about 37 of them twice
    monkeypatch.setattr(ports, "DYNAMIC_PORTS", (20000, 20100))
    assert len({ports.dynamic_port(f"many/g/{i}", "http") for i in range(100)}) < 80
    h.write("many.hcl", port_job("many", count=100))
    h.step()
    got = host_ports(h)
    assert len(got) == 100 and set(got.values()) == set(range(20000, 20100))
    obs = h.store.observed()
    assert {str(k): dict(s.ports)["http"] for k, s in obs.slots.items()} == got
    assert obs.held_ports == {port: tid.rpartition("/")[0] for tid, port in got.items()}
    assert sorted(registered(h, "many")) == sorted(got.values())
    # a 101st instance finds no free port: blocked, with Nomad's words
    h.write("many.hcl", port_job("many", count=101))
    h.step()
    assert h.job_status("many") == ("blocked", "Resources exhausted: network: dynamic port "
                                    "selection failed")  # fmt: skip


def test_a_static_port_held_by_another_job_waits_until_it_is_freed(h: Harness) -> None:
    h.write("other.hcl", job("other"))  # (removing a must not look like "stop every job")
    h.write("a.hcl", port_job("a", "static = 23456"))
    h.step()
    h.write("b.hcl", port_job("b", "static = 23456"))
    h.step()
    assert host_ports(h) == {"a/g/0/t": 23456}
    assert h.job_status("b") == ("blocked", "Resources exhausted: network: reserved port "
                                 "collision http=23456 (held by a/g/0)")  # fmt: skip
    h.remove("a.hcl")
    h.step()
    h.step()
    assert host_ports(h, "b") == {"b/g/0/t": 23456}
    assert h.states("b") == {"b/g/0/t": "running"}
    assert h.job_status("b")[0] != "blocked"


def test_a_port_survives_a_task_restart_and_a_service_restart(h: Harness) -> None:
    # x holds w's hashed port: w is given the next free one, and keeps it once x is gone
    first = ports.dynamic_port("w/g/0", "http")
    h.write("x.hcl", port_job("x", f"static = {first}"))
    h.step()
    h.write("w.hcl", job("w", extra_group='network {\n port "http" {}\n}\nrestart { delay = "1s" }',
                         extra_task='service {\n name = "api"\n port = "http"\n}'))  # fmt: skip
    h.step()
    assert host_ports(h, "w") == {"w/g/0/t": first + 1}
    assert recorded(h, "w/g/0/t") == (("http", first + 1),)
    h.remove("x.hcl")
    h.step()
    h.step()
    assert h.states() == {"w/g/0/t": "running"}
    # the task exits and is restarted: same port, though its hashed one is free now
    h.fake.finish("w/g/0/t", exit_code=1)
    h.step()
    h.step(5)
    runs = [int(c.env["NOMAD_HOST_PORT_http"]) for c in h.fake.started if c.id == "w/g/0/t"]
    assert runs == [first + 1, first + 1]
    # the service restarts and re-adopts it: the registry still gives the recorded port
    restart_service(h, {"w/g/0/t"})
    h.step()
    assert len(h.fake.started) == 3 and registered(h, "w") == [first + 1]
    assert recorded(h, "w/g/0/t") == (("http", first + 1),)
    # the service restarts and the task is gone meanwhile: started again on the same port
    restart_service(h, set())
    h.step()
    h.step(5)
    runs = [int(c.env["NOMAD_HOST_PORT_http"]) for c in h.fake.started if c.id == "w/g/0/t"]
    assert runs == [first + 1] * 3
    assert h.states() == {"w/g/0/t": "running"}


def colliding(n: int = 2) -> list[str]:
    """Job names whose instance 0 draws the same hashed port for "http"."""
    seen: dict[int, list[str]] = {}
    for i in itertools.count():
        name = f"p{i}"
        same = seen.setdefault(ports.dynamic_port(f"{name}/g/0", "http"), [])
        same.append(name)
        if len(same) == n:
            return same
    raise AssertionError("unreachable")


def test_an_instance_recorded_before_ports_were_kept_keeps_its_hashed_port(h: Harness) -> None:
    old, new = colliding()
    h.write("old.hcl", port_job(old))
    h.step()
    hashed = ports.dynamic_port(f"{old}/g/0", "http")
    assert host_ports(h) == {f"{old}/g/0/t": hashed}
    # the store as the previous schema had it: no ports column
    path = h.store.path
    h.store.close()
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(db_engine.migrations_dir()))
    engine = db_engine.make_engine(path)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
        assert "ports" not in {r[1] for r in conn.exec_driver_sql("PRAGMA table_info(task_slots)")}
    engine.dispose()
    h.store = Store(path)  # migrates to HEAD
    assert recorded(h, f"{old}/g/0/t") == (("http", hashed),)
    restart_service(h, {f"{old}/g/0/t"})
    h.step()
    # a new job whose hashed port is the same is given another one
    h.write("new.hcl", port_job(new))
    h.step()
    got = host_ports(h)
    assert got[f"{old}/g/0/t"] == hashed and got[f"{new}/g/0/t"] == hashed + 1
    assert h.states() == {f"{old}/g/0/t": "running", f"{new}/g/0/t": "running"}


def test_the_services_node_config_reserves_ports(h: Harness) -> None:
    first = ports.dynamic_port("dyn/g/0", "http")
    restart_service(h, set(), NodeConfig(reserved_ports=frozenset({first, 8080})))
    h.write("dyn.hcl", port_job("dyn"))
    h.write("static.hcl", port_job("static", "static = 8080"))
    h.step()
    assert host_ports(h) == {"dyn/g/0/t": first + 1}
    assert h.job_status("static") == ("blocked", "Resources exhausted: network: reserved port "
                                      "collision http=8080 (the node's reserved_ports)")  # fmt: skip


def test_a_start_that_waits_for_its_artifacts_holds_its_ports(h: Harness) -> None:
    first = ports.dynamic_port("dl/g/0", "http")
    h.write("other.hcl", job("other"))
    h.write("dl.hcl", job("dl", extra_group='network {\n port "http" {}\n}',
                          extra_task='artifact {\n source = "https://example.com/a.tgz"\n}'))  # fmt: skip
    h.step()
    assert h.states("dl") == {"dl/g/0/t": "pending"}
    assert recorded(h, "dl/g/0/t") == (("http", first),)
    h.write("b.hcl", port_job("b", f"static = {first}"))
    h.step()
    assert h.job_status("b") == ("blocked", "Resources exhausted: network: reserved port "
                                 f"collision http={first} (held by dl/g/0)")  # fmt: skip
    h.fake.complete_fetches()
    h.step()
    assert host_ports(h, "dl") == {"dl/g/0/t": first}


def test_a_start_that_failed_and_waits_to_retry_holds_its_ports(h: Harness) -> None:
    first = ports.dynamic_port("bad/g/0", "http")
    h.write("bad.hcl", job("bad", env='FAKE_TEMP_ERROR = "no luck"',
                           extra_group='network {\n port "http" {}\n}'))  # fmt: skip
    h.step()
    assert h.states("bad") == {"bad/g/0/t": "pending"}
    assert recorded(h, "bad/g/0/t") == (("http", first),)
    assert h.store.observed().held_ports == {first: "bad/g/0"}


def test_two_instances_recorded_with_one_port_part_at_the_next_start(h: Harness) -> None:
    """As two instances whose hashed ports clashed before the store recorded ports: the one
    that runs keeps the port, the one that failed to bind it is given another."""
    old, new = colliding()
    hashed = ports.dynamic_port(f"{old}/g/0", "http")
    h.write("old.hcl", port_job(old))
    h.write("new.hcl", job(new, extra_group='network {\n port "http" {}\n}\nrestart { delay = "1s" }'))
    h.step()
    assert host_ports(h) == {f"{old}/g/0/t": hashed, f"{new}/g/0/t": hashed + 1}
    with h.store.engine.begin() as c:
        c.exec_driver_sql("UPDATE task_slots SET ports = ? WHERE job_id = ?",
                          (f'{{"http":{hashed}}}', new))  # fmt: skip
    h.fake.finish(f"{new}/g/0/t", exit_code=1)  # it could not bind
    h.step()
    assert h.store.observed().held_ports == {hashed: f"{old}/g/0"}
    h.step(20)
    runs = [int(c.env["NOMAD_HOST_PORT_http"]) for c in h.fake.started if c.id == f"{new}/g/0/t"]
    assert runs[-1] != hashed and len(runs) == 2
    assert h.states() == {f"{old}/g/0/t": "running", f"{new}/g/0/t": "running"}


def test_the_held_ports_are_read_again_only_after_a_slot_holding_ports_changed(h: Harness) -> None:
    import sqlite3

    h.write("a.hcl", port_job("a"))
    h.write("plain.hcl", job("plain"))
    h.step()
    held = h.store.observed().held_ports
    assert held == {ports.dynamic_port("a/g/0", "http"): "a/g/0"}
    with sqlite3.connect(h.store.path) as raw:  # another process: the triggers still count
        raw.execute("UPDATE task_slots SET reason = 'x' WHERE job_id = 'a'")
        raw.execute("UPDATE task_slots SET state = 'complete' WHERE job_id = 'plain'")
    assert h.store.observed().held_ports is held  # nothing that holds ports changed
    with sqlite3.connect(h.store.path) as raw:
        raw.execute("UPDATE task_slots SET state = 'complete' WHERE job_id = 'a'")
    assert h.store.observed().held_ports == {}


def test_a_changed_job_whose_new_static_port_is_taken_keeps_its_previous_version(h: Harness) -> None:
    h.write("a.hcl", port_job("a", "static = 23001"))
    h.write("b.hcl", port_job("b", "static = 23002"))
    h.step()
    h.write("b.hcl", port_job("b", "static = 23001"))  # a holds it
    h.step()
    assert host_ports(h, "b") == {"b/g/0/t": 23002}
    assert h.states("b") == {"b/g/0/t": "running"}
    assert h.job_status("b") == ("blocked", "Resources exhausted: network: reserved port "
                                 "collision http=23001 (held by a/g/0)")  # fmt: skip
    h.write("b.hcl", port_job("b", "static = 23003"))  # free: b moves to it
    h.step()
    h.step(10)
    assert [c.env["NOMAD_HOST_PORT_http"] for c in h.fake.started if c.id == "b/g/0/t"] == [
        "23002", "23003"]  # fmt: skip
    assert recorded(h, "b/g/0/t") == (("http", 23003),)
    assert h.store.observed().held_ports == {23001: "a/g/0", 23003: "b/g/0"}
