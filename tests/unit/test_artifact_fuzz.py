"""Fuzz of the artifact block's pure rules: they never crash, and what the loader lets through
the executor places inside the group instance's directories."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from reconciler.executor.linux.artifacts import Failed, destination
from reconciler.executor.linux.rootfs import TaskDirs
from reconciler.spec.artifact import checksum_problem, escapes_alloc_dir, getter_of

PARTS = st.sampled_from(["..", ".", "", "local", "alloc", "tmp", "data", "x", "task", "/"])
PATHS = st.lists(PARTS, max_size=6).map("/".join)
DIRS = TaskDirs(alloc=Path("/d/allocs/j/g/0"), task=Path("/d/allocs/j/g/0/tasks/t"))


@given(dest=PATHS)
def test_destinations_the_loader_accepts_stay_in_the_group_instance(dest: str) -> None:
    escapes = escapes_alloc_dir(dest)
    try:
        base, rel = destination(DIRS, dest)
    except Failed:
        return  # refused (the executor is stricter: other tasks' dirs, logs, secrets)
    assert not escapes
    assert str(base).startswith(str(DIRS.alloc) + "/")
    assert ".." not in rel.split("/") and not rel.startswith("/")


@given(value=st.text(max_size=80))
def test_checksum_rules_never_crash(value: str) -> None:
    why = checksum_problem(value)
    if not why and "${" not in value:
        kind, _, hexval = value.strip().partition(":")
        assert kind in ("md5", "sha1", "sha256", "sha512") and bytes.fromhex(hexval)


@given(source=st.text(max_size=60))
def test_getter_detection_never_crashes(source: str) -> None:
    assert getter_of(source)
