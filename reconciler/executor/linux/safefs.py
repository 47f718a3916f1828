"""File operations as root inside directories a task can write, immune to links and races.

A task can plant symbolic links, FIFOs or devices in `local/`, `tmp/`, `alloc/data` and
`alloc/tmp`, and swap a directory for a link while the service works in it. So nothing here
resolves a path and then writes to it: every walk starts at a directory fd the task cannot
replace and goes one component at a time with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
RESOLVE_NO_MAGICLINKS); files are created O_EXCL|O_NOFOLLOW under a fresh name, given their
mode and owner through the fd (fchmod, fchown), then renamed over the destination within the
same directory fd. A destination that meets a link, a FIFO, a socket, a device or `..` is
refused with `UnsafePath`, never written and never waited on.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

SYS_OPENAT2 = 437  # the same number on every architecture (new syscalls are unified)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
SAFE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]  # fmt: skip


class UnsafePath(OSError):
    """A destination the service refuses to write: it leaves the task's directories or meets
    something other than a directory or a regular file."""


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = SAFE) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how),
                       ctypes.sizeof(how))  # fmt: skip
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def components(rel: str) -> list[str]:
    """The parts of a path relative to a base; `..` and empty paths are refused outright."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafePath(errno.EINVAL, "empty path", rel)
    if ".." in parts:
        raise UnsafePath(errno.EXDEV, "path leaves its directory (..)", rel)
    return parts


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a directory")):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def _open_dir(parent: int, name: str) -> int:
    try:
        return openat2(parent, name, DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.EAGAIN):
            st = _lstat(parent, name)
            what = _kind(st.st_mode) if st else "not a directory"
            raise UnsafePath(e.errno, f"{name} is {what}", name) from None
        raise


def _lstat(dirfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_base(path: str) -> int:
    """A directory fd for a base the task cannot replace (root-owned components only); the
    final component must be a directory, not a link."""
    return os.open(path, DIR_FLAGS)


def ensure_dir(base: int, rel: str, mode: int = 0o755, owner: tuple[int, int] | None = None,
               *, chmod: bool = False) -> int:  # fmt: skip
    """Walk (creating as needed) the directories of `rel` beneath `base`; return an fd of the
    last one. New directories get `mode` and `owner` through their fd; with chmod, an existing
    last directory is given them too."""
    fd = os.dup(base)
    parts = components(rel)
    try:
        for i, name in enumerate(parts):
            made = False
            try:
                os.mkdir(name, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                pass
            nxt = _open_dir(fd, name)
            os.close(fd)
            fd = nxt
            if made or (chmod and i == len(parts) - 1):
                os.fchmod(fd, mode)  # not the umask's: the mode asked for
                if owner is not None:
                    os.fchown(fd, *owner)
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def parent_of(base: int, rel: str, mode: int = 0o755,
              owner: tuple[int, int] | None = None) -> Iterator[tuple[int, str]]:  # fmt: skip
    """(fd of the directory that holds `rel`, its last component), the directories made."""
    parts = components(rel)
    fd = ensure_dir(base, "/".join(parts[:-1]), mode, owner) if len(parts) > 1 else os.dup(base)
    try:
        yield fd, parts[-1]
    finally:
        os.close(fd)


def write_file(base: int, rel: str, data: bytes, perms: int, owner: tuple[int, int],
               dir_owner: tuple[int, int] | None = None) -> None:  # fmt: skip
    """Replace the regular file at `rel` beneath `base` with `data`, atomically."""
    write_stream(base, rel, io.BytesIO(data), perms, owner, dir_owner)


class TooLarge(OSError):
    """A stream passed the byte limit it was written with."""


def write_stream(base: int, rel: str, src: IO[bytes], perms: int, owner: tuple[int, int] | None,
                 dir_owner: tuple[int, int] | None = None, limit: int = 0) -> int:  # fmt: skip
    """Replace the regular file at `rel` beneath `base` with what `src` holds, atomically;
    more than `limit` bytes (0: no limit) is refused with TooLarge. Returns the size."""
    with parent_of(base, rel, 0o755, dir_owner) as (parent, name):
        st = _lstat(parent, name)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise UnsafePath(errno.EEXIST, f"{name} is {_kind(st.st_mode)}", rel)
        tmp = f".reconciler-{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)  # fmt: skip
        size = 0
        try:
            try:
                while chunk := src.read(1 << 20):
                    size += len(chunk)
                    if limit and size > limit:
                        raise TooLarge(errno.EFBIG, f"larger than {limit} bytes", rel)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fchmod(fd, perms)
                if owner is not None:
                    os.fchown(fd, *owner)
            finally:
                os.close(fd)
            # rename never follows a link at the destination: it replaces the link itself.
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
            raise
    return size


def holds(base: int, rel: str, data: bytes) -> bool:
    """Whether the file at `rel` beneath `base` is a regular file holding exactly `data`. A
    missing file, a link on the way, a FIFO or a device: False, never followed or waited on."""
    try:
        fd = openat2(base, "/".join(components(rel)), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        got = bytearray()
        while len(got) <= len(data) and (chunk := os.read(fd, len(data) + 1 - len(got))):
            got += chunk
        return got == data
    finally:
        os.close(fd)


def unlink(base: int, rel: str) -> None:
    """Remove a file beneath `base` if it is there (the name itself, never a link's target)."""
    with parent_of(base, rel) as (parent, name), contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=parent)
