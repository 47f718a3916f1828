"""The start path's kernel-facing details: the migration primer, and a task whose cgroups
cannot be made after its shim is already running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.executor.base import ExecutorUnavailable
from reconciler.executor.linux import cgroups
from reconciler.executor.linux.cleanup import teardown
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import sh, wait_for
from tests.e2e.service import alive


def test_primer_parks_one_process_in_a_cgroup_of_its_own(ex: LinuxExecutor, data_dir: Path) -> None:
    assert ex.primer is not None
    ex.prime()
    wait_for(lambda: ex.primer is not None and ex.primer.primes >= 1, what="a prime")
    parked = {int(x) for x in ex.primer.procs.read_text().split()}
    assert len(parked) == 1
    (pid,) = parked
    assert ex.primer.procs.parent.parent.name == ex.namespace  # inside our subtree only
    ex.prime()
    wait_for(lambda: ex.primer is not None and ex.primer.primes >= 2, what="a second prime")
    assert {int(x) for x in ex.primer.procs.read_text().split()} == {pid}  # moved where it was
    teardown(data_dir)
    wait_for(lambda: not alive(pid), what="the parked process to go with the teardown")


def test_primer_starts_afresh_when_its_process_is_gone(ex: LinuxExecutor) -> None:
    assert ex.primer is not None
    ex.prime()
    wait_for(lambda: ex.primer is not None and ex.primer.primes >= 1, what="a prime")
    (first,) = {int(x) for x in ex.primer.procs.read_text().split()}
    os.kill(first, 9)
    wait_for(lambda: not alive(first), what="the parked process to die")
    ex.prime()
    wait_for(lambda: ex.primer is not None and ex.primer.primes >= 2, what="another prime")
    (second,) = {int(x) for x in ex.primer.procs.read_text().split()}
    assert second != first and alive(second)


def test_cgroup_failure_after_the_shim_started_leaves_nothing_running(
    ex: LinuxExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: cgroups.TaskCgroup, limits: cgroups.Limits) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cgroups.TaskCgroup, "create", refuse)
    marker = ex.dirs("j/g/0", "t").alloc / "alloc" / "data" / "ran"
    with pytest.raises(ExecutorUnavailable, match="setting up the task cgroup"):
        ex.start(sh("touch /alloc/data/ran; sleep 100"))
    assert not marker.exists()  # the task never exec'd
    shims = [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and _cmdline(int(p)).startswith(str(ex.shim()))
    ]
    assert [p for p in shims if "run" in _cmdline(int(p))] == []  # and its shim is gone


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_primer_on_cgroup_v2(make_executor) -> None:  # type: ignore[no-untyped-def]
    ex = make_executor(cgroup_version=2)
    if ex.layout is None or ex.layout.version != 2:
        pytest.skip("no cgroup2 mount on this host")
    ex.prime()
    wait_for(lambda: ex.primer.primes >= 1, what="a prime on cgroup v2")
    assert len(ex.primer.procs.read_text().split()) == 1
    assert "unified" in ex.layout.bases and ex.primer.procs.is_relative_to(
        ex.layout.bases["unified"]
    )
