"""When the warm pool removes the cgroups and files earlier runs left: between bursts of
starts, not while starts come back to back (a removal holds the kernel's cgroup lock, which a
claim's renames wait for), and at once when many wait."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.executor.linux import pool


def test_earlier_runs_cgroups_are_removed_between_bursts_of_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    p = pool.Pool(cast(Any, None), lambda: tmp_path / "shim", tmp_path / "warm", lambda: [],
                  tmp_path / "shim.log", most=2)  # fmt: skip
    try:
        assert p._removal_due()  # nothing started yet
        p.started()
        assert not p._removal_due()  # a start just came: the next may follow at once
        now[0] = 100.0 + pool.QUIET / 2
        assert not p._removal_due()
        now[0] = 100.0 + pool.QUIET * 1.01
        assert p._removal_due()  # the burst is over
        p.started()
        p._aside.extend([cast(Any, None)] * pool.ASIDE_AT_MOST)
        assert p._removal_due()  # starts that never pause: removed all the same
    finally:
        p._aside.clear()
        p.close()
