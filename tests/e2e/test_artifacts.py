"""Artifacts for real: a local HTTP server (127.0.0.1, a free port) serves archives and a
script; they are fetched in the background, unpacked into local/ and run by the task; bad
checksums and hostile archives fail, and nothing lands outside the task's directories."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.executor.base import ArtifactError, TaskConfig
from reconciler.executor.linux.cleanup import teardown
from reconciler.executor.linux.executor import LinuxExecutor
from reconciler.taskconfig import fetchable
from tests.e2e.conftest import logs, sh
from tests.e2e.service import ServiceProc

SCRIPT = b"#!/bin/sh\necho hello from the artifact\n"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    t.join(10)


def tar_gz(path: Path, members: list[tuple[str, bytes | str, int]]) -> str:
    """A .tar.gz of (name, data or "->target" for a symlink or "=>target" for a hard link,
    mode); returns its sha256."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if isinstance(data, str):
                info.type = tarfile.SYMTYPE if data.startswith("->") else tarfile.LNKTYPE
                info.linkname = data[2:]
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(ex: LinuxExecutor, config: TaskConfig, timeout: float = 30) -> str:
    """Start a download and wait for its callback; returns the next answer ("ready")."""
    ended = threading.Event()
    state = ex.fetch_artifacts(config, lambda _tid: ended.set())
    if state == "ready":
        return state
    assert state == "started"
    assert ended.wait(timeout), "the download never ended"
    return ex.fetch_artifacts(config, lambda _tid: None)


def test_tar_gz_and_script_are_fetched_unpacked_and_run(
    served: tuple[Path, str], make_executor: Callable[..., LinuxExecutor]
) -> None:
    www, url = served
    digest = tar_gz(www / "app.tar.gz", [("bin/run.sh", b"#!/bin/sh\necho unpacked ok\n", 0o4755)])
    (www / "hello.sh").write_bytes(SCRIPT)
    ex = make_executor()
    arts = (
        fetchable(f"{url}/app.tar.gz?checksum=sha256:{digest}", "local/", key="k1"),
        fetchable(f"{url}/hello.sh", "local/scripts", key="k2"),
        fetchable(f"{url}/hello.sh", "/alloc/data/", key="k3"),
    )
    cfg = sh("/local/bin/run.sh && sh /local/scripts/hello.sh && cat /alloc/data/hello.sh",
             artifacts=arts)  # fmt: skip
    assert fetch(ex, cfg) == "ready"
    local = ex.dirs("j/g/0", "t").local
    assert (local / "bin/run.sh").stat().st_mode & 0o7777 == 0o755  # setuid stripped
    h = ex.start(cfg)
    assert ex.wait(h, 30) is not None
    out = logs(ex, h)
    assert out == "unpacked ok\nhello from the artifact\n" + SCRIPT.decode()
    # remembered: the task's next start does not download again
    assert ex.fetch_artifacts(cfg, lambda _tid: None) == "ready"
    ex.destroy(h, force=True)


def test_wrong_checksum_and_file_scheme_fail_like_nomad(
    served: tuple[Path, str], make_executor: Callable[..., LinuxExecutor]
) -> None:
    www, url = served
    (www / "hello.sh").write_bytes(SCRIPT)
    ex = make_executor()
    bad = sh("true", artifacts=(fetchable(f"{url}/hello.sh?checksum=md5:{'0' * 32}", "local/",
                                         key="bad"),))  # fmt: skip
    with pytest.raises(ArtifactError, match=r"Checksums did not match for hello\.sh"):
        fetch(ex, bad)
    assert not (ex.dirs("j/g/0", "t").local / "hello.sh").exists()
    gone = sh("true", task_id="j/g/1/t", artifacts=(fetchable(f"{url}/nope.sh", "local/", key="n"),))
    with pytest.raises(ArtifactError, match="bad response code: 404"):
        fetch(ex, gone)
    local_file = sh("true", task_id="j/g/2/t",
                    artifacts=(fetchable("file:///etc/hostname", "local/", key="f"),))  # fmt: skip
    with pytest.raises(ArtifactError, match="download not supported for scheme 'file'"):
        fetch(ex, local_file)
    path_only = sh(
        "true", task_id="j/g/3/t", artifacts=(fetchable("/etc/hostname", "local/", key="p"),)
    )
    with pytest.raises(ArtifactError, match="download not supported for scheme 'file'"):
        fetch(ex, path_only)


