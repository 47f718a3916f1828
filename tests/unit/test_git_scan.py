"""A git checkout writes many files faster than their events may arrive: once git replaces its
index, the loader lists the job directory in full instead of trusting the journal."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reconciler.spec.load import Loader

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
