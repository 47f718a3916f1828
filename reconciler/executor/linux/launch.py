"""Find the C shim (placed into the package when it was built or installed, see
shimbuild.py), write its config, and spawn it.

Without a packaged binary for this shim.c, the shim is compiled on first use into the data
dir, so a checkout needs only a C compiler on the host, which the fingerprint checks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from reconciler.executor.linux import shimbuild
from reconciler.executor.linux.shimbuild import ShimBuildError, compiler

__all__ = ["ShimBuildError", "compiler", "shim_binary"]
log = logging.getLogger("reconciler")


def shim_binary(cache_dir: Path) -> Path:
    """The shim for this source: the packaged one, else one compiled into cache_dir."""
    if (p := shimbuild.packaged()) is not None:
        return p
    target = cache_dir / shimbuild.name()
    if target.exists():
        return target
    path, kind = shimbuild.build(cache_dir, warn=False)
    if kind != "static musl":
        log.warning("reconciler-shim built against %s (musl-gcc missing or failed): each "
                    "task's shim costs more memory; install musl-tools", kind)  # fmt: skip
    return path


def config_bytes(items: Sequence[tuple[str, str]]) -> bytes:
    """NUL-separated key/value pairs: values may hold spaces, quotes and newlines."""
    text = "".join(f"{key}\0{value}\0" for key, value in items)
    if text.count("\0") != 2 * len(items):
        bad = next(k for k, v in items if "\0" in v)
        raise ValueError(f"{bad}: value contains a NUL byte")
    return text.encode()


def write_config(path: Path, items: Sequence[tuple[str, str]]) -> None:
    """The config as a file (config_bytes). Written in place: nothing reads it until the shim
    it is for starts."""
    data = config_bytes(items)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def claim_message(items: Sequence[tuple[str, str]]) -> bytes:
    """What a warm shim is claimed with on its stdin: "claim SIZE\n" and the config itself, so
    the shim starts on it without waiting for a file (creating one costs ~0.25 ms here); the
    service writes shim.conf, for `exec`, while the shim works."""
    data = config_bytes(items)
    return b"claim %d\n" % len(data) + data


def read_config(path: Path) -> list[tuple[str, str]]:
    parts = path.read_bytes().split(b"\0")
    return [(parts[i].decode(), parts[i + 1].decode()) for i in range(0, len(parts) - 1, 2)]


def spawn_async(shim: Path, config: Path, stderr_path: Path) -> tuple[int, int, int]:
    """Start the shim in its own session and return at once: (shim pid, a pipe to read its
    report from, a pipe to say "cgroups ready" on). Many shims can do their kernel work at the
    same time, and each task builds its root while the service makes its cgroups."""
    r, w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        pid = os.posix_spawn(
            str(shim),
            [str(shim), "run", str(config)],
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, go_r, 0),
                (os.POSIX_SPAWN_DUP2, w, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
            ],
            setsid=True,
        )
    except BaseException:
        os.close(r)
        os.close(go_w)
        raise
    finally:
        os.close(w)
        os.close(go_r)
        os.close(err)
    return pid, r, go_w


def ready(go: int, ok: bool = True) -> None:
    """Tell the shim its task's cgroups are made (or, with ok=False, that they are not)."""
    try:
        if ok:
            os.write(go, b"g")
    finally:
        os.close(go)


def read_line(fd: int) -> str:
    """One line from a blocking pipe, read without buffering past it: the same pipe carries
    the shim's next report (the task's exit)."""
    out = bytearray()
    while not out.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace").strip()


def started(pid: int, r: int) -> tuple[int, int]:
    """(shim pid, task pid) once the shim reports that the task exec'd; raises otherwise. On
    success the caller keeps `r`: the shim reports the task's exit on it (see
    supervision.py); on failure it is closed and the shim reaped."""
    try:
        line = read_line(r)
    except BaseException:
        os.close(r)
        raise
    if line.startswith("started "):
        return pid, int(line.split()[1])
    os.close(r)
    os.waitpid(pid, 0)
    raise RuntimeError(line.removeprefix("error ") or "the shim exited without starting the task")
