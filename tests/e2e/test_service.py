"""The real service on real tasks: drop, edit, break, fix and delete files; crash it."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.service import BIN, ServiceProc, alive

SLEEPER = """
job "{name}" {{
  group "g" {{
    count = {count}
    restart {{
      attempts = {attempts}
      delay    = "{delay}"
      interval = "10m"
      mode     = "{mode}"
    }}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "{script}"]
      }}
      kill_timeout = "2s"
      resources {{ memory = 32 }}
      {extra}
    }}
  }}
  {update}
}}
"""


def job(
    name: str,
    count: int = 1,
    script: str = "exec sleep 100000",
    attempts: int = 2,
    delay: str = "0s",
    mode: str = "fail",
    extra: str = "",
    update: str = "",
) -> str:
    return SLEEPER.format(name=name, count=count, script=script, attempts=attempts, delay=delay,
                          mode=mode, extra=extra, update=update)  # fmt: skip


# Nomad's defaults place a failed instance again (services after 30 s, batch once after 5 s);
# a test of the failure itself turns that off.
NO_RESCHEDULE = "reschedule {\n attempts = 0\n unlimited = false\n}"


def write(svc: ServiceProc, name: str, text: str) -> None:
    tmp = svc.jobs / f".{name}.tmp"
    tmp.write_text(text)
    tmp.rename(svc.jobs / name)  # an editor's atomic save


def test_drop_edit_break_fix_delete(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "a.hcl", job("a", count=2))
    write(svc, "keep.hcl", job("keep"))
    svc.wait(lambda: len(svc.pids()) == 3)
    first = svc.pids("a")
    # edit: a changed spec restarts the instances, a count change adds one
    write(svc, "a.hcl", job("a", count=3, script="exec sleep 99999"))
    def replaced() -> dict[str, int] | None:  # one read: instances are replaced one by one
        now = svc.pids("a")
        return now if len(now) == 3 and not set(now.values()) & set(first.values()) else None

    svc.wait(replaced)
    current = svc.pids("a")
    # break: the last good version keeps running, the error is recorded with its line
    write(svc, "a.hcl", job("a").replace("count", "cuont"))
    svc.wait(
        lambda: svc.query("SELECT count(*) FROM spec_errors WHERE cleared_at IS NULL")[0][0] > 0
    )
    time.sleep(0.5)
    assert svc.pids("a") == current
    status = svc.cli("status", "a").stdout
    assert "last good version kept" in status and 'did you mean "count"' in status
    # fix: errors clear, nothing restarts when the spec is what runs
    write(svc, "a.hcl", job("a", count=3, script="exec sleep 99999"))
    svc.wait(
        lambda: svc.query("SELECT count(*) FROM spec_errors WHERE cleared_at IS NULL")[0][0] == 0
    )
    assert svc.pids("a") == current
    # delete: the job stops, its processes are gone
    (svc.jobs / "a.hcl").unlink()
    svc.wait(lambda: not svc.states("a"))
    assert not any(alive(p) for p in current.values())
    assert len(svc.pids("keep")) == 1


def test_restart_policy_both_modes(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "f.hcl", job("f", script="exit 3", attempts=2, delay="0s", mode="fail",
                            update=NO_RESCHEDULE))  # fmt: skip
    write(
        svc,
        "d.hcl",
        job("d", script="exit 4", attempts=1, delay="0s", mode="delay").replace('"10m"', '"5s"'),
    )
    svc.wait(lambda: svc.states("f") == {"f/g/0/t": "failed"})
    assert svc.query("SELECT count(*) FROM task_instances WHERE job_id='f'")[0][0] == 3
    events = [r[0] for r in svc.query("SELECT type FROM task_events WHERE job_id='f' ORDER BY id")]
    assert events[-1] == "Not Restarting" and events.count("Restarting") == 2
    # delay mode: 2 runs, then a wait for the 5 s window, then runs again
    svc.wait(
        lambda: svc.query("SELECT count(*) FROM task_instances WHERE job_id='d'")[0][0] >= 3, 20
    )
    starts = [
        r[0]
        for r in svc.query("SELECT started_at FROM task_instances WHERE job_id='d' ORDER BY id")
    ]
    assert starts[2] - starts[1] >= 3.5


def test_restart_after_kill_with_zero_delay(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "r.hcl", job("r"))
    svc.wait(lambda: len(svc.pids("r")) == 1)
    pid = svc.pids("r")["r/g/0/t"]
    import os

    os.kill(pid, signal.SIGKILL)
    svc.wait(lambda: svc.pids("r").get("r/g/0/t") not in (None, pid))
    exit_row = svc.query("SELECT signal, outcome FROM task_instances WHERE pid=?", pid)[0]
    assert exit_row == (9, "failed")


def test_lifecycle_order_and_batch(svc: ServiceProc) -> None:
    text = """
