"""What the service keeps per file and per job between scans and passes, held compactly: an
entry's key is one bytes object that still changes with every write, chmod or relink; a job's
slots' states are a tuple shared by every job with the same ones, and the tasks gauge counts
what the slots say."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from reconciler.spec import jobdir
from tests.unit.conftest import Harness, job


def test_an_entry_s_key_is_packed_and_changes_with_the_entry(tmp_path: Path) -> None:
    f = tmp_path / "a.hcl"
    f.write_text("one")
    os.symlink("a.hcl", tmp_path / "link.hcl")
    os.symlink("nowhere.hcl", tmp_path / "dangling.hcl")
    keys = dict(jobdir.listing(tmp_path, lambda n: True))
    assert {n: type(k) for n, k in keys.items()} == dict.fromkeys(keys, bytes)
    assert len(keys["a.hcl"] or b"") == jobdir.PLAIN
    assert len(keys["link.hcl"] or b"") == 2 * jobdir.PLAIN  # its target's stat too
    assert jobdir.PLAIN < len(keys["dangling.hcl"] or b"") < 2 * jobdir.PLAIN  # -ENOENT
    assert jobdir.stat_entry(tmp_path, "a.hcl") == keys["a.hcl"]
    assert jobdir.stat_entry(tmp_path, "link.hcl") == keys["link.hcl"]
    assert jobdir.stat_entry(tmp_path, "gone.hcl") is None
    seen = {keys["a.hcl"]}
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    seen.add(jobdir.stat_entry(tmp_path, "a.hcl") or b"")
    os.chmod(f, 0o600)
    seen.add(jobdir.stat_entry(tmp_path, "a.hcl") or b"")
    f.write_text("two")
    seen.add(jobdir.stat_entry(tmp_path, "a.hcl") or b"")
    assert len(seen) == 4  # each change made a new key
    before = jobdir.stat_entry(tmp_path, "link.hcl")
    (tmp_path / "b.hcl").write_text("other")
    os.unlink(tmp_path / "link.hcl")
    os.symlink("b.hcl", tmp_path / "link.hcl")
    assert jobdir.stat_entry(tmp_path, "link.hcl") != before


def test_jobs_with_the_same_states_share_them_and_the_gauge_counts_slots(h: Harness) -> None:
    h.write("a.hcl", job("a"))
    h.write("b.hcl", job("b"))
    h.write("c.hcl", job("c", count=2))
    h.step()
    states = h.service._states_of
    assert states["a"] == ("running",) and states["a"] is states["b"]
    assert states["c"] == ("running", "running")
    assert h.service._states == Counter(running=4)
    h.remove("b.hcl")
    h.step()
    h.step()
    assert "b" not in h.service._states_of
    assert +h.service._states == Counter(running=3)
