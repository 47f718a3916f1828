"""The service's clock: wall-clock time when the service started, moved on by the monotonic
clock. Restart delays, health deadlines and rescans are measured with it, so a step of the
wall clock (NTP, an operator's `date -s`) neither fires nor stalls them; recorded times stay
close to wall time (they differ by any step made while the service runs, until it restarts)."""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def __call__(self) -> float:
        return self._monotonic() + self._offset
