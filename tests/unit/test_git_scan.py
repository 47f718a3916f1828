"""A git checkout writes many files faster than their events may arrive: once git replaces its
index, the loader lists the job directory in full instead of trusting the journal."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reconciler.spec.load import Loader
from tests.unit.conftest import Harness, job

JOB = 'job "{name}" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{ command = "/bin/{cmd}" }}\n    }}\n  }}\n}}\n'


def test_a_checkout_whose_events_lag_is_read_in_full(tmp_path: Path) -> None:
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.hcl").write_text(JOB.format(name=name, cmd="v1"))
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    subprocess.run([*git, "checkout", "-q", "-b", "v2"], check=True)
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.hcl").write_text(JOB.format(name=name, cmd="v2"))
    subprocess.run([*git, "commit", "-qam", "v2"], check=True)
    subprocess.run([*git, "checkout", "-q", "main"], check=True)
    loader = Loader(tmp_path, env={})
    loader.journal.attach()
    assert {s.canonical.count("/bin/v1") for s in loader.scan().jobs.values()} == {1}
    assert loader.settled()
    subprocess.run([*git, "checkout", "-q", "v2"], check=True)
    loader.journal.note("a.hcl")  # the only event that has arrived yet
    assert not loader.settled()
    d = loader.scan()
    assert all("/bin/v2" in s.canonical for s in d.jobs.values()) and len(d.jobs) == 3
    assert loader.settled()


def test_a_version_read_before_git_moved_its_branch_gets_the_commit_after(h: Harness) -> None:
    """A push's `git reset --hard` writes the files and the index, then moves the branch: a
    scan in between records the new version without a commit; it gets it once HEAD names it."""
    git = ["git", "-C", str(h.jobs), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    h.write("web.hcl", job(command="/bin/v1"))
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    h.step()
    first = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                           text=True).stdout.strip()  # fmt: skip
    assert commits(h) == [first]
    h.write("web.hcl", job(command="/bin/v2"))
    subprocess.run([*git, "add", "."], check=True)  # the index has it, the branch not yet
    h.step()
    assert commits(h) == [first, None]
    assert h.service._next_timeout() <= 0.25  # HEAD is looked at again soon
    subprocess.run([*git, "commit", "-qm", "v2"], check=True)
    second = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    h.step()
    assert commits(h) == [first, second]
    assert h.service._next_timeout() > 0.25  # nothing is waiting for git any more


def test_an_edit_committed_later_is_given_its_commit(h: Harness) -> None:
    git = ["git", "-C", str(h.jobs), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    h.write("web.hcl", job(command="/bin/v1"))  # not committed: no commit to record
    h.step()
    assert commits(h) == [None]
    h.write("web.hcl", job(command="/bin/v2"))  # replaced before it was committed: v1 stays without
    h.step()
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v2"], check=True)
    h.step()
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert commits(h) == [None, head]


def commits(h: Harness) -> list[str | None]:
    with h.store.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT git_commit FROM job_versions ORDER BY id").all()
    return [r[0] for r in rows]
