"""Parse results kept in the store across restarts: a start with unchanged files parses none,
anything a result was made from invalidates it, and a damaged row is never trusted."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.db.parsecache import ParseRows
from reconciler.db.store import Store
from reconciler.spec import load, parsecache
from reconciler.spec.load import Desired, Loader

JOB = 'job "{name}" {{\n  group "g" {{\n    task "t" {{\n      driver = "exec"\n      config {{ command = "/bin/{cmd}" }}\n    }}\n  }}\n}}\n'
WITH_VAR = """variable "command" {
  default = "/bin/default"
}
job "v" {
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = var.command
        args    = [file("arg.txt")]
      }
    }
  }
}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state" / "state.db")
    yield s
    s.close()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files parsed (not taken from a cache)."""
    calls: list[str] = []
    real = load.parse_text

    def counted(text: str, file: str, *rest: Any) -> Any:
        calls.append(Path(file).name)
        return real(text, file, *rest)

    monkeypatch.setattr(load, "parse_text", counted)
    return calls


def jobs_dir(tmp_path: Path) -> Path:
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    return jobs


def start(jobs: Path, store: Store, **kw: Any) -> Desired:
    """What a service start reads: a new loader over the same store."""
    return Loader(jobs, cache=ParseRows(store.pool), **kw).scan()


def command(d: Desired, job: str) -> tuple[str, list[str]]:
    config = d.jobs[job].job.group["g"].task["t"].config
    return config.command, list(config.args)


def test_a_restart_with_unchanged_files_parses_none_of_them(
    tmp_path: Path, store: Store, parses: list[str]
) -> None:
    jobs = jobs_dir(tmp_path)
    for i in range(5):
        (jobs / f"j{i}.hcl").write_text(JOB.format(name=f"j{i}", cmd=f"c{i}"))
    (jobs / "bad.hcl").write_text('job "bad" {\n  group "g" {\n    count = "two"\n  }\n}\n')
    first = start(jobs, store, env={})
    assert len(parses) == 6
    parses.clear()
    again = start(jobs, store, env={})
    assert parses == []
    assert again.jobs == first.jobs and again.files == first.files
    assert again.problems == first.problems and again.broken_files == first.broken_files
    (jobs / "j0.hcl").write_text(JOB.format(name="j0", cmd="edited"))
    assert command(start(jobs, store, env={}), "j0")[0] == "/bin/edited" and parses == ["j0.hcl"]


def test_a_restart_asks_the_store_once_for_the_rows_of_all_its_files(
    tmp_path: Path, store: Store, parses: list[str]
) -> None:
    jobs = jobs_dir(tmp_path)
    for i in range(7):
        (jobs / f"j{i}.hcl").write_text(JOB.format(name=f"j{i}", cmd=f"c{i}"))
    start(jobs, store, env={})
    parses.clear()
    asked: list[int] = []

    class Counted(ParseRows):
        def get_parses(self, keys: Any) -> Any:
            asked.append(len(keys))
            return super().get_parses(keys)

    again = Loader(jobs, cache=Counted(store.pool), env={}).scan()
    assert asked == [7] and parses == [] and sorted(again.jobs) == [f"j{i}" for i in range(7)]


def test_a_changed_var_file_file_input_or_environment_invalidates(
    tmp_path: Path, store: Store, parses: list[str]
) -> None:
    jobs = jobs_dir(tmp_path)
    (jobs / "v.hcl").write_text(WITH_VAR)
    (jobs / "arg.txt").write_text("one")
    assert command(start(jobs, store, env={}), "v") == ("/bin/default", ["one"])
    assert command(start(jobs, store, env={}), "v") == ("/bin/default", ["one"])
    assert parses == ["v.hcl"]  # the second start read arg.txt again, and used the row
    (jobs / "arg.txt").write_text("two")
    assert command(start(jobs, store, env={}), "v") == ("/bin/default", ["two"])
    (jobs / "v.vars.hcl").write_text('command = "/bin/from-vars"\n')
    assert command(start(jobs, store, env={}), "v") == ("/bin/from-vars", ["two"])
    env = {"NOMAD_VAR_command": "/bin/from-env"}
    (jobs / "v.vars.hcl").unlink()
    assert command(start(jobs, store, env=env), "v") == ("/bin/from-env", ["two"])
    assert len(parses) == 4


def test_an_input_changed_after_the_parse_read_it_is_parsed_again(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row holds the hash of the bytes the parse read, not of a later read of the file."""
    jobs = jobs_dir(tmp_path)
    (jobs / "v.hcl").write_text(WITH_VAR)
    (jobs / "arg.txt").write_text("one")
    real = load.parse_text

    def parse_then_edit(*args: Any) -> Any:
        result = real(*args)
        (jobs / "arg.txt").write_text("two")  # after the parse's read, before the row is made
        return result

    monkeypatch.setattr(load, "parse_text", parse_then_edit)
    assert command(start(jobs, store, env={}), "v") == ("/bin/default", ["one"])
    monkeypatch.setattr(load, "parse_text", real)
    assert command(start(jobs, store, env={}), "v") == ("/bin/default", ["two"])


