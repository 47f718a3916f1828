"""A warm shim's cgroups get the limits the pool expects ahead of a claim, and the claim
writes only what differs (TaskCgroup.set_limits with `have`): the outcome is the same as a
full write on fresh cgroups, whatever was set ahead."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.executor.linux import cgroups

# What the kernel gives a new cgroup.
V1_DEFAULTS = {"memory.limit_in_bytes": "-1", "memory.memsw.limit_in_bytes": "-1",
               "memory.soft_limit_in_bytes": "-1", "memory.swappiness": "60",
               "cpu.shares": "1024", "pids.max": "max"}  # fmt: skip
V2_DEFAULTS = {"memory.max": "max", "memory.swap.max": "max", "memory.low": "0",
               "cpu.weight": "100", "pids.max": "max"}  # fmt: skip


def limits() -> st.SearchStrategy[cgroups.Limits]:
    return st.builds(
        lambda mem, mx, cpu, pids: cgroups.Limits(mem, mx, cpu, 0, pids),
        st.sampled_from([16, 300]),
        st.sampled_from([-1, 0, 600]),
        st.sampled_from([2, 100, 1024]),
        st.sampled_from([64, 4096]),
    )


def _apply(version: int, steps: list[tuple[cgroups.Limits, cgroups.Limits | None]]
           ) -> tuple[dict[str, str], int]:  # fmt: skip
    state = dict(V1_DEFAULTS if version == 1 else V2_DEFAULTS)
    writes = 0

    def write(path: Path | str, value: str | int) -> None:
        nonlocal writes
        writes += 1
        state[str(path).rsplit("/", 1)[1]] = str(value)

    mp = pytest.MonkeyPatch()
    mp.setattr(cgroups, "_write", write)
    try:
        if version == 1:
            base = {c: Path(f"/cg/{c}") for c in ("memory", "cpu", "pids")}
            layout = cgroups.Layout(1, base, frozenset(base), swap_accounting=True)
        else:
            layout = cgroups.Layout(2, {"unified": Path("/cg")},
                                    frozenset({"memory", "cpu", "pids"}))  # fmt: skip
        cg = cgroups.TaskCgroup(layout, "t", {c: p / "t" for c, p in layout.bases.items()})
        for want, have in steps:
            writes = 0
            cg.set_limits(want, have)
    finally:
        mp.undo()
    return state, writes


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from([1, 2]), ahead=limits(), want=limits())
def test_writing_only_the_differences_ends_as_a_full_write(
    version: int, ahead: cgroups.Limits, want: cgroups.Limits
) -> None:
    full, _ = _apply(version, [(want, None)])
    diff, _ = _apply(version, [(ahead, None), (want, ahead)])
    assert diff == full


@pytest.mark.parametrize("version", [1, 2])
def test_a_claim_with_the_expected_limits_writes_nothing(version: int) -> None:
    same = cgroups.Limits(16, 0, 2, 0, 4096)
    _, writes = _apply(version, [(same, None), (same, same)])
    assert writes == 0
