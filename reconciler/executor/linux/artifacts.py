"""Artifacts: a task's `artifact` blocks fetched like Nomad's artifact hook and go-getter, on
background threads so that a slow download never holds up a reconcile pass.

Each download lands in a root-only staging directory inside the task dir (`tasks/T/` is the
service's own and never mounted into the task), its checksum is verified there, and only then
is it placed beneath the destination through safefs: a file, or an archive's checked members
(see unpack.py). What was fetched is remembered in `tasks/T/artifacts.done` by each
artifact's digest, so a restart of the task or of the service does not fetch again; a new
group instance (a fresh alloc dir) does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import pwd
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.executor.base import (
    Artifact,
    ArtifactError,
    FetchState,
    NodeConfig,
    TaskConfig,
)
from reconciler.executor.linux import rootfs, safefs

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger("reconciler")
FETCH_THREADS = 3  # Nomad fetches up to 3 artifacts at once
CONNECT_TIMEOUT = 30.0
DONE_FILE = "artifacts.done"


class Failed(Exception):
    """One artifact could not be fetched; the message is go-getter's or close to it."""


@dataclass
class _Fetch:
    alloc_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    error: str = ""


def destination(dirs: rootfs.TaskDirs, dest: str) -> tuple[Path, str]:
    """(base directory, path beneath it, "" for the base itself) for an artifact destination,
    relative to the task dir as in Nomad: `local/`, `tmp/` and `alloc/` (also `../alloc/` and
    `${NOMAD_ALLOC_DIR}`) name those directories; other paths inside the task dir land in
    `local/`, as template destinations do."""
    joined = posixpath.normpath(posixpath.join("/a/task", dest.lstrip("/")))
    if not joined.startswith("/a/"):
        raise Failed("destination escapes allocation directory")
    parts = joined.split("/")[2:]  # below the alloc dir: ["task", ...] or ["alloc", ...]
    if parts[:2] == ["task", "alloc"]:
        parts = parts[1:]  # the task dir's alloc/ is the group's shared one
    if parts[:1] == ["alloc"]:
        if parts[1:2] == ["logs"]:
            raise Failed("destination alloc/logs/ is the service's (task logs)")
        return dirs.alloc / "alloc", "/".join(parts[1:])
    if parts[:1] != ["task"]:
        raise Failed("destination escapes the task's directories")
    parts = parts[1:]
    if parts[:1] == ["secrets"]:
        raise Failed("destination secrets/ is not supported (use a template)")
    if parts[:1] in (["local"], ["tmp"]):
        return dirs.task / parts[0], "/".join(parts[1:])
    return dirs.local, "/".join(parts)


