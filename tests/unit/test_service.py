"""The loop with the fake executor: Nomad's semantics, end to end through the real store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import Harness, job


def test_drop_a_file_starts_count_instances(h: Harness) -> None:
    h.write("web.hcl", job(count=2))
    h.step()
    assert h.states() == {"web/g/0/t": "running", "web/g/1/t": "running"}
    assert h.events("web/g/0/t") == ["Received", "Task Setup", "Started"]
    cfg = h.fake.started[0]
    assert cfg.env["NOMAD_JOB_NAME"] == "web" and cfg.env["NOMAD_ALLOC_INDEX"] == "0"
    assert cfg.env["NOMAD_TASK_DIR"] == "/local" and cfg.user == "nobody"


def test_count_change_starts_or_stops_only_the_difference(h: Harness) -> None:
    h.write("web.hcl", job(count=3))
    h.step()
    pids = {t.handle.pid for t in h.fake.tasks.values()}
    h.write("web.hcl", job(count=5))
    h.step()
    assert len(h.states()) == 5
    assert pids <= {t.handle.pid for t in h.fake.tasks.values() if t.alive}
    h.write("web.hcl", job(count=2))
    h.step()
    h.step()
    assert h.states() == {"web/g/0/t": "running", "web/g/1/t": "running"}
    assert len(h.fake.alive()) == 2


def test_changed_spec_restarts_one_at_a_time(h: Harness) -> None:
    h.write(
        "web.hcl",
        job(count=3, extra_job='update {\n max_parallel = 1\n min_healthy_time = "10s"\n}'),
    )
    h.step(11)
    h.step()
    h.write(
        "web.hcl",
        job(
            count=3,
            env='V = "2"',
            extra_job='update {\n max_parallel = 1\n min_healthy_time = "10s"\n}',
        ),
    )
    h.step()
    new = [c for c in h.fake.started if c.env.get("V") == "2"]
    assert len(new) == 1  # one instance updated, the others wait for it to be healthy
    h.step(11)
    h.step(11)
    h.step(11)
    new = [c for c in h.fake.started if c.env.get("V") == "2"]
    assert len(new) == 3 and len(h.fake.alive()) == 3
    assert h.job_status("web")[0] == "ready"


def test_unchanged_spec_is_not_restarted(h: Harness) -> None:
    h.write("web.hcl", job())
    h.step()
    h.write("web.hcl", job() + "\n# only a comment\n")
    h.step()
    assert len(h.fake.started) == 1


def test_broken_edit_keeps_last_good_version_running(h: Harness) -> None:
    h.write("web.hcl", job())
    h.step()
    h.write("web.hcl", job().replace("driver", "drivr"))
    h.step()
    assert h.states() == {"web/g/0/t": "running"} and len(h.fake.started) == 1
    status = h.job_status("web")
    assert "last good version kept" in status[1]
    with h.store.engine.connect() as c:
        errs = c.exec_driver_sql(
            "SELECT file, line, message FROM spec_errors WHERE cleared_at IS NULL"
        ).all()
    assert any("drivr" in e[2] for e in errs)
    h.write("web.hcl", job())  # fixed: errors cleared, still no restart
    h.step()
    assert len(h.fake.started) == 1
    with h.store.engine.connect() as c:
        assert not c.exec_driver_sql("SELECT 1 FROM spec_errors WHERE cleared_at IS NULL").all()


def test_removed_file_stops_its_job(h: Harness) -> None:
    h.write("web.hcl", job())
    h.write("api.hcl", job("api"))
    h.step()
    h.remove("web.hcl")
    h.step()
    h.step()
    assert h.states() == {"api/g/0/t": "running"}
    assert h.fake.alive() == ["api/g/0/t"]
    assert "web/g/0" in h.fake.released


def test_removing_every_job_needs_allow_empty(h: Harness) -> None:
    h.write("web.hcl", job())
    h.step()
    h.remove("web.hcl")
    h.step()
    assert h.fake.alive() == ["web/g/0/t"]
    h.service.allow_empty = True
    h.service._dirty = True
    h.step()
    h.step()
    assert h.fake.alive() == []


def test_unreadable_directory_stops_nothing(h: Harness) -> None:
    h.write("web.hcl", job())
    h.write("api.hcl", job("api"))
    h.step()
    (h.jobs / "web.hcl").unlink()
    (h.jobs / "api.hcl").unlink()
    h.jobs.rmdir()
    h.service.queue.put(("scan", 0.0))
    h.step()
    assert len(h.fake.alive()) == 2


def test_restart_policy_fail_mode(h: Harness) -> None:
    h.write(
        "w.hcl",
        job(
            "w",
            env='FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "3"',
            extra_group='restart {\n attempts = 2\n delay = "5s"\n interval = "10m"\n mode = "fail"\n}'
            "\nreschedule {\n attempts = 0\n unlimited = false\n}",  # the failure itself
        ),
    )
    h.step()
    for _ in range(2):
        h.step(1)
        assert h.states() == {"w/g/0/t": "pending"}
        h.step(6)
        assert h.states() == {"w/g/0/t": "running"}
    h.step(1)
    assert h.states() == {"w/g/0/t": "failed"}
    assert h.events("w/g/0/t")[-1] == "Not Restarting"
    assert h.job_status("w")[0] == "failed"
    h.step(3600)
    assert len(h.fake.started) == 3  # a known bad version is not retried in a loop


def test_restart_policy_delay_mode_waits_out_the_interval(h: Harness) -> None:
    h.write(
        "w.hcl",
        job(
            "w",
            env='FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "1"',
            extra_group='restart {\n attempts = 1\n delay = "1s"\n interval = "60s"\n mode = "delay"\n}',
        ),
    )
    h.step()
    h.step(1)
    h.step(1.5)
    assert len(h.fake.started) == 2
    h.step(1)  # second failure: over the attempts, waits for the window
    assert h.states() == {"w/g/0/t": "pending"}
    h.step(10)
    assert len(h.fake.started) == 2
    h.step(60)
    assert len(h.fake.started) == 3


def test_service_task_restarts_after_exit_zero_batch_does_not(h: Harness) -> None:
    h.write("s.hcl", job("s", env='FAKE_RUN_FOR = "1"', extra_group='restart { delay = "0s" }'))
    h.write("b.hcl", job("b", typ="batch", env='FAKE_RUN_FOR = "1"'))
    h.step()
    h.step(1)
    h.step(0.1)
    assert h.states("b") == {"b/g/0/t": "complete"}
    assert h.states("s")["s/g/0/t"] == "running"
    assert len([c for c in h.fake.started if c.id.startswith("s/")]) == 2
    h.step(100)
    assert len([c for c in h.fake.started if c.id.startswith("b/")]) == 1
    h.write("b.hcl", job("b", typ="batch", env='FAKE_RUN_FOR = "1"\n X = "changed"'))
    h.step()
    assert len([c for c in h.fake.started if c.id.startswith("b/")]) == 2


def test_permanent_start_error_is_not_retried(h: Harness) -> None:
    h.write("w.hcl", job("w", env='FAKE_START_ERROR = "no such binary"',
                         extra_group="reschedule {\n attempts = 0\n unlimited = false\n}"))  # fmt: skip
    h.step()
    assert h.states() == {"w/g/0/t": "failed"}
    assert h.events("w/g/0/t")[-2:] == ["Driver Failure", "Not Restarting"]
    h.step(3600)
    assert len(h.fake.started) == 0


def test_lifecycle_order(h: Harness) -> None:
    text = """
