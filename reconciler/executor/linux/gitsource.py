"""`git::` artifact sources, as go-getter's git getter: `ref` and `depth` options, cloned with the
host's git into the root-only staging dir, then placed like an archive's members.

Only http(s) remotes are fetched: the service runs git as root, so a `file://` or local path
would read the host's repositories, and an ssh remote would use root's keys. Links in the
checkout refuse the artifact, as links in archives do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from reconciler.executor.linux import unpack

GIT_OPTIONS = ("ref", "depth", "sshkey")


class GitFailed(Exception):
    pass


def clone(url: str, dest: Path, timeout: float, cancel: threading.Event) -> None:
    """Clone `url` (with go-getter's `ref`/`depth` in its query) into `dest`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise GitFailed(f"git remotes must be https:// or http:// on this node, not {url!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "sshkey" in query:
        raise GitFailed("the sshkey option is not supported (https remotes only)")
    ref, depth = query.pop("ref", ""), query.pop("depth", "")
    if depth and not depth.isdigit():
        raise GitFailed(f"depth must be a whole number, not {depth!r}")
    remote = urlunsplit(parts._replace(query=urlencode(query)))
    git = shutil.which("git")
    if git is None:
        raise GitFailed("download not supported for scheme 'git' (git is not installed)")
    base = [git, "-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
            "-c", "protocol.http.allow=always", "-c", "core.hooksPath=/dev/null"]  # fmt: skip
    argv = [*base, "clone", "--quiet", "--no-recurse-submodules"]
    if depth:
        argv += ["--depth", depth] + (["--branch", ref] if ref else [])
    _run([*argv, "--", remote, str(dest)], dest.parent, timeout, cancel)
    if ref and not depth:
        _run([*base, "-C", str(dest), "checkout", "--quiet", ref, "--"], dest.parent, timeout,
             cancel)  # fmt: skip


def _run(argv: list[str], home: Path, timeout: float, cancel: threading.Event) -> None:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "GIT_TERMINAL_PROMPT": "0",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_ASKPASS": "/bin/false", "LC_ALL": "C"}  # fmt: skip
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, cwd=home)  # fmt: skip
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            try:
                out, _ = p.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if cancel.is_set():
                    raise GitFailed("cancelled: the task's group instance is gone") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise GitFailed(
                        f"git did not finish within git_timeout ({timeout:g}s)"
                    ) from None
    finally:
        if p.poll() is None:
            p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
    if p.returncode != 0:
        text = out.decode(errors="replace").strip().splitlines()
        raise GitFailed(f"git exited with {p.returncode}: {text[-1] if text else ''}")


def members(root: Path) -> list[unpack.Member]:
    """The checkout as archive members (`.git` included, as go-getter keeps it); a link or
    any other special file refuses the whole artifact."""
    out: list[unpack.Member] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise unpack.Refused(f"entry is a link, which artifacts may not hold: {rel}")
            if stat.S_ISDIR(st.st_mode):
                out.append(unpack.Member(rel, True, 0o755, 0, _no_data))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o100 else 0o644
                out.append(unpack.Member(rel, False, mode, st.st_size, _reader(path)))
            else:
                raise unpack.Refused(f"entry is a device, FIFO or other special file: {rel}")
    out.sort(key=lambda m: m.name.count("/"))  # parents before what they hold
    return out


def _no_data() -> contextlib.AbstractContextManager[IO[bytes]]:
    raise unpack.Refused("a directory has no data")


def _reader(path: Path) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:
    def opener() -> contextlib.AbstractContextManager[IO[bytes]]:
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")

    return opener
