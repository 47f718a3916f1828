"""Compile reconciler-shim: against musl when `musl-gcc` exists (a waiting shim then costs a
few pages), else static glibc, else dynamic glibc, each with a warning saying what it costs.

Standard library only: setup.py loads this file by path to put the binary into the package
when a wheel is built, and `make deps` runs it to place one into the checkout, so a host that
runs reconciler needs no compiler. `launch.py` builds into the data dir only as a fallback.

    python -m reconciler.executor.linux.shimbuild [DIR]   # default: the package's bin/
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("shim.c")
PACKAGED = Path(__file__).with_name("bin")
# Size over speed: the shim mostly sleeps, and every page it touches is paid per task.
MUSL_FLAGS = ["-static", "-Os", "-fno-asynchronous-unwind-tables", "-Wl,--gc-sections",
              "-ffunction-sections", "-fdata-sections", "-s"]  # fmt: skip


class ShimBuildError(Exception):
    pass


@functools.cache
def digest() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]


def name() -> str:
    return f"reconciler-shim-{digest()}"


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def attempts() -> list[tuple[str, list[str]]]:
    """(what it is, compiler command without output and source), best first."""
    out: list[tuple[str, list[str]]] = []
    if musl := shutil.which("musl-gcc"):
        out.append(("static musl", [musl, "-Wall", *MUSL_FLAGS]))
    if cc := compiler():
        out.append(("static glibc", [cc, "-O2", "-Wall", "-static", "-s"]))
        out.append(("dynamic glibc", [cc, "-O2", "-Wall", "-s"]))
    return out


def build(target_dir: Path, warn: bool = True) -> tuple[Path, str]:
    """Compile into target_dir/<name> (atomically) and return (path, kind)."""
    tries = attempts()
    if not tries:
        raise ShimBuildError("no C compiler (cc) found: install gcc (and musl-tools) to build "
                             "reconciler-shim, or install reconciler from a wheel that carries it")  # fmt: skip
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / name()
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".shim-")
    os.close(fd)
    errors = ""
    try:
        for kind, cmd in tries:
            proc = subprocess.run([*cmd, "-o", tmp, str(SOURCE)], capture_output=True, text=True)
            if proc.returncode == 0:
                if warn and kind != "static musl":
                    print(f"reconciler-shim: musl-gcc not found or failed, built against {kind}: "
                          "each task's shim costs more memory (install musl-tools)",
                          file=sys.stderr)  # fmt: skip
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
                return target, kind
            errors = proc.stderr
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    raise ShimBuildError(f"compiling {SOURCE} failed:\n{errors}")


def packaged() -> Path | None:
    """The binary placed into the package at build or install time, if it matches shim.c."""
    p = PACKAGED / name()
    return p if os.access(p, os.X_OK) else None


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else PACKAGED
    try:
        path, kind = build(out)
    except ShimBuildError as e:
        print(f"reconciler-shim: {e}", file=sys.stderr)
        return 1
    for old in out.glob("reconciler-shim-*"):  # earlier versions of shim.c
        if old != path:
            old.unlink()
    print(f"reconciler-shim ({kind}): {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