class Fetcher:
    """Downloads for every task of the node: a few threads, one fetch per task at a time."""

    def __init__(self, node: NodeConfig, dirs_of: Callable[[str, str], rootfs.TaskDirs]) -> None:
        self.node = node
        self.dirs_of = dirs_of
        self._pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="artifact")
        self._lock = threading.Lock()
        self._placing = threading.Lock()  # held while the task's directories are written
        self._fetches: dict[str, _Fetch] = {}
        self._http: urllib3.PoolManager | None = None
        self._http_insecure: urllib3.PoolManager | None = None

    def fetch(self, config: TaskConfig, done: Callable[[str], None]) -> FetchState:
        with self._lock:
            f = self._fetches.get(config.id)
            if f is not None and not f.finished:
                return "fetching"
            if f is not None:
                del self._fetches[config.id]
                if f.error:
                    raise ArtifactError(f.error)
        alloc_id, _, task = config.id.rpartition("/")
        dirs = self.dirs_of(alloc_id, task)
        have = fetched(dirs)
        todo = [a for a in config.artifacts if a.key not in have]
        if not todo:
            return "ready"
        f = _Fetch(alloc_id)
        with self._lock:
            self._fetches[config.id] = f
        self._pool.submit(self._run, f, config, dirs, todo, done)
        return "started"

    def cancel(self, alloc_id: str) -> None:
        """The group instance is going away: stop its downloads before its directories go."""
        with self._lock:
            for tid, f in list(self._fetches.items()):
                if f.alloc_id == alloc_id:
                    f.cancel.set()
                    del self._fetches[tid]
        with self._placing:
            pass  # a placement under way ends before the caller removes the directories

    def _run(self, f: _Fetch, config: TaskConfig, dirs: rootfs.TaskDirs, todo: list[Artifact],
             done: Callable[[str], None]) -> None:  # fmt: skip
        try:
            owner = _owner(config.user) if any(a.chown for a in todo) else None
            for a in todo:
                if f.cancel.is_set():
                    return
                try:
                    self._one(a, dirs, owner if a.chown else None, f.cancel)
                except Failed as e:
                    f.error = f'failed to download artifact "{a.source}": {e}'
                    return
                except Exception as e:  # never lose a thread's failure
                    log.exception("fetching artifact %s for %s", a.source, config.id)
                    f.error = f'failed to download artifact "{a.source}": {e}'
                    return
        except Failed as e:
            f.error = str(e)
        finally:
            f.finished = True
            if not f.cancel.is_set():
                try:
                    done(config.id)
                except Exception:
                    log.exception("artifact completion of %s", config.id)

    # ---- one artifact ----

    def _one(self, a: Artifact, dirs: rootfs.TaskDirs, owner: tuple[int, int] | None,
             cancel: threading.Event) -> None:  # fmt: skip
        if a.problem:
            raise Failed(a.problem)
        if a.getter not in ("http", "https", "git"):
            raise Failed(f"download not supported for scheme '{a.getter}'")
        if a.getter == "git" and a.checksum:
            raise Failed("checksum cannot be specified for directory download")
        with self._placing:
            if cancel.is_set():
                return
            try:
                rootfs.prepare(dirs, self.node.chroot_env)
            except (safefs.UnsafePath, OSError) as e:
                raise Failed(f"building the task directory: {e}") from None
            for stale in dirs.task.glob("artifact-*.tmp"):  # the service stopped mid-download
                shutil.rmtree(stale, ignore_errors=True)
            staging = dirs.task / f"artifact-{secrets.token_hex(4)}.tmp"
            staging.mkdir(mode=0o700)
        try:
            if a.getter == "git":
                self._git(a, dirs, staging / "repo", owner, cancel)
                remember(dirs, a.key)
                return
            download = staging / "download"
            self._http_get(a, download, cancel)
            if a.checksum:
                _verify(download, a.checksum, posixpath.basename(a.path))
            with self._placing:
                if cancel.is_set():
                    return
                self._place(a, dirs, download, owner)
            remember(dirs, a.key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _git(self, a: Artifact, dirs: rootfs.TaskDirs, repo: Path,
             owner: tuple[int, int] | None, cancel: threading.Event) -> None:  # fmt: skip
        from reconciler.executor.linux import gitsource, unpack

        if a.mode == "file":
            raise Failed('mode "file" cannot hold a git checkout')
        try:
            gitsource.clone(a.url, repo, self.node.artifact_git_timeout, cancel)
        except gitsource.GitFailed as e:
            raise Failed(str(e)) from None
        with self._placing:
            if cancel.is_set():
                return
            base_path, rel = destination(dirs, a.destination)
            base = safefs.open_base(str(base_path))
            try:
                unpack.place_tree(gitsource.members(repo), base, rel, owner, unpack.Limits())
            except unpack.Refused as e:
                raise Failed(str(e)) from None
            except safefs.UnsafePath as e:
                raise Failed(f"refused to write {e.filename}: {e.strerror}") from None
            finally:
                os.close(base)

    def _pool_for(self, insecure: bool) -> urllib3.PoolManager:
        import urllib3  # on the first http download: ~12 MB the service needs only then

        if insecure:
            if self._http_insecure is None:  # the artifact's own `insecure = true`
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                self._http_insecure = urllib3.PoolManager(cert_reqs="CERT_NONE")
            return self._http_insecure
        if self._http is None:
            self._http = urllib3.PoolManager()
        return self._http

    def _http_get(self, a: Artifact, path: Path, cancel: threading.Event) -> None:
        if a.path.endswith("/") and a.mode != "file":
            raise Failed("a source ending in / names a directory, which http cannot fetch")
        read = self.node.artifact_read_timeout or None  # Nomad: the whole download's deadline
        limit = self.node.artifact_max_size
        started = time.monotonic()
        import urllib3

        try:
            r = self._pool_for(a.insecure).request(
                "GET", a.url, headers=dict(a.headers), preload_content=False,
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=read),
                retries=urllib3.Retry(total=3, connect=3, read=0, status=0, redirect=10),
            )  # fmt: skip
        except urllib3.exceptions.HTTPError as e:
            raise Failed(f"GET {a.url}: {_reason(e)}") from None
        try:
            if r.status not in (200, 206):
                raise Failed(f"bad response code: {r.status}")
            length = r.headers.get("Content-Length")
            if limit and length and length.isdigit() and int(length) > limit:
                raise Failed(f"download size {length} exceeds the node's http_max_size {limit}")
            size = 0
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in r.stream(1 << 16):
                    if cancel.is_set():
                        raise Failed("cancelled: the task's group instance is gone")
                    if read and time.monotonic() > started + read:
                        raise Failed(f"the download did not complete within http_read_timeout"
                                     f" ({read:g}s)")  # fmt: skip
                    size += len(chunk)
                    if limit and size > limit:
                        raise Failed(f"download exceeds the node's http_max_size {limit}")
                    out.write(chunk)
        except urllib3.exceptions.HTTPError as e:
            raise Failed(f"GET {a.url}: {_reason(e)}") from None
        finally:
            r.release_conn()

    def _place(self, a: Artifact, dirs: rootfs.TaskDirs, download: Path,
               owner: tuple[int, int] | None) -> None:  # fmt: skip
        from reconciler.executor.linux import unpack

        base_path, rel = destination(dirs, a.destination)
        kind = unpack.kind_of(a.path, a.archive)
        limits = unpack.Limits(self.node.artifact_decompression_size_limit,
                               self.node.artifact_decompression_file_count_limit)  # fmt: skip
        base = safefs.open_base(str(base_path))
        try:
            if kind in unpack.SINGLE:
                if a.mode != "file" or not rel:
                    raise Failed(f"{kind}-compressed files can only unarchive to a single file"
                                 ' (mode = "file")')  # fmt: skip
                unpack.decompress_file(str(download), kind, base, rel, owner, limits)
            elif kind:
                with unpack.members(str(download), kind, limits) as items:
                    if a.mode == "file":
                        if not rel:
                            raise Failed('mode "file" needs a destination file')
                        unpack.place_single(items, base, rel, owner, a.source)
                    else:
                        unpack.place_tree(items, base, rel, owner, limits)
            else:
                if a.mode == "dir":
                    raise Failed('mode "dir" needs an archive (or a git source)')
                if a.mode == "any":
                    name = a.filename or posixpath.basename(a.path)
                    if not name:
                        raise Failed("the source names no file")
                    rel = posixpath.join(rel, name) if rel else name
                elif not rel:
                    raise Failed('mode "file" needs a destination file')
                with open(download, "rb") as f:
                    safefs.write_stream(base, rel, f, 0o644, owner, owner)
        except unpack.Refused as e:
            raise Failed(str(e)) from None
        except safefs.UnsafePath as e:
            raise Failed(f"refused to write {e.filename}: {e.strerror}") from None
        except OSError as e:
            raise Failed(f"writing {a.destination}: {e.strerror or e}") from None
        finally:
            os.close(base)


def _owner(user: str) -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(user or "nobody")
    except KeyError:
        raise Failed(f'user "{user}" does not exist on this node') from None
    return pw.pw_uid, pw.pw_gid


def _reason(e: Exception) -> str:
    inner = getattr(e, "reason", None)
    return str(inner or e)


def _verify(path: Path, checksum: tuple[str, bytes], name: str) -> None:
    kind, want = checksum
    h = hashlib.new(kind)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.digest() != want:
        raise Failed(f"Checksums did not match for {name}. Expected: {want.hex()} "
                     f"Got: {h.hexdigest()}")  # fmt: skip


def fetched(dirs: rootfs.TaskDirs) -> frozenset[str]:
    """Digests of the artifacts this task dir already holds (the service's own file)."""
    try:
        return frozenset((dirs.task / DONE_FILE).read_text().split())
    except FileNotFoundError:
        return frozenset()


def remember(dirs: rootfs.TaskDirs, key: str) -> None:
    with open(dirs.task / DONE_FILE, "a") as f:
        f.write(key + "\n")
