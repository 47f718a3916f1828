"""A scan with the watcher's journal keeps Desired up to date file by file: after any sequence
of changes it is what a scan from nothing finds, and one edit among many looks at one file."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.spec.desired import Assembly, assemble
from reconciler.spec.load import Desired, Loader

JOB = 'job "{name}" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{ command = "/bin/{cmd}" }}\n    }}\n  }}\n}}\n'
VARJOB = 'variable "c" {{\n  default = "d"\n}}\njob "{name}" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{ command = "/bin/${{var.c}}" }}\n    }}\n  }}\n}}\n'
BROKEN = 'job "{name}" {{\n  group "g" {{\n    count = "two"\n  }}\n}}\n'

FILES = ["a.hcl", "b.hcl", "c.nomad", "c.nomad.hcl", "d.hcl"]
NAMES = ["x", "y", "z"]  # few job names: files often define the same job


def view(d: Desired) -> Any:
    return (
        {k: (s.digest, s.file) for k, s in d.jobs.items()},
        dict(d.files), d.held, d.broken_files, d.problems, d.directory_ok,
    )  # fmt: skip


op = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(FILES),
        st.sampled_from(NAMES),
        st.sampled_from(["plain", "var", "broken"]),
        st.integers(0, 2),
    ),  # fmt: skip
    st.tuples(st.just("remove"), st.sampled_from(FILES)),
    st.tuples(st.just("vars"), st.sampled_from(["a", "b", "c"]), st.integers(0, 2)),
    st.tuples(st.just("unvars"), st.sampled_from(["a", "b", "c"])),
)


def apply(root: Path, o: tuple[Any, ...]) -> list[str]:
    """Do one change; the names a watcher would note."""
    if o[0] == "write":
        _, f, name, kind, v = o
        text = {"plain": JOB, "var": VARJOB, "broken": BROKEN}[kind].format(name=name, cmd=f"c{v}")
        (root / f).write_text(text)
        return [f]
    if o[0] == "remove":
        (root / o[1]).unlink(missing_ok=True)
        return [o[1]]
    if o[0] == "vars":
        (root / f"{o[1]}.vars.hcl").write_text(f'c = "v{o[2]}"\n')
        return [f"{o[1]}.vars.hcl"]
    (root / f"{o[1]}.vars.hcl").unlink(missing_ok=True)
    return [f"{o[1]}.vars.hcl"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=6))
@example([[("write", "a.hcl", "x", "plain", 0), ("write", "c.nomad", "x", "plain", 0)],
          [("write", "b.hcl", "x", "plain", 0)]])  # the other files named in the order seen  # fmt: skip
def test_after_any_changes_the_journal_scan_is_a_scan_from_nothing(batches: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        loader = Loader(root, env={})
        loader.journal.attach()
        loader.scan()
        for batch in batches:
            for o in batch:
                for name in apply(root, o):
                    loader.journal.note(name)
            assert view(loader.scan()) == view(Loader(root, env={}).scan()), batch


def test_assembly_updates_are_a_fresh_assemble() -> None:
    from reconciler.spec.load import parse_text

    results = {
        f: parse_text(JOB.format(name=n, cmd="x"), f)
        for f, n in (("a.hcl", "x"), ("b.hcl", "x"), ("c.hcl", "y"))
    }
    a = Assembly()
    a.update(results)
    assert view(a.desired()) == view(assemble(results))
    assert a.desired().held == {"x"}
    assert a.update({"b.hcl": None}) == {"x"}  # the job it defined may have changed
    rest = {k: v for k, v in results.items() if k != "b.hcl"}
    assert view(a.desired()) == view(assemble(rest)) and a.desired().held == frozenset()


def test_one_edit_among_many_looks_at_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(300):
        (tmp_path / f"j{i}.hcl").write_text(JOB.format(name=f"j{i}", cmd="x"))
    loader = Loader(tmp_path, env={})
    loader.journal.attach()
    before = loader.scan()
    looked: list[str] = []
    real = Loader._key_of
    monkeypatch.setattr(Loader, "_key_of", lambda self, n, e: looked.append(n) or real(self, n, e))
    (tmp_path / "j7.hcl").write_text(JOB.format(name="j7", cmd="edited"))
    loader.journal.note("j7.hcl")
    after = loader.scan()
    assert looked == ["j7.hcl"]
    assert loader.changed_since(before) == {"j7"}
    assert "/bin/edited" in after.jobs["j7"].canonical and len(after.jobs) == 300
    assert loader.changed_since(after) == frozenset()
    assert loader.changed_since(Loader(tmp_path).scan()) is None  # not one of this loader's
