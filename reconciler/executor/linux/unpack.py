"""Unpacking a downloaded artifact as go-getter does, with nothing of it trusted.

The type comes from the longest matching suffix of the source path (or `options { archive }`):
tar, tar.gz/tgz, tar.bz2/tbz2, tar.xz/txz and zip unpack into a directory; gz, bz2 and xz
decompress to one file. Every member is checked before the first one is placed: a name with
`..` or an absolute name, any link (Nomad disables symlinks in archives), a device, a FIFO or
another special file -- the whole artifact is refused. Limits count members and the bytes they
unpack to. Members are then written beneath the destination through safefs (no link followed,
O_EXCL temporaries, mode and owner set on the fd), with tarfile's `data` filter modes:
setuid, setgid, sticky and group/other write bits stripped.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import IO, Any, Literal

from reconciler.executor.linux import safefs

TAR_MODES: dict[str, Literal["r:", "r:gz", "r:bz2", "r:xz"]] = {
    "tar": "r:", "tar.gz": "r:gz", "tgz": "r:gz", "tar.bz2": "r:bz2", "tbz2": "r:bz2",
    "tar.xz": "r:xz", "txz": "r:xz",
}  # fmt: skip
# opened with `with` where they are used
SINGLE: dict[str, Callable[[str], Any]] = {
    "gz": lambda p: gzip.open(p, "rb"),  # noqa: SIM115
    "bz2": lambda p: bz2.open(p, "rb"),  # noqa: SIM115
    "xz": lambda p: lzma.open(p, "rb"),  # noqa: SIM115
}
KINDS = (*TAR_MODES, "zip", *SINGLE)
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}


class Refused(Exception):
    """The artifact is not unpacked; the message says why (names the member)."""


@dataclass(frozen=True)
class Limits:
    size: int = 0  # bytes all members unpack to (0: no limit)
    files: int = 0  # members (0: no limit)


@dataclass(frozen=True)
class Member:
    name: str  # normalised, relative, never empty for a file
    is_dir: bool
    mode: int
    size: int
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def kind_of(path: str, option: str) -> str:
    """The archive type, "" for none: go-getter's `archive` option ("false" turns unpacking
    off, a type name forces it), else the longest suffix of the source path."""
    if option:
        if option in _FALSE or option in _TRUE:
            return ""  # go-getter maps true to no decompressor as well
        return option if option in KINDS else ""
    best = ""
    for k in KINDS:
        if path.endswith("." + k) and len(k) > len(best):
            best = k
    return best


def check_name(name: str) -> str:
    """A member's name, normalised; refused when it could leave the destination."""
    if "\0" in name:
        raise Refused(f"entry has a NUL byte in its name: {name!r}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise Refused(f"entry has an absolute name: {name}")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise Refused(f"entry contains '..': {name}")
    return "/".join(p for p in parts if p not in ("", "."))


def _limit(count: int, total: int, limits: Limits, what: str) -> None:
    if limits.files and count > limits.files:
        raise Refused(f"{what} archive contains too many files: {count} > {limits.files}")
    if limits.size and total > limits.size:
        raise Refused(f"{what} archive larger than limit: {limits.size}")


def _tar_members(tf: tarfile.TarFile, limits: Limits) -> list[Member]:
    out: list[Member] = []
    count = total = 0
    for m in tf:
        count += 1
        _limit(count, total, limits, "tar")
        name = check_name(m.name)
        if m.issym() or m.islnk():
            raise Refused(
                f"entry is a link, which artifacts may not hold: {m.name} -> {m.linkname}"
            )
        if not (m.isreg() or m.isdir()):
            raise Refused(f"entry is a device, FIFO or other special file: {m.name}")
        try:
            safe = tarfile.data_filter(m, "/nonexistent/artifact")
        except tarfile.FilterError as e:
            raise Refused(f"entry refused: {e}") from None
        total += m.size
        _limit(count, total, limits, "tar")
        if not name:
            if m.isdir():
                continue
            raise Refused(f"entry names no file: {m.name!r}")

        def opener(m: tarfile.TarInfo = m) -> AbstractContextManager[IO[bytes]]:
            f = tf.extractfile(m)
            if f is None:
                raise Refused(f"entry has no data: {m.name}")
            return f

        mode = 0o755 if safe.mode is None else safe.mode
        out.append(Member(name, m.isdir(), mode, m.size, opener))
    if count == 0:
        raise Refused("empty archive")
    return out


def _zip_members(zf: zipfile.ZipFile, limits: Limits) -> list[Member]:
    out: list[Member] = []
    count = total = 0
    for info in zf.infolist():
        count += 1
        _limit(count, total, limits, "zip")
        name = check_name(info.filename)
        st_mode = info.external_attr >> 16
        if stat.S_ISLNK(st_mode):
            raise Refused(f"entry is a link, which artifacts may not hold: {info.filename}")
        kind = stat.S_IFMT(st_mode)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise Refused(f"entry is a device, FIFO or other special file: {info.filename}")
        total += info.file_size
        _limit(count, total, limits, "zip")
        is_dir = info.is_dir()
        if not name:
            if is_dir:
                continue
            raise Refused(f"entry names no file: {info.filename!r}")
        perms = stat.S_IMODE(st_mode) & 0o755 or (0o755 if is_dir else 0o644)
        if not is_dir:
            perms = (perms | 0o600) if perms & 0o100 else (perms & ~0o111) | 0o600

        def opener(i: zipfile.ZipInfo = info) -> AbstractContextManager[IO[bytes]]:
            return zf.open(i)

        out.append(Member(name, is_dir, perms, info.file_size, opener))
    if count == 0:
        raise Refused("empty archive")
    return out


@contextmanager
def members(path: str, kind: str, limits: Limits) -> Iterator[list[Member]]:
    """Every member of the archive at `path` (a root-only staging file), all checked."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                yield _zip_members(zf, limits)
        else:
            with tarfile.open(path, TAR_MODES[kind]) as tf:
                yield _tar_members(tf, limits)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, OSError) as e:
        if isinstance(e, safefs.UnsafePath):
            raise
        raise Refused(f"reading the {kind} archive: {e}") from None


def place_tree(
    items: list[Member], base: int, rel: str, owner: tuple[int, int] | None, limits: Limits
) -> int:  # fmt: skip
    """Write checked members beneath `rel` of the directory fd `base`; returns the count."""
    prefix = rel.strip("/")
    if prefix:
        os.close(safefs.ensure_dir(base, prefix, 0o755, owner))
    for m in items:
        target = posixpath.join(prefix, m.name) if prefix else m.name
        if m.is_dir:
            os.close(safefs.ensure_dir(base, target, m.mode, owner))
            continue
        with m.open() as src:
            safefs.write_stream(base, target, src, m.mode, owner, owner, limit=m.size or 1)
    return len(items)


def place_single(
    items: list[Member], base: int, rel: str, owner: tuple[int, int] | None, source: str
) -> None:  # fmt: skip
    """mode = "file" with an archive: it must hold exactly one file, which becomes `rel`."""
    files = [m for m in items if not m.is_dir]
    if len(files) != len(items) or len(files) != 1:
        raise Refused(f"expected a single file: {source}")
    with files[0].open() as src:
        safefs.write_stream(base, rel, src, files[0].mode, owner, owner)


def decompress_file(
    path: str, kind: str, base: int, rel: str, owner: tuple[int, int] | None, limits: Limits
) -> None:  # fmt: skip
    """gz, bz2 or xz to the one file `rel`, at most the decompression size limit."""
    try:
        with SINGLE[kind](path) as src:
            safefs.write_stream(base, rel, src, 0o644, owner, owner, limit=limits.size)
    except safefs.TooLarge:
        raise Refused(f"{kind} file larger than limit: {limits.size}") from None
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, ValueError) as e:
        raise Refused(f"reading the {kind} file: {e}") from None
    except OSError as e:
        if isinstance(e, safefs.UnsafePath):
            raise
        raise Refused(f"reading the {kind} file: {e}") from None
