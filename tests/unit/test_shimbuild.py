"""Which compiler builds reconciler-shim, and what a host without one is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.executor.linux import launch, shimbuild


def _which(have: set[str]):  # type: ignore[no-untyped-def]
    return lambda name: f"/usr/bin/{name}" if name in have else None


def test_musl_comes_first_then_static_then_dynamic_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shimbuild.shutil, "which", _which({"musl-gcc", "cc"}))
    kinds = [kind for kind, _ in shimbuild.attempts()]
    assert kinds == ["static musl", "static glibc", "dynamic glibc"]
    musl_cmd = shimbuild.attempts()[0][1]
    assert musl_cmd[0] == "/usr/bin/musl-gcc" and "-static" in musl_cmd


def test_without_musl_glibc_builds_are_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shimbuild.shutil, "which", _which({"gcc"}))
    assert [kind for kind, _ in shimbuild.attempts()] == ["static glibc", "dynamic glibc"]


def test_no_compiler_and_no_packaged_binary_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shimbuild.shutil, "which", _which(set()))
    monkeypatch.setattr(shimbuild, "PACKAGED", tmp_path / "none")
    with pytest.raises(shimbuild.ShimBuildError, match="no C compiler"):
        launch.shim_binary(tmp_path / "bin")


def test_a_packaged_binary_for_this_source_is_used_without_compiling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shimbuild.shutil, "which", _which(set()))  # nothing could compile
    monkeypatch.setattr(shimbuild, "PACKAGED", tmp_path / "pkg")
    (tmp_path / "pkg").mkdir()
    stale = tmp_path / "pkg" / "reconciler-shim-000000000000"  # another shim.c's
    stale.write_text("#!/bin/sh\n")
    stale.chmod(0o755)
    with pytest.raises(shimbuild.ShimBuildError):
        launch.shim_binary(tmp_path / "bin")
    ours = tmp_path / "pkg" / shimbuild.name()
    ours.write_text("#!/bin/sh\n")
    ours.chmod(0o755)
    assert launch.shim_binary(tmp_path / "bin") == ours
