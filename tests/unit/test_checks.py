"""Services and checks through the loop with the fake executor and a fake clock: the
registry follows running tasks, probes hit real loopback sockets, transitions become history,
check_restart restarts through the restart policy."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.unit.conftest import Harness, job


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s
    s.close()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def service_job(port: int, check: str = "", mode: str = "host", extra_job: str = "") -> str:
    to = " to = 8080" if mode == "bridge" else ""
    return job(
        extra_job=extra_job,
        extra_group=f'network {{\n mode = "{mode}"\n port "http" {{ static = {port}{to} }}\n}}',
        extra_task=f'service {{\n name = "api"\n port = "http"\n tags = ["v1"]\n{check}\n}}',
    )


TCP = 'check {\n name = "alive"\n type = "tcp"\n interval = "2s"\n timeout = "1s"\n%s}'


def rows(h: Harness, sql: str) -> list[tuple[object, ...]]:
    with h.store.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(sql).all()]


def run_checks(h: Harness, seconds: float, step: float = 0.5) -> None:
    """Advance the fake clock; let the scheduler probe and the loop record what it posts."""
    t = 0.0
    while t < seconds:
        h.clock.advance(step)
        t += step
        for _ in range(20):  # the probe's socket needs a few selector rounds on loopback
            h.service.checks.run_once(0.01)
        h.step()


def test_registered_while_running_removed_when_the_job_goes(h: Harness) -> None:
    h.write("web.hcl", service_job(23456))
    h.write("other.hcl", job("other"))
    h.step()
    assert rows(h, "SELECT name, address, port, port_label, tags, task FROM services") == [
        ("api", "127.0.0.1", 23456, "http", '["v1"]', "t")
    ]
    h.remove("web.hcl")
    h.step()
    h.step()
    assert rows(h, "SELECT name FROM services") == []


def test_bridge_service_has_the_namespace_address_and_inside_port(h: Harness) -> None:
    h.write("web.hcl", service_job(23456, mode="bridge"))
    h.step()
    [(address, port)] = rows(h, "SELECT address, port FROM services")
    assert address == h.fake.alloc_address("web/g/0") and port == 8080


def test_transitions_not_probes_become_history(h: Harness, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    h.write("web.hcl", service_job(port, TCP % ""))
    h.step()
    assert rows(h, "SELECT status FROM checks") == [("pending",)]
    run_checks(h, 6)  # first probe at interval/2, then every interval: three probes
    assert rows(h, "SELECT status FROM checks") == [("passing",)]
    listener.close()
    run_checks(h, 3)
    assert rows(h, "SELECT previous, status, check_name, address FROM v_checks ORDER BY id") == [
        ("pending", "passing", "alive", "web/g/0/t"),
        ("passing", "critical", "alive", "web/g/0/t"),
    ]


def test_check_restart_restarts_through_the_restart_policy(h: Harness) -> None:
    dead = free_port()
    h.write("web.hcl", service_job(dead, TCP % 'check_restart {\n limit = 2\n grace = "3s"\n}\n'))
    h.step()
    run_checks(h, 4)  # critical at 1 s, but within grace
    assert h.states() == {"web/g/0/t": "running"}
    run_checks(h, 4)  # unhealthy since 3 s; limit 2 x 2 s interval → restart at 5 s
    events = h.events("web/g/0/t")
    assert "Restart Signaled" in events and "Restarting" in events
    with h.store.engine.connect() as c:
        msg, = c.exec_driver_sql(
            "SELECT message FROM task_events WHERE type = 'Restart Signaled'").one()
        restarts, = c.exec_driver_sql("SELECT restarts FROM task_slots").one()
    assert msg == 'healthcheck: check "alive" unhealthy' and restarts == 1


def test_a_changed_check_starts_pending_without_a_restart(h: Harness) -> None:
    """Changing a check re-registers it (pending again) without restarting the task."""
    port = free_port()
    h.write("web.hcl", service_job(port, TCP % ""))
    h.step()
    h.write("web.hcl", service_job(port, (TCP % "").replace('"2s"', '"3s"')))
    h.step()
    assert len(h.fake.started) == 1
    assert rows(h, "SELECT status FROM checks") == [("pending",)]


UPDATE = ('update {\n max_parallel = 1\n min_healthy_time = "2s"\n healthy_deadline = "10s"\n'
          ' auto_revert = true\n health_check = "%s"\n}')  # fmt: skip


def test_a_version_whose_check_never_passes_is_rolled_back(
    h: Harness, listener: socket.socket
) -> None:
    good = listener.getsockname()[1]
    h.write("web.hcl", service_job(good, TCP % "", extra_job=UPDATE % "checks"))
    h.step()
    run_checks(h, 2.5)  # the task is up for 2.5 s, its check passing since 1 s
    assert h.job_status("web") == (
        "reconciling", "waiting for checks of web/g/0 passing for less than min_healthy_time")
    run_checks(h, 2)
    assert h.job_status("web") == ("ready", "")
    dead = free_port()
    h.write("web.hcl", service_job(dead, TCP % "", extra_job=UPDATE % "checks"))
    h.step()
    run_checks(h, 3)
    status, reason = h.job_status("web")
    assert status == "reconciling" and 'check "alive" of task t is critical' in reason
    run_checks(h, 10)
    status, reason = h.job_status("web")
    assert status == "failed" and ("rolling back" in reason or "rolled back" in reason), reason
    run_checks(h, 3)
    with h.store.engine.connect() as c:
        (msg,) = c.exec_driver_sql("SELECT message FROM task_events WHERE type = 'Rolled Back'").one()
    assert 'not healthy within healthy_deadline: check "alive" of task t is critical' in msg
    assert h.fake.tasks["web/g/0/t"].config.ports[0].host_port == good  # v1 runs again


def test_task_states_ignores_checks_and_manual_waits_for_promote(h: Harness) -> None:
    dead = free_port()
    h.write("web.hcl", service_job(dead, TCP % "", extra_job=UPDATE % "task_states"))
    h.step()
    run_checks(h, 3)
    assert h.job_status("web") == ("ready", "")  # the critical check does not matter
    h.write("web.hcl", service_job(dead, TCP % "", extra_job=(UPDATE % "manual") + "\nmeta { v = \"2\" }"))
    h.step()
    run_checks(h, 15)  # past healthy_deadline: manual is not judged by it
    status, reason = h.job_status("web")
    assert status == "reconciling" and "reconciler promote web" in reason
    reply = h.service.request("promote", job="web")
    h.step()
    assert reply.result(1)["promoted"]
    assert h.job_status("web")[0] == "ready"


def test_script_checks_run_inside_their_task_through_the_executor(h: Harness) -> None:
    script = ('check {\n name = "ready"\n type = "script"\n command = "/bin/check"\n'
              ' args = ["${NOMAD_TASK_NAME}"]\n interval = "2s"\n timeout = "1s"\n}')  # fmt: skip
    ran: list[list[str]] = []

    def exec_(handle, cmd, timeout):  # type: ignore[no-untyped-def]
        ran.append(cmd)
        return type("R", (), {"exit_code": 1, "output": b"almost"})()

    h.fake.exec = exec_  # type: ignore[method-assign]
    h.write("web.hcl", job(extra_group=f'service {{\n name = "grp"\n task = "t"\n{script}\n}}'))
    h.step()
    assert rows(h, "SELECT name, task, address, port FROM services") == [("grp", "", "127.0.0.1", 0)]
    pool = h.service.checks._scripts
    for _ in range(4):
        run_checks(h, 1)
        pool.submit(lambda: None).result(5)  # the script ran on the pool: let its result in
        for _ in range(5):
            h.service.checks.run_once(0.01)
        h.step()
    assert ran and ran[0] == ["/bin/check", "t"]
    assert rows(h, "SELECT status, output FROM checks") == [("warning", "almost")]


def test_a_new_service_process_drops_registrations_of_jobs_gone_meanwhile(h: Harness) -> None:
    from reconciler.db.registry import ServiceEntry

    h.store.sync_registry(["gone"], [ServiceEntry("gone", "g", 0, "t", "old", (), "127.0.0.1", 1,
                                                  "http", "x", "nomad")], [], 0.0)  # fmt: skip
    h.write("web.hcl", service_job(23456))
    h.step()
    assert rows(h, "SELECT name FROM services") == [("api",)]


def test_a_group_check_restarts_the_group_and_is_watched_again(h: Harness) -> None:
    dead = free_port()
    check = (TCP % 'check_restart {\n limit = 1\n grace = "1s"\n}\n')
    h.write("web.hcl", job(extra_group=f'network {{\n port "http" {{ static = {dead} }}\n}}\n'
                                       f'service {{\n name = "grp"\n port = "http"\n{check}\n}}',
                           extra_job='group "x" {\n task "y" {\n driver = "exec"\n'
                                     ' config { command = "/bin/y" }\n }\n}'))  # fmt: skip
    h.step()
    run_checks(h, 2)
    run_checks(h, 20, step=1.0)  # restart delay is 15 s: the second run is watched again
    with h.store.engine.connect() as c:
        n = c.exec_driver_sql("SELECT count(*) FROM task_events WHERE type = 'Restart Signaled'"
                              " AND group_name = 'g'").one()[0]  # fmt: skip
    assert n >= 2
    assert "Restart Signaled" not in h.events("web/x/0/y")


def test_check_transitions_wait_out_a_full_disk(h: Harness, listener: socket.socket,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from tests.unit.test_faults import StoreFault

    h.write("web.hcl", service_job(listener.getsockname()[1], TCP % ""))
    h.step()
    fault = StoreFault(h.store, monkeypatch)
    fault.on = True
    run_checks(h, 2)  # the first result comes while the store refuses writes
    fault.on = False
    h.clock.advance(60)  # past the backoff
    h.step()
    assert rows(h, "SELECT previous, status FROM v_checks") == [("pending", "passing")]
