"""Resource admission on the real service: what does not fit waits, and starts when room frees."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc
from tests.e2e.test_service import job, write

# 1000 MB of memory, 100 of them kept for the system: 900 MB for tasks
NODE = """
client {
  memory_total_mb = 1000
  reserved { memory = 100 }
}
"""


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProc]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (tmp_path / "node.hcl").write_text(NODE)
    s = ServiceProc(jobs, tmp_path / "data", "--config", str(tmp_path / "node.hcl"))
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def sized(name: str, memory: int, count: int = 1) -> str:
    return job(name, count=count).replace("memory = 32", f"memory = {memory}")


def test_the_job_that_does_not_fit_waits_then_starts_when_room_frees(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "a.hcl", sized("a", 400))
    write(svc, "b.hcl", sized("b", 400))
    svc.wait(lambda: len(svc.pids()) == 2, what="a and b running")
    write(svc, "c.hcl", sized("c", 400))
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'c'") == [("blocked",)],
             what="c blocked")  # fmt: skip
    assert not svc.pids("c")
    out = svc.cli("status", "c").stdout
    assert "Blocked (Resources exhausted: memory (needs 400 MB, 100 MB free))" in out, out
    events = svc.query("SELECT message FROM task_events WHERE job_id = 'c'"
                       " AND type = 'Placement Failure'")  # fmt: skip
    assert events and "Resources exhausted: memory" in events[0][0]
    node = svc.cli("node", "--config", str(svc.data.parent / "node.hcl")).stdout
    assert "memory  800 / 900 MB" in node, node
    (svc.jobs / "a.hcl").unlink()
    svc.wait(lambda: "c/g/0/t" in svc.pids("c"), what="c started once a was removed")
    assert not svc.pids("a")


def test_count_100000_starts_nothing_and_answers_at_once(svc: ServiceProc) -> None:
    svc.start()
    t0 = time.monotonic()
    write(svc, "big.hcl", sized("big", 10, count=100_000))
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'big'") == [("blocked",)],
             what="big blocked")  # fmt: skip
    print(f"count = 100000 blocked after {time.monotonic() - t0:.3f}s")
    assert svc.query("SELECT count(*) FROM task_instances") == [(0,)]
    reason = svc.query("SELECT reason FROM jobs WHERE id = 'big'")[0][0]
    assert reason.startswith("Resources exhausted: cpu (the job needs 10000000 MHz")
    out = svc.cli("plan", "--jobs", str(svc.jobs), "--config",
                  str(svc.data.parent / "node.hcl")).stdout  # fmt: skip
    assert "blocked" in out and "all 100000 instances" in out


def cored(name: str, cores: int = 1) -> str:
    script = "grep Cpus_allowed_list /proc/self/status; echo cores=[$NOMAD_CPU_CORES]; exec sleep 100000"
    return job(name, script=script).replace("memory = 32", f"cores = {cores}\n memory = 32")


def cpuset_of(pid: int) -> str:
    """The cpuset the task's real cgroup holds (v1 cpuset hierarchy or the unified one)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "cpuset":
            return Path(f"/sys/fs/cgroup/cpuset{path}/cpuset.cpus").read_text().strip()
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path(f"/sys/fs/cgroup{path}/cpuset.cpus").read_text().strip()
    raise AssertionError(f"no cpuset cgroup for pid {pid}")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) != 2, reason="written for a 2-core machine")
def test_reserved_cores_are_exclusive_and_kept_across_a_service_crash(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "a.hcl", cored("a"))
    write(svc, "b.hcl", cored("b"))
    svc.wait(lambda: len(svc.pids()) == 2, what="a and b running")
    pids = svc.pids()
    sets = {k: cpuset_of(p) for k, p in pids.items()}
    assert sorted(sets.values()) == ["0", "1"], sets
    for key, cpus in sets.items():  # the task itself sees its core and NOMAD_CPU_CORES names it
        svc.wait(lambda k=key: "cores=" in svc.cli("logs", k, check=False).stdout, what="output")
        out = svc.cli("logs", key).stdout
        assert f"Cpus_allowed_list:\t{cpus}" in out and f"cores=[{cpus}]" in out, out
    write(svc, "c.hcl", cored("c"))
    svc.wait(lambda: svc.query("SELECT status FROM jobs WHERE id = 'c'") == [("blocked",)],
             what="c blocked")  # fmt: skip
    assert "Resources exhausted: cores" in svc.query("SELECT reason FROM jobs WHERE id = 'c'")[0][0]
    node = svc.cli("node", "--config", str(svc.data.parent / "node.hcl")).stdout
    assert "core ids: held 0-1, free -, reserved -" in node, node
    # a crash and a new service: the tasks are adopted on the cores they had, c still waits
    svc.kill()
    svc.start()
    svc.wait(lambda: svc.health()["running"] == 2, what="a and b re-adopted")
    assert {k: cpuset_of(p) for k, p in pids.items()} == sets
    assert svc.query("SELECT core_ids FROM task_slots WHERE job_id IN ('a', 'b') ORDER BY job_id") \
        == [(sets["a/g/0/t"],), (sets["b/g/0/t"],)]
    assert not svc.pids("c")
    # b's task dies and is restarted: on the same core, c still waits
    os.kill(pids["b/g/0/t"], signal.SIGKILL)
    svc.wait(lambda: svc.pids("b").get("b/g/0/t") not in (None, pids["b/g/0/t"]), what="b restarted")
    assert cpuset_of(svc.pids("b")["b/g/0/t"]) == sets["b/g/0/t"]
    assert not svc.pids("c")
    # a ends: c starts on the core a gave back
    (svc.jobs / "a.hcl").unlink()
    svc.wait(lambda: "c/g/0/t" in svc.pids("c"), what="c started once a was removed")
    assert cpuset_of(svc.pids("c")["c/g/0/t"]) == sets["a/g/0/t"]
    assert cpuset_of(svc.pids("b")["b/g/0/t"]) == sets["b/g/0/t"]


def allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for pid {pid}")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) != 2, reason="written for a 2-core machine")
def test_tasks_without_cores_leave_the_reserved_ones_alone(svc: ServiceProc) -> None:
    """Nomad's shared cpuset: a task without `cores` runs on the cores no task holds, and
    gets a core back when the task holding it ends."""
    svc.start()
    write(svc, "s.hcl", job("s"))
    svc.wait(lambda: "s/g/0/t" in svc.pids("s"), what="s running")
    shared = svc.pids("s")["s/g/0/t"]
    assert cpuset_of(shared) == "0-1" and allowed(shared) == "0-1"
    write(svc, "a.hcl", cored("a"))
    svc.wait(lambda: "a/g/0/t" in svc.pids("a"), what="a running")
    held = cpuset_of(svc.pids("a")["a/g/0/t"])
    rest = "1" if held == "0" else "0"
    svc.wait(lambda: allowed(shared) == rest, what="s moved off a's core")
    assert cpuset_of(shared) == rest
    write(svc, "s2.hcl", job("s2"))  # a new shared task starts on the shared cores alone
    svc.wait(lambda: "s2/g/0/t" in svc.pids("s2"), what="s2 running")
    assert allowed(svc.pids("s2")["s2/g/0/t"]) == rest
    (svc.jobs / "a.hcl").unlink()
    svc.wait(lambda: allowed(shared) == "0-1", what="s given a's core back")
    assert svc.pids("s")["s/g/0/t"] == shared
