"""A task's exit as the shim reports it: a line on the service's pipe first (then the shim
tears the task's namespaces down and ends), the same in the exit-status file for a service that
crashed before it recorded the exit."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from reconciler.executor.linux import cgroups, proc
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import sh, wait_for
from tests.e2e.service import BIN, ServiceProc, alive
from tests.e2e.test_service import NO_RESCHEDULE, job, write


def test_the_reported_exit_and_the_file_agree(make_executor: Callable[..., LinuxExecutor]) -> None:
    first = make_executor()
    h = first.start(sh("exec sleep 1000"))
    os.kill(h.pid, signal.SIGKILL)
    seen = first.wait(h, 10)
    assert seen is not None and (seen.exit_code, seen.signal) == (137, 9)
    # A service that crashed before it recorded the exit finds the same in the file.
    second = make_executor()
    assert second.recover(h)
    again = second.wait(h, 10)
    assert again is not None
    assert (again.exit_code, again.signal, again.finished_at) == (137, 9, seen.finished_at)
    wait_for(lambda: not first.poll_exits(0.02) and not proc.same_process(h.shim_pid,
             h.shim_start_ticks), what="the shim reaped")  # fmt: skip


def test_an_exit_code_is_reported_and_the_shim_reaped(ex: LinuxExecutor) -> None:
    h = ex.start(sh("exit 7"))
    r = ex.wait(h, 10)
    assert r is not None and (r.exit_code, r.signal) == (7, 0)
    assert Path(h.task_dir, "exit-status").read_text().split()[:2] == ["7", "0"]
    wait_for(lambda: not ex.poll_exits(0.02) and not proc.same_process(h.shim_pid,
             h.shim_start_ticks), what="the shim reaped")  # fmt: skip


def test_an_exit_reported_to_a_service_that_then_crashed_is_recorded_once(
    svc: ServiceProc,
) -> None:
    """The service is stopped when the task dies, so the shim's line waits unread in the pipe
    while the shim writes the file and ends; then the service is killed and started again."""
    svc.start()
    write(svc, "k.hcl", job("k", attempts=0, update=NO_RESCHEDULE))
    svc.wait(lambda: len(svc.pids("k")) == 1)
    pid = svc.pids("k")["k/g/0/t"]
    status = svc.data / "allocs" / "k" / "g" / "0" / "tasks" / "t" / "exit-status"
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGSTOP)
    try:
        os.kill(pid, signal.SIGKILL)
        wait_for(status.exists, what="the exit-status file")
    finally:
        svc.kill(signal.SIGKILL)
    svc.start()
    svc.wait(lambda: svc.states("k") == {"k/g/0/t": "failed"}, what="the exit recorded")
    assert svc.query("SELECT exit_code, signal, outcome FROM task_instances WHERE job_id = 'k'"
                     ) == [(137, 9, "failed")]  # fmt: skip
    assert svc.query("SELECT count(*) FROM task_events WHERE job_id = 'k'"
                     " AND type = 'Terminated'") == [(1,)]  # fmt: skip


# The service, killed when it is about to record a start that follows an exit: the restart's
# shim was claimed and its task runs, the exit it follows is not committed yet.
CRASH_AT_RESTART = """
import os, sys
from pathlib import Path
from reconciler.db.hot import HotPaths
armed = Path(sys.argv.pop(1))
real = HotPaths.started
def started(self, batch, now):
    if armed.exists() and any(s.key.job == "k" for s in batch):
        os.kill(os.getpid(), 9)
    return real(self, batch, now)
HotPaths.started = started
from reconciler.entry import main
sys.exit(main())
"""


def _shims(data: Path) -> dict[int, int]:
    """Every shim of the data dir (cold `run CONFIG` or warm `warm CONFIG`) -> its parent; not
    a warm shim's child, the task-to-be."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if len(argv) > 2 and argv[1] in ("run", "warm") and argv[2].startswith(f"{data}/"):
            out[int(pid)] = ppid
    return {pid: parent for pid, parent in out.items() if parent not in out}


def test_a_service_killed_between_a_restarts_launch_and_its_record_loses_no_exit(
    svc: ServiceProc,
) -> None:
    """A restart is launched before the exit it follows is committed (the two are committed
    together). Killed in between, the next service reads the exit from the file the replaced
    run left under its own name, records it once, and ends the run nobody recorded: one task
    and one shim for the slot."""
    armed = svc.data.parent / "armed"
    svc.command = [sys.executable, "-c", CRASH_AT_RESTART, str(armed)]
    svc.start()
    write(svc, "k.hcl", job("k", attempts=5))
    svc.wait(lambda: len(svc.pids("k")) == 1)
    first = svc.pids("k")["k/g/0/t"]
    armed.touch()
    os.kill(first, signal.SIGKILL)
    assert svc.proc is not None
    svc.proc.wait(30)  # killed itself at the restart's record
    task = svc.data / "allocs" / "k" / "g" / "0" / "tasks" / "t"
    assert [p.name.split(".")[0] for p in task.glob("exit-status.*")] == ["exit-status"]
    svc.command = [str(BIN)]
    svc.start()
    svc.wait(lambda: svc.query("SELECT count(*) FROM task_instances WHERE job_id = 'k'"
                               " AND finished_at IS NULL AND pid != ?", first)[0][0] == 1,
             what="the slot running again")  # fmt: skip
    assert svc.query("SELECT exit_code, signal, outcome FROM task_instances WHERE pid = ?",
                     first) == [(137, 9, "failed")]  # fmt: skip
    assert svc.query("SELECT count(*) FROM task_events WHERE job_id = 'k' AND type = 'Terminated'"
                     ) == [(1,)]  # fmt: skip
    now = svc.pids("k")["k/g/0/t"]
    assert svc.proc is not None
    service = svc.proc.pid
    ex = LinuxExecutor(svc.data)
    assert ex.layout is not None
    cg = cgroups.TaskCgroup.at(ex.layout, ex._cgroup_name("k/g/0/t"))
    wait_for(lambda: cg.pids() == {now}, 20, "the slot's cgroup to hold its recorded task alone")
    shim = svc.query("SELECT shim_pid FROM task_instances WHERE pid = ?", now)[0][0]
    wait_for(lambda: {p for p, parent in _shims(svc.data).items() if parent != service} == set(),
             20, "the killed service's shims to end")  # fmt: skip
    assert shim in _shims(svc.data)
    assert alive(now)
