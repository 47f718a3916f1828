"""A task's own mounts are listed once (rootfs.task_mounts): a cold start and a claim of a
warm shim hand the shim the same directories, at the same places, with the same access."""

from __future__ import annotations

from pathlib import Path

from reconciler.executor.linux import rootfs, shimconfig


def _dirs(tmp_path: Path) -> rootfs.TaskDirs:
    return rootfs.TaskDirs(
        alloc=tmp_path / "allocs" / "a1", task=tmp_path / "allocs" / "a1" / "tasks" / "web"
    )


def _cold(dirs: rootfs.TaskDirs) -> list[tuple[str, ...]]:
    """What a cold start mounts of the task's own (an empty chroot_env: no node mounts)."""
    out: list[tuple[str, ...]] = []
    for kind, src, dst in rootfs.prepare(dirs, {}):
        access = {"bind_rw": ("bind", "rw"), "bind_ro": ("bind", "ro")}.get(kind)
        out.append((access[0], src, dst, access[1]) if access else (kind, src, dst))
    return out


def _warm(dirs: rootfs.TaskDirs) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for kind, value in shimconfig.warm_task_mounts(dirs):
        parts = tuple(value.split("\t"))
        out.append(("bind", *parts) if kind == "bind_late" else (kind, *parts))
    return out


def test_warm_claim_mounts_what_a_cold_start_mounts(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    cold = _cold(dirs)
    assert ("bind", f"{dirs.task}/local", "/local", "rw") in cold
    assert ("bind", f"{dirs.alloc}/alloc/logs", "/alloc/logs", "ro") in cold
    assert ("tmpfs", "/secrets", "size=1m,mode=0700") in cold
    # Staged secrets or none (the shim copies what is there, alike for both), the same list.
    assert cold[-1] == ("copy_into", str(dirs.secrets), "/secrets")
    assert not dirs.secrets.exists()
    assert _warm(dirs) == cold
    dirs.secrets.mkdir(mode=0o700)
    assert _warm(dirs) == cold


def test_every_task_mount_point_is_in_the_list(tmp_path: Path) -> None:
    # a tmpfs is (kind, target, options)
    targets = {
        src if kind == "tmpfs" else dst for kind, src, dst in rootfs.task_mounts(_dirs(tmp_path))
    }
    assert {"/alloc", "/local", "/tmp", "/secrets"} <= targets
    assert targets <= set(rootfs.TASK_MOUNT_POINTS) | {"/alloc/logs"}
