"""The service process: one per data dir (a lock and a pid file), and its signals."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.service.loop import Service

log = logging.getLogger("reconciler")


class AlreadyRunning(Exception):
    pass


def lock_data_dir(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "service.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = (
            (data_dir / "service.pid").read_text().strip()
            if (data_dir / "service.pid").exists()
            else "?"
        )
        raise AlreadyRunning(f"another reconciler (pid {pid}) is running on {data_dir}") from None
    (data_dir / "service.pid").write_text(f"{os.getpid()}\n")
    return fd


def install_signal_handlers(service: Service, reload: Callable[[], None]) -> None:
    """SIGTERM/SIGINT stop the service and leave tasks running; SIGHUP rescans and reloads."""

    def _stop(signum: int, _frame: Any) -> None:
        log.info("%s: stopping the service; tasks keep running", signal.Signals(signum).name)
        service.stop()

    def _hup(_signum: int, _frame: Any) -> None:
        reload()
        service.rescan_all()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)