job "life" {
  type = "batch"
  group "g" {
    task "prep" {
      lifecycle { hook = "prestart" }
      driver = "exec"
      config {
        command = "/bin/sh"
        args = ["-c", "sleep 0.5; echo prepared > /alloc/data/prep"]
      }
    }
    task "main" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args = ["-c", "cat /alloc/data/prep && echo main-done > /alloc/data/main"]
      }
    }
    task "post" {
      lifecycle { hook = "poststop" }
      driver = "exec"
      config {
        command = "/bin/sh"
        args = ["-c", "cat /alloc/data/main"]
      }
    }
  }
}
"""
    svc.start()
    write(svc, "life.hcl", text)
    svc.wait(lambda: list(svc.states("life").values()) == ["complete"] * 3)
    rows = svc.query(
        "SELECT task, started_at, finished_at, exit_code FROM task_instances ORDER BY started_at"
    )
    assert [r[0] for r in rows] == ["prep", "main", "post"]
    assert rows[1][1] >= rows[0][2] and rows[2][1] >= rows[1][2]
    assert all(r[3] == 0 for r in rows)


def test_auto_revert_rolls_back(svc: ServiceProc) -> None:
    upd = 'update {\n min_healthy_time = "1s"\n healthy_deadline = "20s"\n auto_revert = true\n}'
    svc.start()
    write(svc, "v.hcl", job("v", update=upd))
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id='v'") == [("ready",)])
    good = svc.query("SELECT applied_version_id FROM jobs")[0][0]
    write(svc, "v.hcl", job("v", script="sleep 0.2; exit 1", attempts=3, update=upd))
    svc.wait(lambda: svc.query("SELECT state FROM job_versions WHERE job_id='v' ORDER BY id")
             == [("applied",), ("rejected",)], 30, "rejection")  # fmt: skip
    svc.wait(lambda: len(svc.pids("v")) == 1)
    assert svc.query("SELECT applied_version_id FROM jobs")[0][0] == good
    time.sleep(1)
    runs = svc.query("SELECT count(*) FROM task_instances WHERE version_id != ?", good)[0][0]
    time.sleep(1.5)
    assert (
        svc.query("SELECT count(*) FROM task_instances WHERE version_id != ?", good)[0][0] == runs
    )


def test_tasks_survive_a_service_crash_and_are_readopted(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "s.hcl", job("s", count=3))
    write(svc, "e.hcl", job("e", script="sleep 1.5; exit 42", attempts=0, update=NO_RESCHEDULE))
    svc.wait(lambda: len(svc.pids()) == 4)
    pids = svc.pids("s")
    svc.kill(signal.SIGKILL)
    assert all(alive(p) for p in pids.values())
    time.sleep(2)  # e exits while the service is down
    svc.start()
    svc.wait(lambda: svc.states("e") == {"e/g/0/t": "failed"})
    assert svc.pids("s") == pids  # same pids: re-adopted, not restarted
    assert svc.query("SELECT exit_code, outcome FROM task_instances WHERE job_id='e'") == [
        (42, "failed")
    ]
    assert svc.query("SELECT count(*) FROM task_instances WHERE job_id='s'")[0][0] == 3


def test_sigterm_stops_the_service_and_leaves_tasks(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "s.hcl", job("s"))
    svc.wait(lambda: len(svc.pids()) == 1)
    pid = svc.pids()["s/g/0/t"]
    svc.kill(signal.SIGTERM)
    assert svc.proc is not None and svc.proc.returncode == 0 and alive(pid)


def test_second_instance_is_refused(svc: ServiceProc) -> None:
    svc.start()
    p = subprocess.run([str(BIN), "run", "--jobs", str(svc.jobs), "--data-dir", str(svc.data)],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert p.returncode == 1 and "another reconciler" in p.stderr


def test_git_checkout_of_50_files_applies_in_one_pass(svc: ServiceProc, tmp_path: Path) -> None:
    repo = svc.jobs
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    for i in range(50):
        (repo / f"j{i:02}.hcl").write_text(job(f"j{i:02}"))
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    subprocess.run([*git, "checkout", "-q", "-b", "v2"], check=True)
    for i in range(50):
        (repo / f"j{i:02}.hcl").write_text(job(f"j{i:02}", script="exec sleep 99999"))
    subprocess.run([*git, "commit", "-qam", "v2"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    subprocess.run([*git, "checkout", "-q", "main"], check=True)
    svc.start()
    svc.wait(lambda: len(svc.pids()) == 50, 60)
    before = svc.health()["change_passes"]
    subprocess.run([*git, "checkout", "-q", "v2"], check=True)
    svc.wait(lambda: svc.query("SELECT count(*) FROM task_instances WHERE finished_at IS NULL "
                               "AND version_id IN (SELECT id FROM job_versions WHERE git_commit=?)", head)[0][0] == 50,
             60, "v2 everywhere")  # fmt: skip
    # One pass decided all 50 updates: every Killing event carries that pass's timestamp.
    assert svc.query(
        "SELECT count(*), count(DISTINCT at) FROM task_events WHERE type = 'Killing'"
    ) == [(50, 1)]
    assert svc.health()["change_passes"] > before
    assert (
        svc.query(
            "SELECT count(DISTINCT git_commit) FROM job_versions WHERE git_commit IS NOT NULL"
        )[0][0]
        == 2
    )


def test_chaos_sigkill_during_churn(svc: ServiceProc) -> None:
    rng = random.Random(1234)
    rounds = 20
    svc.start()
    names = [f"c{i}" for i in range(6)]
    for n in names:
        write(svc, f"{n}.hcl", job(n, count=rng.randint(1, 3)))
    for _ in range(rounds):
        for n in rng.sample(names, 3):
            action = rng.random()
            if action < 0.6:
                write(
                    svc,
                    f"{n}.hcl",
                    job(
                        n, count=rng.randint(0, 3), script=f"exec sleep {rng.randint(10000, 10003)}"
                    ),
                )
            elif (svc.jobs / f"{n}.hcl").exists() and action < 0.8:
                (svc.jobs / f"{n}.hcl").unlink()
            else:
                write(svc, f"{n}.hcl", job(n, count=rng.randint(1, 2)))
        time.sleep(rng.uniform(0.0, 0.4))
        svc.kill(signal.SIGKILL)
        svc.start()
    # settle: every desired instance runs exactly once
    svc.wait(lambda: svc.health()["passes"] > 0)
    time.sleep(1)

    def converged() -> bool:
        want = set()
        for n in names:
            f = svc.jobs / f"{n}.hcl"
            if f.exists():
                import re

                count = int(re.search(r"count = (\d+)", f.read_text()).group(1))  # type: ignore[union-attr]
                want |= {f"{n}/g/{i}/t" for i in range(count)}
        states = svc.states()
        ok = set(svc.pids()) == want and all(v == "running" for v in states.values())
        diff.clear()
        diff.update(want=sorted(want - set(svc.pids())), extra=sorted(set(svc.pids()) - want),
                    states={k: v for k, v in states.items() if v != "running"})  # fmt: skip
        return ok

    diff: dict[str, object] = {}

    try:
        svc.wait(converged, 60, "convergence after chaos")
    except AssertionError:
        raise AssertionError(f"not converged: {diff}") from None
    open_runs = svc.query("SELECT job_id, group_name, idx, task, count(*) FROM task_instances "
                          "WHERE finished_at IS NULL GROUP BY 1, 2, 3, 4 HAVING count(*) > 1")  # fmt: skip
    assert open_runs == []  # never two instances of one slot
    running = set(svc.pids().values())
    assert all(alive(p) for p in running)
    # no process outside a known task: every live process in our cgroups is a known task's
    from reconciler.executor.linux import cgroups, pool, primer

    layout = cgroups.detect(__import__("reconciler.executor.linux.executor", fromlist=["x"])
                            .LinuxExecutor(svc.data).namespace)  # fmt: skip
    assert layout is not None
    base = next(iter(layout.bases.values()))
    found = set()
    for d in base.iterdir():
        # the service's own parked process, and its warm shims (no task yet), are no tasks
        if d.is_dir() and d.name != primer.CGROUP and not pool.is_pool_name(d.name):
            found |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
    assert found == running
    # no run is left open without a slot, and history has no gaps
    dangling = svc.query("SELECT count(*) FROM task_instances i WHERE finished_at IS NULL AND NOT EXISTS "
                         "(SELECT 1 FROM task_slots s WHERE s.instance_id = i.id)")[0][0]  # fmt: skip
    assert dangling == 0
    unexplained = svc.query("SELECT count(*) FROM task_instances i WHERE NOT EXISTS "
                            "(SELECT 1 FROM task_events e WHERE e.instance_id = i.id AND e.type = 'Started')"
                            " AND outcome != 'start_failed'")[0][0]  # fmt: skip
    assert unexplained == 0
    assert shutil.which("git")


def test_a_failed_instance_is_rescheduled_on_this_node(svc: ServiceProc) -> None:
    """restart { attempts = 0 } gives up at once; reschedule places the instance again after
    its delay (5 s: Nomad's minimum), again and again with `unlimited`."""
    svc.start()
    policy = 'reschedule {\n delay = "5s"\n delay_function = "constant"\n unlimited = true\n}'
    write(svc, "rs.hcl", job("rs", script="sleep 0.5; exit 3", attempts=0, update=policy))
    runs = "SELECT count(*) FROM task_instances WHERE job_id = 'rs'"
    svc.wait(lambda: svc.query(runs)[0][0] >= 2, 60, "a second run")
    events = [r[0] for r in svc.query("SELECT type FROM task_events WHERE job_id = 'rs'"
                                      " ORDER BY id")]  # fmt: skip
    assert events.count("Started") >= 2
    first = events.index("Rescheduling")
    assert events[first - 1] == "Not Restarting" and "Started" in events[first:]
    svc.wait(lambda: "rescheduling in" in svc.cli("status", "rs").stdout, 30,
             "status saying when it is placed again")  # fmt: skip