def test_a_file_read_twice_with_different_bytes_is_not_kept(tmp_path: Path) -> None:
    from reconciler.spec.hclfiles import JobDirectory

    (tmp_path / "a.txt").write_text("one")
    directory = JobDirectory(str(tmp_path), str(tmp_path))
    directory.read("a.txt")
    assert parsecache.fingerprints(directory) == [
        (str(tmp_path / "a.txt"), hashlib.sha256(b"one").hexdigest())
    ]
    (tmp_path / "a.txt").write_text("two")
    directory.read("a.txt")
    assert parsecache.fingerprints(directory) is None


def test_another_parser_version_invalidates(
    tmp_path: Path, store: Store, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = jobs_dir(tmp_path)
    (jobs / "a.hcl").write_text(JOB.format(name="a", cmd="x"))
    start(jobs, store, env={})
    start(jobs, store, env={})
    assert parses == ["a.hcl"]
    monkeypatch.setattr(parsecache, "parser_version", lambda: "another")
    start(jobs, store, env={})
    assert parses == ["a.hcl", "a.hcl"]


def test_the_parser_version_follows_the_spec_sources(tmp_path: Path) -> None:
    version = parsecache.parser_version()
    assert len(version) == 64 and version == parsecache.parser_version()
    spec = tmp_path / "spec"
    shutil.copytree(Path(parsecache.__file__).parent, spec,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    assert parsecache.version_of(spec) == version
    engine = spec / "gotemplate" / "exec.py"
    engine.write_text(engine.read_text() + "\n# changed\n")  # a template check changed
    assert parsecache.version_of(spec) != version


def _rows(store: Store) -> list[tuple[str, str, str]]:
    with store.pool.connection() as raw:
        return list(raw.execute("SELECT key, value, checksum FROM parse_cache"))


def _put(store: Store, key: str, value: str, check: str | None = None) -> None:
    check = check if check is not None else hashlib.sha256(value.encode()).hexdigest()
    ParseRows(store.pool).put_parses([(key, value, check)], None)


@pytest.mark.parametrize(
    "damage",
    ["bytes", "json", "shape", "job", "severity", "format"],
)
def test_a_damaged_row_is_ignored_and_the_file_parsed(
    tmp_path: Path, store: Store, parses: list[str], damage: str
) -> None:
    jobs = jobs_dir(tmp_path)
    (jobs / "a.hcl").write_text(JOB.format(name="a", cmd="x"))
    first = start(jobs, store, env={})
    [(key, value, check)] = _rows(store)
    row = json.loads(value)
    if damage == "bytes":  # a flipped byte: the checksum no longer matches
        _put(store, key, value.replace("/bin/x", "/bin/y"), check)
    elif damage == "json":
        _put(store, key, value[:-5])
    elif damage == "shape":
        _put(store, key, json.dumps({**row, "jobs": [["a", "a.hcl"]]}))
    elif damage == "job":  # checks, decodes, but is not a valid job
        canonical = json.loads(row["jobs"][0][2])
        canonical["group"] = "not a block"
        _put(
            store,
            key,
            json.dumps({**row, "jobs": [["a", row["jobs"][0][1], json.dumps(canonical)]]}),
        )
    elif damage == "severity":
        _put(
            store, key, json.dumps({**row, "problems": [["a.hcl", 1, "", "m", "fatal", None, ""]]})
        )
    else:
        _put(store, key, json.dumps({**row, "format": 999}))
    again = start(jobs, store, env={})
    assert parses == ["a.hcl", "a.hcl"]  # parsed again, not taken from the row
    assert again.jobs == first.jobs and again.files == first.files


def test_rows_of_files_that_are_gone_are_dropped_at_a_full_listing(
    tmp_path: Path, store: Store
) -> None:
    jobs = jobs_dir(tmp_path)
    (jobs / "a.hcl").write_text(JOB.format(name="a", cmd="x"))
    (jobs / "b.hcl").write_text(JOB.format(name="b", cmd="x"))
    start(jobs, store, env={})
    assert len(_rows(store)) == 2
    (jobs / "b.hcl").unlink()
    start(jobs, store, env={})  # a start lists the directory in full
    assert len(_rows(store)) == 1


def test_a_store_that_fails_costs_a_parse_not_the_scan(tmp_path: Path) -> None:
    class Broken:
        def get_parses(self, keys: Any) -> Any:
            raise OSError("disk I/O error")

        def put_parses(self, rows: Any, keep: Any) -> None:
            raise OSError("disk I/O error")

    jobs = jobs_dir(tmp_path)
    (jobs / "a.hcl").write_text(JOB.format(name="a", cmd="x"))
    assert set(Loader(jobs, cache=Broken(), env={}).scan().jobs) == {"a"}


def test_a_start_from_the_cache_does_not_load_the_hcl_parser(tmp_path: Path, store: Store) -> None:
    jobs = jobs_dir(tmp_path)
    for i in range(3):
        (jobs / f"j{i}.hcl").write_text(JOB.format(name=f"j{i}", cmd="x"))
    start(jobs, store, env={})
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reconciler.db.parsecache import ParseRows\n"
        "from reconciler.db.store import Store\n"
        "from reconciler.service.loop import Service\n"
        "from reconciler.spec.load import Loader\n"
        "store = Store(Path(sys.argv[2]))\n"
        "d = Loader(Path(sys.argv[1]), cache=ParseRows(store.pool), env={}).scan()\n"
        "assert len(d.jobs) == 3, d.problems\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'hcl2')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(jobs), str(store.path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
