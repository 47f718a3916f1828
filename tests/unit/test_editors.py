"""Editors', scripts' and git's habits in the job directory, against the running service (the
real watcher, the fake executor): each change is applied once with its final content, and the
temporary entries they leave are not job files."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.executor.fake import FakeExecutor
from reconciler.service.loop import Service

JOB = 'job "{name}" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{\n        command = "/bin/{cmd}"\n      }}\n    }}\n  }}\n}}\n'


class Running:
    def __init__(self, root: Path) -> None:
        self.jobs = root / "jobs"
        self.jobs.mkdir()
        self.store = Store(root / "state.db")
        self.reader = Store(root / "state.db", readonly=True)  # as `reconciler` queries do
        self.fake = FakeExecutor(time.time)
        self.service = Service(self.jobs, self.store, self.fake, NodeConfig())
        self.thread = threading.Thread(target=self.service.run, daemon=True)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.reader.engine.connect() as c:
            return [tuple(r) for r in c.exec_driver_sql(query, args).all()]

    def commands(self, job: str) -> list[str]:
        """The command of every version of `job` ever recorded, in order."""
        rows = self.sql("SELECT canonical FROM job_versions WHERE job_id=? ORDER BY id", job)
        return [c.split('"command":"')[1].split('"')[0] for (c,) in rows]

    def problems(self) -> list[str]:
        return [f for (f,) in self.sql("SELECT file FROM spec_errors WHERE cleared_at IS NULL")]

    def running(self, job: str) -> list[str]:
        tasks = list(self.fake.tasks.values())
        return [t.config.command for t in tasks if t.alive and t.config.id.startswith(f"{job}/")]

    def wait(self, pred: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    r.thread.start()
    r.wait(lambda: r.service.passes > 0, "the first pass")
    yield r
    r.service.stop()
    r.thread.join(30)
    r.store.close()
    r.reader.close()


def settle(svc: Running, job: str, cmd: str) -> None:
    svc.wait(lambda: svc.running(job) == [f"/bin/{cmd}"], f"{job} running /bin/{cmd}")
    time.sleep(0.3)  # anything still to come would come now: the versions below must stay put


def test_a_file_written_in_place_in_several_writes(svc: Running) -> None:
    text = JOB.format(name="web", cmd="final")
    with open(svc.jobs / "web.hcl", "w") as f:
        for part in (text[:30], text[30:90], text[90:]):
            f.write(part)
            f.flush()
            time.sleep(0.05)  # long enough for the watcher to see each write on its own
    settle(svc, "web", "final")
    assert svc.commands("web") == ["/bin/final"] and svc.problems() == []


def test_an_atomic_rename(svc: Running) -> None:
    for cmd in ("one", "two"):
        tmp = svc.jobs / ".web.hcl.tmp"
        tmp.write_text(JOB.format(name="web", cmd=cmd))
        os.rename(tmp, svc.jobs / "web.hcl")
        settle(svc, "web", cmd)
    assert svc.commands("web") == ["/bin/one", "/bin/two"] and svc.problems() == []


def test_vim_writing_a_file(svc: Running) -> None:
    """vim: a swap file while editing, a probe file named 4913, the old file renamed to a
    backup (`web.hcl~`) and the new one written in its place, then the backup removed."""
    (svc.jobs / "web.hcl").write_text(JOB.format(name="web", cmd="one"))
    settle(svc, "web", "one")
    swap = svc.jobs / ".web.hcl.swp"
    swap.write_bytes(b"b0VIM 9.0\x00" + b"\x00" * 4086)
    (svc.jobs / "4913").write_text("")
    (svc.jobs / "4913").unlink()
    os.rename(svc.jobs / "web.hcl", svc.jobs / "web.hcl~")
    with open(svc.jobs / "web.hcl", "w") as f:
        f.write(JOB.format(name="web", cmd="two"))
    (svc.jobs / "web.hcl~").unlink()
    settle(svc, "web", "two")
    swap.unlink()
    time.sleep(0.2)
    assert svc.commands("web") == ["/bin/one", "/bin/two"] and svc.problems() == []


def test_emacs_writing_a_file(svc: Running) -> None:
    """emacs: a lock file `.#web.hcl` (a dangling symlink on purpose), an autosave file
    `#web.hcl#`, a backup `web.hcl~`, the new content renamed into place."""
    (svc.jobs / "web.hcl").write_text(JOB.format(name="web", cmd="one"))
    settle(svc, "web", "one")
    os.symlink("user@host.1234:1700000000", svc.jobs / ".#web.hcl")
    (svc.jobs / "#web.hcl#").write_text(JOB.format(name="web", cmd="autosave"))
    os.link(svc.jobs / "web.hcl", svc.jobs / "web.hcl~")
    (svc.jobs / "web.hcl.new").write_text(JOB.format(name="web", cmd="two"))
    os.rename(svc.jobs / "web.hcl.new", svc.jobs / "web.hcl")
    (svc.jobs / "#web.hcl#").unlink()
    settle(svc, "web", "two")
    (svc.jobs / ".#web.hcl").unlink()
    assert svc.commands("web") == ["/bin/one", "/bin/two"] and svc.problems() == []


def test_a_checkout_of_many_files(svc: Running) -> None:
    """As `git checkout` writes them: each file created, written, closed, one after another."""
    for i in range(200):
        with open(svc.jobs / f"j{i:03}.hcl", "w") as f:
            f.write(JOB.format(name=f"j{i:03}", cmd="v1"))
    svc.wait(lambda: len(list(svc.fake.tasks)) >= 200, "200 jobs running")
    time.sleep(0.3)
    versions = svc.sql("SELECT job_id, count(*) FROM job_versions GROUP BY job_id")
    assert len(versions) == 200 and {n for _, n in versions} == {1}
    assert svc.problems() == []
