"""A pass that never returns: reported with its stack, the control socket still answers, and
SIGTERM still ends the service (a real process, a fake executor stuck in a syscall)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from reconciler.service.control import call
from tests.unit.conftest import job

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, time
    from pathlib import Path
    from reconciler.db.store import Store
    from reconciler.executor.base import NodeConfig
    from reconciler.executor.fake import FakeExecutor
    from reconciler.service import control
    from reconciler.service.loop import Service
    from reconciler.service.process import install_signal_handlers, run_until_stopped

    class StuckExecutor(FakeExecutor):
        def start_all(self, configs):
            r, w = os.pipe()
            os.read(r, 1)  # nobody ever writes: blocked in a syscall, like a FIFO's open

    root = Path(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    svc = Service(root / "jobs", Store(root / "state.db"), StuckExecutor(time.time),
                  NodeConfig(), watch=False, stuck_after=0.5)
    svc.loader.scan()  # parsed (and the parser loaded) before the pass: stuck only in start_all
    install_signal_handlers(svc, lambda: None)
    control.serve(svc, root)
    if not run_until_stopped(svc, grace=1.0):
        logging.shutdown()
        os._exit(0)
    """
)


def test_a_stuck_pass_is_reported_and_sigterm_still_stops_the_service(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "a.hcl").write_text(job("a"))
    (tmp_path / "svc.py").write_text(SCRIPT)
    log = tmp_path / "svc.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(tmp_path / "svc.py"), str(tmp_path)],
                                stdout=out, stderr=out)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                state = call(tmp_path, "state", timeout=2)[1]
            except Exception:
                state = {}
            if state.get("state") == "degraded":
                break
            time.sleep(0.05)
        assert state.get("state") == "degraded", log.read_text()
        fault = state["faults"][0]  # type: ignore[index]
        assert fault["kind"] == "stuck" and "start_all" in fault["detail"]
        code, body = call(tmp_path, "restart", keys=[["a", "g", 0, "t"]], timeout=5)
        assert code == 503 and "the service is busy: a pass has run for over" in body["error"]
        text = log.read_text()
        assert "a pass has run for over 0.5s; the loop thread is at:" in text
        assert "os.read(r, 1)" in text  # the stack, down to the blocking call
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert "exiting without it" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