job "l" {
  group "g" {
    task "init" {
      lifecycle { hook = "prestart" }
      driver = "exec"
      config { command = "/bin/init" }
      env { FAKE_RUN_FOR = "2" }
    }
    task "side" {
      lifecycle {
        hook = "prestart"
        sidecar = true
      }
      driver = "exec"
      config { command = "/bin/side" }
    }
    task "main" {
      driver = "exec"
      config { command = "/bin/main" }
      env { FAKE_RUN_FOR = "10" }
    }
    task "after" {
      lifecycle { hook = "poststart" }
      driver = "exec"
      config { command = "/bin/after" }
    }
    task "cleanup" {
      lifecycle { hook = "poststop" }
      driver = "exec"
      config { command = "/bin/cleanup" }
    }
  }
}
"""
    h.write("l.hcl", text.replace('job "l" {', 'job "l" {\n type = "batch"'))
    h.step()
    assert [c.command for c in h.fake.started] == ["/bin/init", "/bin/side"]
    h.step(2)
    assert [c.command for c in h.fake.started][2:] == ["/bin/main", "/bin/after"]
    h.step(10)
    assert h.fake.started[-1].command == "/bin/cleanup"


def test_auto_revert_rolls_back_to_last_good(h: Harness) -> None:
    upd = 'update {\n min_healthy_time = "5s"\n auto_revert = true\n}'
    h.write("w.hcl", job("w", extra_job=upd))
    h.step()
    h.step(6)
    assert h.job_status("w") == ("ready", "")
    h.write("w.hcl", job("w", extra_job=upd, env='FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "1"'))
    h.step()
    h.step(1)
    h.step()
    bad = [c for c in h.fake.started if "FAKE_EXIT_CODE" in c.env]
    assert len(bad) == 1
    h.step(20)
    h.step(20)
    assert h.fake.started[-1].env.get("FAKE_EXIT_CODE") is None
    assert h.states() == {"w/g/0/t": "running"}
    status, reason = h.job_status("w")
    assert "rolled back" in reason
    with h.store.engine.connect() as c:
        states = [
            r[0] for r in c.exec_driver_sql("SELECT state FROM job_versions ORDER BY id").all()
        ]
    assert states == ["applied", "rejected"]
    h.step(600)
    assert len([c for c in h.fake.started if "FAKE_EXIT_CODE" in c.env]) == 1  # not retried


def test_kill_signal_and_timeout_passed_to_executor(h: Harness) -> None:
    h.write(
        "w.hcl",
        job(
            "w",
            extra_task='kill_signal = "SIGTERM"\n kill_timeout = "2s"',
            env='FAKE_IGNORE_SIGNAL = "1"',
        ),
    )
    h.write("x.hcl", job("x"))
    h.step()
    h.remove("w.hcl")
    h.step()
    assert h.fake.tasks["w/g/0/t"].signals == ["SIGTERM"]
    assert h.states("w") == {"w/g/0/t": "stopping"}
    h.step(1)
    assert h.fake.tasks["w/g/0/t"].alive
    h.step(1.5)
    assert h.states("w") == {}
    assert h.events("w/g/0/t")[-3:] == ["Killing", "Terminated", "Killed"]


def test_constraint_unmet_blocks_the_job(h: Harness) -> None:
    h.write(
        "w.hcl",
        job(
            "w", extra_job='constraint {\n attribute = "${attr.kernel.name}"\n value = "windows"\n}'
        ),
    )
    h.step()
    assert h.fake.started == []
    status, reason = h.job_status("w")
    assert status == "blocked" and "windows" in reason


def test_operator_stop_and_start(h: Harness) -> None:
    h.write("w.hcl", job("w"))
    h.step()
    fut = h.service.request("stop", job="w")
    h.step()
    assert fut.result() == {"ok": True}
    h.step()
    assert h.states() == {"w/g/0/t": "dead"} and h.job_status("w")[0] == "stopped"
    h.service.request("start", job="w")
    h.step()
    h.step()
    assert h.states() == {"w/g/0/t": "running"} and len(h.fake.started) == 2


def test_operator_restart_does_not_count_against_policy(h: Harness) -> None:
    h.write("w.hcl", job("w"))
    h.step()
    fut = h.service.request("restart", keys=[["w", "g", 0, "t"]])
    h.step()
    assert fut.result() == {"restarted": ["w/g/0/t"]}
    h.step()
    h.step()
    assert len(h.fake.started) == 2
    assert h.store.observed().slots[next(iter(h.store.observed().slots))].restarts == 0


def test_readoption_after_service_restart(h: Harness) -> None:
    h.write("w.hcl", job("w", count=2))
    h.step()
    pids = sorted(t.handle.pid for t in h.fake.tasks.values())
    # A new service process: its executor finds both tasks still running.
    from reconciler.executor.base import NodeConfig
    from reconciler.service.loop import Service

    h.fake.survivors = {"w/g/0/t", "w/g/1/t"}
    h.service = Service(h.jobs, h.store, h.fake, NodeConfig(), clock=h.clock, watch=False)
    h.step()
    assert len(h.fake.started) == 2 and len(h.service.applier.running) == 2
    assert sorted(r.handle.pid for r in h.service.applier.running.values()) == pids


def test_lost_task_is_recorded_and_restarted(h: Harness) -> None:
    h.write("w.hcl", job("w"))
    h.step()
    from reconciler.executor.base import NodeConfig
    from reconciler.service.loop import Service

    h.fake.survivors = set()
    h.service = Service(h.jobs, h.store, h.fake, NodeConfig(), clock=h.clock, watch=False)
    h.step()
    assert len(h.fake.started) == 2
    with h.store.engine.connect() as c:
        outcomes = [
            r[0] for r in c.exec_driver_sql("SELECT outcome FROM task_instances ORDER BY id")
        ]
    assert outcomes == ["lost", "running"]
    assert "Failed Restoring Task" in h.events("w/g/0/t")


def test_history_has_every_transition(h: Harness) -> None:
    h.write(
        "w.hcl",
        job(
            "w",
            env='FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "2"',
            extra_group='restart { delay = "1s" }',
        ),
    )
    h.step()
    h.step(1)
    h.step(1.5)
    with h.store.engine.connect() as c:
        runs = c.exec_driver_sql("SELECT outcome, exit_code FROM v_runs ORDER BY id").all()
        restarts = c.exec_driver_sql("SELECT count(*) FROM v_restarts").scalar()
    assert [tuple(r) for r in runs] == [("failed", 2), ("running", None)]
    assert restarts == 1


def test_template_only_change_with_noop_does_not_restart(h: Harness) -> None:
    tmpl = 'template {\n data = "v1"\n destination = "local/x"\n change_mode = "noop"\n}'
    h.write("w.hcl", job("w", extra_task=tmpl))
    h.step()
    h.write("w.hcl", job("w", extra_task=tmpl.replace("v1", "v2")))
    h.step()
    assert len(h.fake.started) == 1
    assert "Template Rendered" in h.events("w/g/0/t")
    assert h.fake.rendered[-1].templates[0].text == "v2"


def test_a_refused_re_render_is_recorded_and_the_task_kept(h: Harness) -> None:
    tmpl = 'template {\n data = "v1"\n destination = "local/x"\n change_mode = "signal"\n change_signal = "SIGHUP"\n}'
    h.write("w.hcl", job("w", extra_task=tmpl))
    h.step()
    h.fake.render_error = "template destination 'local/x' refused: x is a symbolic link"
    h.write("w.hcl", job("w", extra_task=tmpl.replace("v1", "v2")))
    h.step()
    h.step(1)
    assert len(h.fake.started) == 1 and h.fake.tasks["w/g/0/t"].alive
    events = h.events("w/g/0/t")
    assert events.count("Template Failed") == 1 and "Template Rendered" not in events


def test_a_file_event_and_a_task_exit_prime_the_executor(h: Harness) -> None:
    h.write("a.hcl", job("a", env='FAKE_RUN_FOR = "5"'))
    h.step()
    assert h.fake.primes == 0  # nothing was seen early: the test harness does not watch
    path = h.jobs / "b.hcl"
    path.write_text(job("b"))
    h.service._early(str(path))
    assert h.fake.primes == 1
    h.service._warmer.shutdown(wait=True)  # the first changed file is parsed ahead
    assert any(k.endswith("b.hcl") for k in h.service.loader._by_digest)
    h.clock.advance(6)
    h.service.wait_exits(0)
    assert h.fake.primes == 2 and not h.service.queue.empty()  # a restart may follow


def _scopes(h: Harness, monkeypatch: pytest.MonkeyPatch) -> list[frozenset[str] | None]:
    import reconciler.service.passes as passes

    seen: list[frozenset[str] | None] = []
    real = passes.plan

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(kw.get("scope"))
        return real(*a, **kw)

    monkeypatch.setattr(passes, "plan", spy)
    return seen


def test_a_pass_plans_only_the_jobs_something_happened_to(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        h.write(f"{name}.hcl", job(name, env='FAKE_RUN_FOR = "30"' if name == "c" else ""))
    h.step()
    h.step(11)  # past min_healthy_time: every version promoted, nothing due
    seen = _scopes(h, monkeypatch)
    h.write("b.hcl", job("b", count=2))
    h.step()
    assert seen and set(seen) == {frozenset({"b"})}
    assert h.states("b") == {"b/g/0/t": "running", "b/g/1/t": "running"}
    seen.clear()
    h.step(20)  # c's task exits; b's new version is due for its health check
    assert seen and all(s is not None and "a" not in s for s in seen)
    assert any(s is not None and "c" in s for s in seen)
    assert h.states("c") == {"c/g/0/t": "pending"}  # restart due in 15 s (Nomad's default)
    seen.clear()
    h.step(16)  # nothing but the deadline wakes the loop
    assert seen and set(seen) == {frozenset({"c"})}
    assert len([c for c in h.fake.started if c.id == "c/g/0/t"]) == 2


def test_a_removed_job_is_planned_with_every_job_until_it_is_gone(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.write("a.hcl", job("a"))
    h.write("b.hcl", job("b"))
    h.step()
    seen = _scopes(h, monkeypatch)
    h.remove("b.hcl")
    h.step()
    assert seen[0] is None  # only a plan of every job may stop one
    assert "b/g/0/t" not in h.fake.alive() and h.job_status("b")[0] == "removed"
    seen.clear()
    h.write("a.hcl", job("a", count=2))
    h.step()
    assert seen and set(seen) == {frozenset({"a"})}  # b is gone: scoped again


def test_a_deadline_that_passed_during_a_pass_is_due_at_once(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.step()
    svc = h.service
    svc._deadline_of = {"a": [svc._last_pass + 0.5]}  # fell after the pass looked at the clock
    h.clock.advance(1)
    assert svc._next_timeout() == 0 and svc._due(h.clock()) == {"a"}
    h.step()
    assert svc._next_timeout() > 1  # seen by a plan now: no spinning


def test_a_health_request_does_not_make_a_pass(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.step()
    before = h.service.passes
    reply = h.service.request("health")
    h.step()
    assert reply.result(0)["running"] == 1 and h.service.passes == before


def test_a_directory_still_being_written_is_read_again_before_planning(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([False, False, True])
    scans: list[int] = []
    real = h.service.loader.scan

    def scan() -> Any:
        scans.append(1)
        return real()

    monkeypatch.setattr(h.service.loader, "settled", lambda: next(answers))
    monkeypatch.setattr(h.service.loader, "scan", scan)
    h.write("a.hcl", job("a"))
    h.step()
    assert len(scans) == 3 and h.states() == {"a/g/0/t": "running"}
