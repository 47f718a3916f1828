"""E2E tier: root, real namespaces, cgroups and capabilities. Everything a test starts is torn
down by the data dir's own teardown (its cgroup subtree and network namespaces only)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.executor.base import NodeConfig, TaskConfig, TaskHandle
from reconciler.executor.linux.cleanup import teardown
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.service import ServiceProc

pytestmark = pytest.mark.e2e

if os.geteuid() != 0:
    pytest.skip("the e2e tier needs root (namespaces, cgroups, users)", allow_module_level=True)


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Short, unique paths: the data dir names the cgroup subtree.
    d = Path(tmp_path_factory.mktemp("rc")).resolve()
    yield d
    teardown(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_executor(data_dir: Path) -> Callable[..., LinuxExecutor]:
    def make(**node: object) -> LinuxExecutor:
        return LinuxExecutor(data_dir, NodeConfig(**node))  # type: ignore[arg-type]

    return make


@pytest.fixture
def ex(make_executor: Callable[..., LinuxExecutor]) -> LinuxExecutor:
    return make_executor()


def sh(script: str, task_id: str = "j/g/0/t", **kw: object) -> TaskConfig:
    return TaskConfig(
        id=task_id,
        alloc_id=task_id.rpartition("/")[0],
        command="/bin/sh",
        args=("-c", script),
        **kw,
    )  # type: ignore[arg-type]


def logs(ex: LinuxExecutor, handle: TaskHandle, stream: str = "stdout") -> str:
    alloc, _, task = handle.id.rpartition("/")
    d = ex.dirs(alloc, task).logs
    files = sorted(d.glob(f"{task}.{stream}.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    return "".join(f.read_text(errors="replace") for f in files)


def wait_for(pred: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def run_to_exit(
    ex: LinuxExecutor, cfg: TaskConfig, timeout: float = 20.0
) -> tuple[TaskHandle, str]:
    h = ex.start(cfg)
    r = ex.wait(h, timeout)
    assert r is not None, "task did not exit"
    return h, logs(ex, h)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProc]:
    """A real service on its own job and data dirs (started by the test), torn down after."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    s = ServiceProc(jobs, tmp_path / "data")
    yield s
    if s.proc and s.proc.poll() is None:
        s.kill()
    teardown(s.data)


def answer(port: int) -> str:
    """What a server on loopback `port` says first (a test's task answers "pong")."""
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as c:
            return c.recv(64).decode()
    except OSError as e:
        return f"error {e}"
