"""Task exits, as the loop follows them: the waiter thread hands each exit to the loop's queue;
the loop writes it with its job planned in the same pass, and keeps one it could not write (a
store fault) until it can, so no exit is lost. Part of the Service (loop.py), kept in its own
file so that the loop stays readable."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any

from reconciler import metrics, trace
from reconciler.apply import Applier
from reconciler.db.snapshot import Observed, SlotKey, SlotRecord
from reconciler.db.store import Store
from reconciler.executor.base import Executor, ExitResult, TaskHandle
from reconciler.faults import transient_cause
from reconciler.service.recovery import Recovery


class Exits:
    executor: Executor
    store: Store
    applier: Applier
    recovery: Recovery
    queue: queue.Queue[tuple[str, Any]]
    stopping: threading.Event
    _unrecorded: dict[str, tuple[TaskHandle, ExitResult]]
    _touched: set[str]
    _waiting: set[str]
    _dirty: bool
    # (the jobs read, the snapshot) after exits that only left slots to start again
    _after_exits: tuple[frozenset[str], Observed] | None = None

    def _waiter(self) -> None:
        while not self.stopping.is_set():
            self.wait_exits(0.5)

    def wait_exits(self, timeout: float) -> None:
        """Hand task exits to the loop (runs on the waiter thread)."""
        try:
            exits = self.executor.poll_exits(timeout)
        except Exception as e:
            self.recovery.log_once("waiting for task exits", e)
            time.sleep(0.5)
            return
        if exits:
            trace.mark("exit_seen")
            self.executor.prime()  # a restart may follow
        for handle, result in exits:
            self.queue.put(("exit", (handle, result)))

    def _exited(self, item: tuple[TaskHandle, ExitResult]) -> None:
        """An exit came (on the loop thread): kept until written, its job planned next pass."""
        handle, _ = item
        self._unrecorded[handle.id] = item
        self._touched |= {handle.id.rsplit("/", 3)[0]} | self._waiting  # room freed
        self._dirty = True

    def _record_exits(self) -> None:
        """Write the exits seen since the last pass (and any a fault kept back)."""
        if not self._unrecorded:
            return
        jobs = {hid.rsplit("/", 3)[0] for hid in self._unrecorded}  # a child id has a /
        obs = self.store.observed(self.applier.live, jobs)
        after: dict[SlotKey, SlotRecord] | None = {}
        for hid, (handle, result) in list(self._unrecorded.items()):
            try:
                slot = self.applier.on_exit(handle, result, obs)
            except Exception as e:
                if transient_cause(e) is not None:
                    raise  # kept: written when the store is back
                self.recovery.log_once(f"recording the exit of {hid}", e)
                slot = None
            else:
                metrics.exited(result)
            after = None if after is None or slot is None else {**after, slot.key: slot}
            del self._unrecorded[hid]
        if after:  # every exit only left its slot to start again: the pass may plan from here
            slots = {**obs.slots, **after}
            self._after_exits = (frozenset(jobs), dataclasses.replace(
                obs, slots=slots, live=frozenset(self.applier.live)))  # fmt: skip
        trace.mark("exit_recorded")

    def _observed_after_exits(self, scope: frozenset[str] | None) -> Observed | None:
        """What the exits just written left, for a pass whose scope they read and in whose
        step nothing else was written (see `step`); taken once."""
        kept, self._after_exits = self._after_exits, None
        if kept is None or scope is None or not scope <= kept[0]:
            return None
        return kept[1]
