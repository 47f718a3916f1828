"""cgroup v1 cpusets: Nomad's split between reserved and shared cores.

A task with `cores` holds its cores alone in a cpuset of its own beside `shared/`; every other
task, and every warm shim, lives under `shared/`, whose cores are the service's minus the node's
reserved ones minus those tasks hold (as Nomad's client/lib/cgutil cpuset_manager_v1.go). The
shared cpuset clones its cores into each new child at mkdir, so a start writes nothing; when
what tasks hold changes, the shared cpuset and its children are rewritten (once per change of
holdings, not per start)."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable
from pathlib import Path

SHARED = "shared"
_lock = threading.Lock()
_ready: set[Path] = set()


def parse(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def text(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # as a shell's `>` does
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def ensure_base(base: Path) -> None:
    """The service's subtree in the cpuset hierarchy, with the cores and memory nodes of the
    cpuset above it (a v1 cpuset starts with none, and takes no task until it has some)."""
    base.mkdir(exist_ok=True)
    for f in ("cpuset.cpus", "cpuset.mems"):
        if not _read(base / f):
            _write(base / f, _read(base.parent / f))


def shared(base: Path, reserved: frozenset[int]) -> Path:
    """The shared cpuset, made and filled on first use."""
    d = base / SHARED
    if d in _ready and d.is_dir():
        return d
    with _lock:
        ensure_base(base)
        d.mkdir(exist_ok=True)
        if not _read(d / "cpuset.mems"):
            _write(d / "cpuset.mems", _read(base / "cpuset.mems"))
        if not _read(d / "cpuset.cpus"):
            _write(d / "cpuset.cpus", _read(base / "cpuset.cpus"))
        _write(d / "cgroup.clone_children", "1")
        _refresh(base, reserved)
        _ready.add(d)
    return d


def refresh(base: Path, reserved: frozenset[int]) -> None:
    """Give the shared cpuset every core of the service's that neither the node reserves nor a
    task holds (called when a task's cores are set or given back)."""
    with _lock:
        _refresh(base, reserved)


def _refresh(base: Path, reserved: frozenset[int]) -> None:
    d = base / SHARED
    if not d.is_dir():
        return
    everything = parse(_read(base / "cpuset.cpus"))
    held: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for child in base.iterdir():
            if child.is_dir() and child.name != SHARED:
                held |= parse(_read(child / "cpuset.cpus"))
    want = everything - reserved - held
    if not want:  # every core is held or reserved: admission leaves shared tasks no room
        return
    for _ in range(3):  # a child made meanwhile clones the wider set: narrow it too
        current = parse(_read(d / "cpuset.cpus"))
        if current == want:
            return
        if not want <= current:  # a child must stay within its parent: widen, then narrow
            _write(d / "cpuset.cpus", text(current | want))
        for child in (c for c in d.iterdir() if c.is_dir()):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                _write(child / "cpuset.cpus", text(want))
        try:
            _write(d / "cpuset.cpus", text(want))
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
