"""The store's WAL checkpoints, off the loop thread. A checkpoint fsyncs the WAL and the
database: 5-30 ms on this kind of disk (ext4 mounted with `discard`), while a commit with
synchronous=NORMAL in WAL mode syncs nothing (~12 us). Left to SQLite, the commit that crosses
1,000 WAL pages checkpoints inline, so every hundredth or so pass (a start's commit, an exit's)
would wait for two fsyncs. The service's connections turn that off (`Store.manual_checkpoints`)
and this thread checkpoints instead, passively (it never waits for a reader or a writer), at
most once a second while passes write; the loop's 30-second `check_wal` still watches for a
reader that holds the log back."""

from __future__ import annotations

import logging
import threading
import time

from reconciler import trace
from reconciler.db.store import Store
from reconciler.service import threads

log = logging.getLogger("reconciler")
EVERY = 1.0  # seconds: at most one checkpoint this often while passes keep writing


class Checkpointer:
    def __init__(self, store: Store, every: float = EVERY) -> None:
        store.manual_checkpoints()  # before other threads hold connections
        self.store = store
        self.every = every
        self.done = 0  # checkpoints made (for tests)
        self._due = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threads.start(self._run, "checkpoint")

    def poke(self) -> None:
        """A pass wrote (or may have): a checkpoint is due within `every` (loop thread)."""
        self._due.set()

    def stop(self) -> None:
        self._stopped = True
        self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            if self._stopped:
                return
            self._due.clear()
            try:
                trace.mark("bg_checkpoint")
                self.store.checkpoint()
                trace.mark("bg_checkpointed")
                self.done += 1
            except Exception as e:  # the loop's own writes report a store that is unwell
                log.debug("checkpointing the store: %s", e)
            time.sleep(self.every)  # pokes meanwhile make one checkpoint after it
