"""Periodic and dispatched jobs on the real service, in real time."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.e2e.service import BIN, ServiceProc
from tests.e2e.test_service import write

PERIODIC = """
job "{name}" {{
  type = "batch"
  periodic {{
    crons            = ["{cron}"]
    prohibit_overlap = {overlap}
  }}
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "sleep {sleep}"]
      }}
      resources {{ memory = 32 }}
    }}
  }}
}}
"""

DISPATCH = """
job "{name}" {{
  type = "batch"
  parameterized {{
    payload       = "{payload}"
    meta_required = ["who"]
    meta_optional = ["extra"]
  }}
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "cat local/input.txt; echo \\"who=$NOMAD_META_who extra=[$NOMAD_META_extra]\\""]
      }}
      dispatch_payload {{ file = "input.txt" }}
      resources {{ memory = 32 }}
    }}
  }}
}}
"""


def periodic(name: str, cron: str, sleep: float = 0.1, overlap: bool = False) -> str:
    return PERIODIC.format(name=name, cron=cron, sleep=sleep, overlap=str(overlap).lower())


def force(svc: ServiceProc, job: str) -> subprocess.CompletedProcess[str]:
    argv = [str(BIN), "periodic", "force", "--data-dir", str(svc.data), job]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def children(svc: ServiceProc, parent: str) -> list[tuple[str, float]]:
    return svc.query("SELECT id, created_at FROM jobs WHERE parent_id = ? ORDER BY id", parent)


def test_seconds_resolution_launches_on_schedule(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "tick.hcl", periodic("tick", "*/2 * * * * * *"))
    svc.wait(lambda: len(children(svc, "tick")) >= 4, timeout=30, what="4 launches")
    rows = svc.query(
        "SELECT j.id, j.created_at, i.started_at FROM jobs j JOIN task_instances i"
        " ON i.job_id = j.id WHERE j.parent_id = 'tick' ORDER BY j.id"
    )
    assert len(rows) >= 3
    launched, started = [], []
    for child, created_at, started_at in rows:
        due = int(child.rsplit("-", 1)[1])
        assert due % 2 == 0  # named for its scheduled time
        launched.append(round((created_at - due) * 1000))
        started.append(round((started_at - due) * 1000))
    # figures only (speed lives in bench/): the child recorded, its task started, after due
    print(f"periodic: launched +{launched} ms, task started +{started} ms after due")
    assert all(d >= 0 for d in launched)
    svc.wait(lambda: svc.query("SELECT count(*) FROM task_instances WHERE job_id LIKE 'tick/%'"
                               " AND outcome = 'exited'")[0][0] >= 3, what="children complete")  # fmt: skip
    out = svc.cli("status", "tick").stdout
    assert "tick: Running (next launch " in out, out


def test_prohibit_overlap_skips_while_a_child_runs_and_force_does_not(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "slow.hcl", periodic("slow", "* * * * * * *", sleep=60, overlap=True))
    svc.wait(lambda: svc.query("SELECT count(*) FROM task_events WHERE job_id = 'slow'"
                               " AND type = 'Periodic Launch Skipped'")[0][0] >= 2,
             what="skipped launches")  # fmt: skip
    running = svc.query("SELECT count(*) FROM task_slots WHERE job_id LIKE 'slow/%'"
                        " AND state = 'running'")  # fmt: skip
    assert running == [(1,)]
    out = force(svc, "slow")
    assert out.returncode == 0 and "Force periodic successful" in out.stdout, out.stderr
    svc.wait(lambda: svc.query("SELECT count(*) FROM task_slots WHERE job_id LIKE 'slow/%'"
                               " AND state = 'running'")[0][0] == 2, what="forced child running")  # fmt: skip
    bad = force(svc, "nothere")
    assert bad.returncode == 4 and "no job 'nothere'" in bad.stderr


def test_launches_missed_while_sigkilled_give_one_catch_up(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "cu.hcl", periodic("cu", "*/2 * * * * * *"))
    svc.wait(lambda: len(children(svc, "cu")) >= 1, what="a first launch")
    svc.kill(signal.SIGKILL)
    killed = time.time()
    before = len(children(svc, "cu"))
    time.sleep(5.2)  # the service is down over at least two scheduled launches
    restarted = time.time()
    svc.start()
    svc.wait(lambda: len(children(svc, "cu")) >= before + 2, what="catch-up, then on schedule")
    launched = [c for c, _ in children(svc, "cu")[before:]]
    events = svc.query("SELECT message FROM task_events WHERE job_id = 'cu'"
                       " AND type = 'Periodic Launch' ORDER BY id")  # fmt: skip
    catch_up = [m for (m,) in events if "catch-up" in m]
    assert len(catch_up) == 1 and launched[0] in catch_up[0], events
    # none of the missed slots was launched; after the catch-up, launches are on schedule
    named = [int(c.rsplit("-", 1)[1]) for c in launched]
    assert not [t for t in named if killed < t < restarted and t % 2 == 0 and t != named[0]]
    assert all(t % 2 == 0 for t in named[1:])


def test_dispatch_with_meta_and_stdin_payload(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "work.hcl", DISPATCH.format(name="work", payload="optional"))
    write(svc, "nopay.hcl", DISPATCH.format(name="nopay", payload="forbidden"))
    svc.wait(lambda: svc.query("SELECT count(*) FROM jobs WHERE status = 'running'")[0][0] == 2,
             what="parameterized jobs registered")  # fmt: skip
    argv = [str(BIN), "dispatch", "--data-dir", str(svc.data), "work", "--meta", "who=alice",
            "--payload", "-", "--idempotency-token", "t1"]  # fmt: skip
    p = subprocess.run(argv, input=b"hello from stdin\n", capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    child = p.stdout.decode().split("Dispatched Job ID = ")[1].split()[0]
    assert child.startswith("work/dispatch-")
    again = subprocess.run(argv, input=b"other", capture_output=True, timeout=60)
    assert child in again.stdout.decode() and "existing" in again.stdout.decode()
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = ?", child) == [("complete",)],
             what="the dispatched child completes")  # fmt: skip
    logs = svc.cli("logs", f"{child}/t").stdout
    assert "hello from stdin" in logs and "who=alice extra=[]" in logs, logs
    missing = svc.cli("dispatch", "work", check=False)
    assert missing.returncode == 1 and "required meta keys: ['who']" in missing.stderr
    forbidden = subprocess.run(
        [str(BIN), "dispatch", "--data-dir", str(svc.data), "nopay", "--meta", "who=x",
         "--payload", "-"], input=b"x", capture_output=True, timeout=60,
    )  # fmt: skip
    assert forbidden.returncode == 1 and b"Payload provided but forbidden" in forbidden.stderr
