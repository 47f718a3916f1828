"""The service process: one per data dir (a lock and a pid file), its descriptor limit, its
signals, and a main thread that only watches the loop."""

from __future__ import annotations

import errno
import fcntl
import gc
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from reconciler.db.engine import StoreRefused
from reconciler.executor.linux.memory import Trimmer, trim_heap
from reconciler.faults import Backoff, transient_cause
from reconciler.service import threads
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
    try:
        (data_dir / "service.pid").write_text(f"{os.getpid()}\n")
    except OSError as e:  # informational only (a full disk must not stop the start)
        log.warning("cannot write %s: %s", data_dir / "service.pid", e.strerror)
    return fd


T = TypeVar("T")
REFUSE_ERRNO = {errno.EROFS, errno.EACCES, errno.EPERM}


def wait_out(what: str, work: Callable[[], T], stopping: Callable[[], bool] = lambda: False) -> T:
    """At start, before the loop exists: retry `work` while it fails for a transient reason
    (a full disk, a locked store), with backoff and one log line per cause."""
    backoff, said = Backoff(), ""
    while True:
        try:
            return work()
        except Exception as e:
            cause = transient_cause(e)
            refused = isinstance(e, StoreRefused) or (
                isinstance(e, OSError) and e.errno in REFUSE_ERRNO
            )
            if cause is None or refused or stopping():
                raise
            if cause != said:
                log.warning("%s: %s (%s); retrying until it clears", what, cause, e)
                said = cause
            time.sleep(backoff.next())


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


SHUTDOWN_GRACE = 5.0


def run_until_stopped(service: Service, grace: float = SHUTDOWN_GRACE) -> bool:
    """Run the loop on a thread of its own. The main thread only answers signals (Python runs
    signal handlers there, so it must never be the thread stuck in a syscall) and reports a
    stuck pass. True when the loop ended; False when it was still busy `grace` seconds after
    the stop: the caller then exits without it (tasks keep running; SQLite rolls back the
    unfinished transaction)."""
    loop = threads.start(service.run, "loop")
    frozen = False
    trimmer: Trimmer | None = None
    while loop.is_alive() and not service.stopping.wait(1.0):
        service.check_stuck()
        if trimmer is not None and service.recovery.busy_since is None:
            trimmer.check()  # a burst since (files added, removed, tasks started): its garbage
        if not frozen and service.startup_seconds:
            # What start-up made (modules, schemas, the first jobs' models) lives as long as
            # the service: out of the collector's way, so a collection never walks it again.
            # (A full collection here too paused the service long enough to split a `git
            # checkout` that began then into two passes: not done.) The free pages start-up
            # left in the heap go back to the kernel: 1-2 ms with one malloc arena, 3-4 MB of
            # PSS at 1,000 tasks (docs/operations.md, "Memory").
            gc.freeze()
            trim_heap()
            frozen, trimmer = True, Trimmer()
    loop.join(grace)
    if not loop.is_alive():
        return True
    log.warning("the loop is still busy at %s after %.0fs; exiting without it (tasks keep "
                "running)", service.where(), grace)  # fmt: skip
    return False


def raise_file_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (systemd's default soft 1,024 is too few for
    hundreds of tasks: two descriptors each). Returns the (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, e)
    return soft, hard
