"""The store's WAL is checkpointed by the service's checkpoint thread, never inline by the
commit that crosses SQLite's 1,000-page mark (a start's or an exit's, which would wait for
two fsyncs)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from reconciler.db.store import Store
from reconciler.service.checkpoints import Checkpointer


def test_commits_leave_checkpoints_to_the_checkpoint_thread(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    cp = Checkpointer(store, every=0.01)
    try:
        with store._tx() as db:
            db.execute("CREATE TABLE filler (v BLOB)")
        for _ in range(1500):  # ~1,500 pages, one commit each: past the 1,000-page mark
            with store._tx() as db:
                db.execute("INSERT INTO filler VALUES (zeroblob(3000))")
        page = 4096
        assert os.path.getsize(str(store.path) + "-wal") > 1200 * page  # no inline checkpoint
        before = os.path.getsize(store.path)
        cp.start()
        cp.poke()
        deadline = time.monotonic() + 30
        while cp.done == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cp.done >= 1
        assert os.path.getsize(store.path) > before + 1000 * page  # the frames are in the db
    finally:
        cp.stop()
        store.close()
