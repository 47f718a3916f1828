"""Rendered templates into the task's directories (`local/`, `tmp/`, `secrets/` staged for the
tmpfs, `alloc/`), with their perms and owner; `env = true` files read back as variables.

The task can write `local/`, `tmp/` and parts of `alloc/`, so every write goes through
safefs: a destination that leaves those directories or meets a link is refused."""

from __future__ import annotations

import os
import pwd

from reconciler.executor.base import StartError, TaskHandle
from reconciler.executor.linux import intask, rootfs, safefs


def destination(dirs: rootfs.TaskDirs, dest: str) -> tuple[str, str]:
    """(base directory, path beneath it) for a template destination, as Nomad places it:
    `local/`, `secrets/`, `tmp/` and `alloc/` name those directories; any other relative or
    absolute path lands inside `local/`."""
    parts = [p for p in os.path.normpath(dest).split("/") if p not in ("", ".")]
    if ".." in parts:  # only a relative path that climbs out keeps a `..` after normpath
        raise StartError(f"template destination {dest!r} leaves the task directory")
    bases = {"local": dirs.local, "secrets": dirs.secrets, "tmp": dirs.task / "tmp",
             "alloc": dirs.alloc / "alloc"}  # fmt: skip
    if len(parts) > 1 and parts[0] in bases:
        return str(bases[parts[0]]), "/".join(parts[1:])
    if not parts:
        raise StartError(f"template destination {dest!r} names no file")
    return str(dirs.local), "/".join(parts)


def write(
    dirs: rootfs.TaskDirs, dest: str, text: str | bytes, perms: int, pw: pwd.struct_passwd,
    *, unless_same: bool = False,
) -> bool:
    """Write a template's destination; with `unless_same`, only when the file does not hold
    `text` already (a re-render: consul-template acts on a template whose output changed).
    Whether it was written."""
    base, rel = destination(dirs, dest)
    try:
        if base == str(dirs.secrets):
            # Staged for the task's /secrets tmpfs: root only on the host, made on first use.
            task = safefs.open_base(str(dirs.task))
            try:
                fd = safefs.ensure_dir(task, "secrets", 0o700)
            finally:
                os.close(task)
        else:
            fd = safefs.open_base(base)
        try:
            owner = (pw.pw_uid, pw.pw_gid)
            data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
            if unless_same and safefs.holds(fd, rel, data):
                return False
            safefs.write_file(fd, rel, data, perms, owner,
                              dir_owner=owner)  # fmt: skip
            return True
        finally:
            os.close(fd)
    except safefs.UnsafePath as e:
        raise StartError(f"template destination {dest!r} refused: {e.strerror}") from None
    except OSError as e:
        raise StartError(f"template destination {dest!r}: {e.strerror or e}") from None


def into_task(handle: TaskHandle, dirs: rootfs.TaskDirs, dest: str, text: str | bytes, perms: int,
              pw: pwd.struct_passwd) -> None:  # fmt: skip
    """A re-rendered `secrets/` destination written into the running task's own /secrets too
    (its tmpfs, which the shim filled from the staged files at the start); anything else is
    in directories the task already shares. A task that has just ended is left alone: its
    next start copies the staged file."""
    base, rel = destination(dirs, dest)
    if base != str(dirs.secrets):
        return
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    try:
        intask.write_secret(handle, rel, data, perms, pw.pw_uid, pw.pw_gid)
    except intask.NotRunning:
        return
    except safefs.UnsafePath as e:
        raise StartError(f"template destination {dest!r} refused: {e.strerror}") from None
    except OSError as e:
        raise StartError(f"template destination {dest!r}: {e.strerror or e}") from None


def env_lines(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[k.strip().removeprefix("export ").strip()] = v
    return out
