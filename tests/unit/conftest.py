"""Unit tier: no root, the fake executor, real SQLite in a temp dir, a fake clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.executor.fake import FakeExecutor
from reconciler.service.loop import Service


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Harness:
    def __init__(self, root: Path) -> None:
        self.jobs = root / "jobs"
        self.jobs.mkdir()
        self.clock = Clock()
        self.store = Store(root / "state.db")
        self.fake = FakeExecutor(self.clock)
        self.service = Service(self.jobs, self.store, self.fake, NodeConfig(), clock=self.clock,
                               watch=False)  # fmt: skip
        self.service.applier.jitter = lambda: 0.0

    def write(self, name: str, text: str) -> None:
        (self.jobs / name).write_text(text)
        self.service.queue.put(("scan", time.monotonic()))

    def remove(self, name: str) -> None:
        (self.jobs / name).unlink()
        self.service.queue.put(("scan", time.monotonic()))

    def step(self, advance: float = 0.0) -> None:
        """Let time pass, deliver exits, run one loop iteration (and its passes)."""
        self.clock.advance(advance)
        for _ in range(10):
            for handle, result in self.fake.poll_exits(0):
                self.service.queue.put(("exit", (handle, result)))
            self.service.step(0)
            if self.service.queue.empty() and not any(
                t.alive and t.ends_at is not None and t.ends_at <= self.clock()
                for t in self.fake.tasks.values()
            ):
                break

    def states(self, job: str | None = None) -> dict[str, str]:
        obs = self.store.observed()
        return {
            str(k): s.state for k, s in sorted(obs.slots.items()) if job is None or k.job == job
        }

    def events(self, key: str) -> list[str]:
        job, group, idx, task = key.rsplit("/", 3)
        with self.store.engine.connect() as c:
            rows = c.exec_driver_sql(
                "SELECT type FROM task_events WHERE job_id=? AND group_name=? AND idx=? AND task=? ORDER BY id",
                (job, group, int(idx), task),
            ).all()
        return [r[0] for r in rows]

    def job_status(self, job: str) -> tuple[str, str]:
        with self.store.engine.connect() as c:
            row = c.exec_driver_sql("SELECT status, reason FROM jobs WHERE id=?", (job,)).one()
        return row[0], row[1]


# Nomad's defaults place a failed group instance again (services after 30 s, batch once after
# 5 s); a test of the failure itself turns that off.
NO_RESCHEDULE = "reschedule {\n attempts = 0\n unlimited = false\n}"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.store.close()


def job(
    name: str = "web",
    *,
    count: int = 1,
    env: str = "",
    typ: str = "service",
    extra_group: str = "",
    extra_task: str = "",
    extra_job: str = "",
    command: str = "/bin/app",
) -> str:
    return f"""
job "{name}" {{
  type = "{typ}"
  {extra_job}
  group "g" {{
    count = {count}
    {extra_group}
    task "t" {{
      driver = "exec"
      config {{ command = "{command}" }}
      env {{ {env} }}
      {extra_task}
    }}
  }}
}}
"""
