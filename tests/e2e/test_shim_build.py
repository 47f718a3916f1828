"""reconciler-shim as built for production: static against musl, and a waiting shim keeps
no heap and only a few pages of its own."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from reconciler.executor.linux import shimbuild
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import sh, wait_for

PT_INTERP = 3


def _interpreter(path: Path) -> bool:
    """Whether the ELF file asks for a dynamic loader (a PT_INTERP program header)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2  # 64-bit
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == PT_INTERP
               for i in range(phnum))  # fmt: skip


@pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="musl-tools not installed")
def test_the_shim_builds_static_against_musl(tmp_path: Path) -> None:
    path, kind = shimbuild.build(tmp_path)
    assert kind == "static musl"
    assert path.name == shimbuild.name() and not _interpreter(path)


def _rollup(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in smaps_rollup")


def _heap_rss(pid: int) -> int:
    lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.endswith("[heap]"):
            return sum(int(x.split()[1]) for x in lines[i + 1:i + 4] if x.startswith("Rss:"))
    return 0


def test_a_waiting_shim_keeps_no_heap_and_few_pages(ex: LinuxExecutor) -> None:
    h = ex.start(sh("echo hello; exec sleep 1000"))
    wait_for(lambda: (ex.dirs("j/g/0", "t").logs / "t.stdout.0").exists(), what="the log")
    assert _heap_rss(h.shim_pid) == 0
    # Its own pages (the code is shared by every shim): ~20-30 kB with musl, more with glibc.
    # Generous bounds; a heap or stack regression shows.
    static_musl = shutil.which("musl-gcc") is not None and not _interpreter(ex.shim())
    assert _rollup(h.shim_pid, "Private_Dirty") <= (40 if static_musl else 160)
    ex.stop(h, "SIGKILL", 0)
    assert ex.wait(h, 10) is not None
