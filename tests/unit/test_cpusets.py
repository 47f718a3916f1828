"""The shared cpuset's arithmetic over a cgroup-shaped directory tree (plain files here)."""

from __future__ import annotations

from pathlib import Path

from reconciler.executor.linux import cpusets


def tree(tmp_path: Path, cpus: str, pinned: dict[str, str], shared_children: list[str]) -> Path:
    base = tmp_path / "base"
    (base / cpusets.SHARED).mkdir(parents=True)
    (base / "cpuset.cpus").write_text(cpus)
    (base / cpusets.SHARED / "cpuset.cpus").write_text(cpus)
    for name, ids in pinned.items():
        (base / name).mkdir()
        (base / name / "cpuset.cpus").write_text(ids)
    for name in shared_children:
        (base / cpusets.SHARED / name).mkdir()
        (base / cpusets.SHARED / name / "cpuset.cpus").write_text(cpus)
    return base


def read(path: Path) -> str:
    return path.read_text().strip()


def test_shared_cores_are_the_rest_of_the_node(tmp_path: Path) -> None:
    base = tree(tmp_path, "0-3", {"a.g.0.t": "1", "b.g.0.t": "2"}, ["s.g.0.t", "warm-1"])
    cpusets.refresh(base, frozenset({3}))
    assert read(base / cpusets.SHARED / "cpuset.cpus") == "0"
    for child in ("s.g.0.t", "warm-1"):
        assert read(base / cpusets.SHARED / child / "cpuset.cpus") == "0"
    (base / "b.g.0.t" / "cpuset.cpus").unlink()
    (base / "b.g.0.t").rmdir()  # b ends: its core is shared again
    cpusets.refresh(base, frozenset({3}))
    assert read(base / cpusets.SHARED / "cpuset.cpus") == "0,2"
    assert read(base / cpusets.SHARED / "s.g.0.t" / "cpuset.cpus") == "0,2"


def test_nothing_left_keeps_the_shared_cores_as_they_are(tmp_path: Path) -> None:
    base = tree(tmp_path, "0-1", {"a.g.0.t": "0", "b.g.0.t": "1"}, ["warm-1"])
    (base / cpusets.SHARED / "cpuset.cpus").write_text("0")
    cpusets.refresh(base, frozenset())
    assert read(base / cpusets.SHARED / "cpuset.cpus") == "0"


def test_parse_and_text_round_trip() -> None:
    assert cpusets.parse("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert cpusets.text({8, 0, 5}) == "0,5,8"
    assert cpusets.parse("") == set()