@pytest.mark.parametrize(
    ("members", "error"),
    [
        ([("../../../../../../../../../SENTINEL", b"pwned", 0o644)], "entry contains '..'"),
        ([("SENTINEL_ABS", b"pwned", 0o644)], "absolute name"),
        ([("link", "->SENTINEL", 0o777), ("link", b"pwned", 0o644)], "is a link"),
        ([("hard", "=>SENTINEL", 0o644)], "is a link"),
    ],
)
def test_malicious_archive_is_refused_and_nothing_escapes(
    served: tuple[Path, str], make_executor: Callable[..., LinuxExecutor], tmp_path: Path,
    members: list[tuple[str, bytes | str, int]], error: str,
) -> None:  # fmt: skip
    www, url = served
    sentinel = tmp_path / "sentinel"  # root's, outside the data dir
    sentinel.write_text("root's own")
    os.chmod(sentinel, 0o644)
    real = [(n.replace("SENTINEL_ABS", str(sentinel)).replace("SENTINEL", str(sentinel).lstrip("/")),
             d.replace("SENTINEL", str(sentinel)) if isinstance(d, str) else d, m)
            for n, d, m in [("ok.txt", b"fine", 0o644), *members]]  # fmt: skip
    tar_gz(www / "evil.tar.gz", real)
    ex = make_executor()
    cfg = sh("true", artifacts=(fetchable(f"{url}/evil.tar.gz", "local/", key="evil"),))
    with pytest.raises(ArtifactError, match=error):
        fetch(ex, cfg)
    assert sentinel.read_text() == "root's own"
    dirs = ex.dirs("j/g/0", "t")
    assert list(dirs.local.iterdir()) == []  # refused whole: not even ok.txt
    assert not [p for p in ex.data_dir.rglob("*") if p.name in ("link", "hard", "ok.txt")]


def test_service_downloads_then_starts_and_records_failures(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    www, url = served
    digest = tar_gz(
        www / "app.tgz",
        [("run.sh", b"#!/bin/sh\necho service artifact ok\nexec sleep 1000\n", 0o755)],
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    svc = ServiceProc(jobs, tmp_path / "data")
    good = f"""
job "good" {{
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{ command = "/local/run.sh" }}
      artifact {{
        source = "{url}/app.tgz"
        options {{ checksum = "sha256:{digest}" }}
      }}
      resources {{ memory = 32 }}
    }}
  }}
}}
"""
    bad = good.replace('job "good"', 'job "bad"').replace(digest, "0" * 64)
    try:
        svc.start()
        (jobs / "good.hcl").write_text(good)
        (jobs / "bad.hcl").write_text(bad)
        svc.wait(lambda: svc.states("good") == {"good/g/0/t": "running"}, 60, "good running")
        log = svc.data / "allocs/good/g/0/alloc/logs/t.stdout.0"
        svc.wait(lambda: "service artifact ok" in log.read_text(), 30, "the script's output")

        def events(job: str) -> list[str]:
            return [r[0] for r in svc.query(
                "SELECT type FROM task_events WHERE job_id = ? ORDER BY id", job)]  # fmt: skip

        assert "Downloading Artifacts" in events("good")
        svc.wait(lambda: "Failed Artifact Download" in events("bad"), 60, "the failed download")
        history = svc.cli("history", "bad").stdout
        assert "Failed Artifact Download" in history or "Checksums did not match" in history
    finally:
        if svc.proc and svc.proc.poll() is None:
            svc.kill()
        teardown(svc.data)


def _git(*args: str, cwd: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_source_is_cloned_at_its_ref(
    served: tuple[Path, str], make_executor: Callable[..., LinuxExecutor], tmp_path: Path
) -> None:
    www, url = served
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "run.sh").write_text("echo v1\n")
    _git("add", ".", cwd=work)
    _git("commit", "-qm", "v1", cwd=work)
    _git("tag", "v1", cwd=work)
    (work / "run.sh").write_text("echo v2\n")
    _git("commit", "-qam", "v2", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(www / "repo.git"), cwd=tmp_path)
    _git("update-server-info", cwd=www / "repo.git")  # served as plain files (dumb http)
    ex = make_executor()
    cfg = sh("sh /local/src/run.sh", artifacts=(
        fetchable(f"git::{url}/repo.git?ref=v1", "local/src", key="g1"),))  # fmt: skip
    assert fetch(ex, cfg, 60) == "ready"
    assert (ex.dirs("j/g/0", "t").local / "src/run.sh").read_text() == "echo v1\n"
    h = ex.start(cfg)
    assert ex.wait(h, 30) is not None
    assert logs(ex, h) == "v1\n"
    ex.destroy(h, force=True)
    local_repo = sh("true", task_id="j/g/1/t",
                    artifacts=(fetchable(f"git::file://{work}", "local/", key="g2"),))  # fmt: skip
    with pytest.raises(ArtifactError, match="https:// or http://"):
        fetch(ex, local_repo)
