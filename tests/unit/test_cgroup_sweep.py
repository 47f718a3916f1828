"""The warm pool's sweep and a teardown remove cgroups through one routine
(cleanup.remove_cgroups): they differ only in which names they take."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.executor.linux import cgroups, cleanup, pool


class _FakeCgroup:
    """Records what is done to a cgroup; touches no real one."""

    removed: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def pids(self) -> set[int]:
        return {1, 2} if self.name.endswith("busy") else set()

    def kill_all(self) -> None:
        pass

    def remove(self) -> None:
        _FakeCgroup.removed.append(self.name)


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> cgroups.Layout:
    _FakeCgroup.removed = []
    monkeypatch.setattr(
        cgroups.TaskCgroup, "at", lambda _layout, name, cpuset=None: _FakeCgroup(name)
    )
    bases = {"memory": tmp_path / "memory", "pids": tmp_path / "pids"}
    for name in (f"{pool.PREFIX}7x1", f"{pool.PREFIX}7x2busy", "web.0.main", "db.0.busy"):
        (bases["memory"] / name).mkdir(parents=True)
    (bases["pids"] / f"{pool.PREFIX}8x1").mkdir(parents=True)  # under one controller only
    (bases["pids"] / f"{pool.PREFIX}notes").write_text("")  # not a cgroup
    return cgroups.Layout(1, bases)


def test_sweep_takes_only_the_pools_cgroups(layout: cgroups.Layout) -> None:
    assert pool.sweep(layout) == 2
    assert sorted(_FakeCgroup.removed) == [
        f"{pool.PREFIX}7x1",
        f"{pool.PREFIX}7x2busy",
        f"{pool.PREFIX}8x1",
    ]


def test_teardown_takes_every_cgroup_the_same_way(layout: cgroups.Layout) -> None:
    assert cleanup.remove_cgroups(layout) == 4
    assert len(_FakeCgroup.removed) == 5
    assert set(_FakeCgroup.removed) >= {"web.0.main", "db.0.busy", f"{pool.PREFIX}8x1"}
