"""Which entries of the job directory are job files, and reading one without trusting it.

The directory is written by people, editors, scripts and git: any kind of entry turns up in it.
Only regular files are read. Every entry is first opened with O_PATH (which opens nothing: a
FIFO cannot block it, a device is not woken), checked with fstat, and only a regular file is then
reopened for reading through /proc/self/fd, so the file read is the inode that was checked. A
symlink is followed only to a regular file inside the job directory (as a Kubernetes ConfigMap
mount lays it out); loops, dangling links and links that leave the directory are problems.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

JOB_SUFFIXES = (".hcl", ".nomad")
VARS_SUFFIX = ".vars.hcl"


def is_job_file(name: str) -> bool:
    """`*.hcl`, `*.nomad`, `*.nomad.hcl`. Var files (`*.vars.hcl`) are not job files, nor are
    dot files (vim's `.x.hcl.swp`, emacs' `.#x.hcl` lock links, the `.x.hcl.tmp` of an atomic
    rename), `*~` backups and `#x.hcl#` autosaves."""
    if name.startswith((".", "#")) or name.endswith(("~", ".swp", ".tmp", VARS_SUFFIX)):
        return False
    return name.endswith(JOB_SUFFIXES)


def is_watched_file(name: str) -> bool:
    """A file whose change can change a job: a job file, a var file, or a file a job file
    reads (a template source, a file() input): anything but dot files and editor temporaries."""
    return not name.startswith((".", "#")) and not name.endswith(("~", ".swp", ".tmp"))


def vars_file_for(job_file: str) -> str:
    """The var file of a job file, beside it: web.nomad.hcl, web.hcl, web.nomad -> web.vars.hcl."""
    stem = job_file
    for suffix in (".nomad.hcl", ".hcl", ".nomad"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + VARS_SUFFIX


# What an entry that is not a regular file is, for its problem.
KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a Unix socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symlink",
}

# An entry as a scan sees it: its lstat, and for a symlink the stat of its target (or -errno).
# Any write, rename, chmod or re-pointed link changes it. Packed in bytes: one object of 81
# bytes where a tuple of six ints is seven objects of ~270 (a scan keeps one or two per file).
Key = bytes
_STAT = struct.Struct("<QQQqqq")
PLAIN = _STAT.size  # the length of a key that is not a symlink's


def _key(st: os.stat_result) -> Key:
    return _STAT.pack(st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns,
                      st.st_ctime_ns)  # fmt: skip


def _errno(e: OSError) -> Key:
    return struct.pack("<q", -(e.errno or 1))


def entry_key(entry: os.DirEntry[str]) -> Key:
    st = entry.stat(follow_symlinks=False)
    key = _key(st)
    if stat.S_ISLNK(st.st_mode):
        try:
            key += _key(os.stat(entry.path))
        except OSError as e:
            key += _errno(e)
    return key


def listing(root: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, Key | None]]:
    """Every entry whose name is `wanted`, in directory order, with its key (None: it
    vanished). Raises OSError when the directory itself cannot be read."""
    with os.scandir(root) as it:
        for entry in it:
            if not wanted(entry.name):
                continue
            try:
                yield entry.name, entry_key(entry)
            except FileNotFoundError:
                yield entry.name, None


def stat_entry(root: Path, name: str) -> Key | None:
    """One entry's key, as `listing` gives it; None when it does not exist."""
    path = os.path.join(root, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    key = _key(st)
    if stat.S_ISLNK(st.st_mode):
        try:
            key += _key(os.stat(path))
        except OSError as e:
            key += _errno(e)
    return key


class Journal:
    """The names of entries a watcher saw change since the loader last took them. Until a
    watcher is attached, after it may have missed events (`note_all`), and when a burst names
    more entries than are worth a stat each, the loader lists the whole directory instead."""

    MAX_NAMES = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._whole = True
        self.attached = False
        self.notes = 0  # counts every note: what `settled` compares

    def attach(self) -> None:
        """A watcher runs: from now on every change is noted (or `note_all` says it may not be)."""
        with self._lock:
            self.attached, self._whole = True, True
            self.notes += 1

    def note(self, name: str) -> None:
        with self._lock:
            self.notes += 1
            if len(self._names) < self.MAX_NAMES:
                self._names.add(name)
            else:
                self._whole = True

    def note_all(self) -> None:
        with self._lock:
            self._whole = True
            self.notes += 1

    def take(self) -> set[str] | None:
        """The names noted since the last take, or None: list everything."""
        with self._lock:
            names, whole = self._names, self._whole or not self.attached
            self._names, self._whole = set(), False
        return None if whole else names


class Refused(Exception):
    """An entry that is not read: the message says what it is, or why."""


def read(root: Path, name: str, limit: int) -> bytes:
    """At most `limit + 1` bytes of the regular file `name` in `root`; raises Refused."""
    try:
        dir_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise Refused(f"cannot read: {e.strerror or e}") from None
    try:
        fd = _open_path(dir_fd, name, root)
        try:
            return _read_regular(fd, limit)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def _open_path(dir_fd: int, name: str, root: Path) -> int:
    """An O_PATH fd of a regular file: the entry itself, or a symlink's target inside root."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise Refused("disappeared while being read") from None
    except OSError as e:
        raise Refused(f"cannot read: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISLNK(mode):
            os.close(fd)
            fd = -1
            fd = _follow(dir_fd, name, root)
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise Refused(f"symlink to {_kind(mode)}, not a file; skipped")
        elif not stat.S_ISREG(mode):
            raise Refused(f"is {_kind(mode)}, not a file; skipped")
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _follow(dir_fd: int, name: str, root: Path) -> int:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError as e:
        raise Refused(f"cannot read the symlink: {e.strerror or e}") from None
    try:
        fd = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(f"symlink loop (-> {target}); skipped") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise Refused(
                f"dangling symlink (-> {target}, which does not exist); skipped"
            ) from None
        raise Refused(f"cannot follow the symlink (-> {target}): {e.strerror or e}") from None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        top = os.readlink(f"/proc/self/fd/{dir_fd}")
    except OSError:  # no /proc: the path the kernel resolved cannot be checked
        real, top = os.path.realpath(os.path.join(root, name)), os.path.realpath(root)
    if os.path.commonpath([real, top]) != top:
        os.close(fd)
        raise Refused(f"symlink points outside {root} (to {real}); refused")
    return fd


def _read_regular(path_fd: int, limit: int) -> bytes:
    checked = os.fstat(path_fd)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(f"/proc/self/fd/{path_fd}", flags)
    except FileNotFoundError:
        raise Refused("cannot read: /proc is not mounted") from None
    except OSError as e:
        raise Refused(f"cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
            checked.st_dev,
            checked.st_ino,
        ):
            raise Refused("changed while being read")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise Refused(f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), f"an entry of type {stat.S_IFMT(mode):o}")
