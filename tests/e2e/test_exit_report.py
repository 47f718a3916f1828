"""A task's exit as the shim reports it: a line on the service's pipe first (then the shim
tears the task's namespaces down and ends), the same in the exit-status file for a service that
crashed before it recorded the exit."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from reconciler.executor.linux import proc
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import sh, wait_for
from tests.e2e.service import ServiceProc
from tests.e2e.test_service import job, write


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
    write(svc, "k.hcl", job("k", attempts=0))
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
