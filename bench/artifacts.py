"""Artifact fetch figures (root): a .tar.gz of many small files and one large file over
loopback HTTP, fetched, checked and placed through safefs. Prints figures; never fails."""

from __future__ import annotations

import functools
import io
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from reconciler.executor.base import NodeConfig, TaskConfig
from reconciler.executor.linux.cleanup import teardown
from reconciler.executor.linux.executor import LinuxExecutor
from reconciler.taskconfig import fetchable


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def make_tar(path: Path, files: int, size: int) -> None:
    blob = os.urandom(size)
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for i in range(files):
            info = tarfile.TarInfo(f"d{i % 20}/f{i}")
            info.size = size
            tf.addfile(info, io.BytesIO(blob))


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = Path(tempfile.mkdtemp(prefix="rc-art-"))
    www = work / "www"
    www.mkdir()
    cases = {"many.tar.gz": (2000, 4096), "big.tar.gz": (1, 100 << 20)}
    for name, (n, size) in cases.items():
        make_tar(www / name, n, size)
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Quiet, directory=str(www)))  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    data = work / "data"
    ex = LinuxExecutor(data, NodeConfig())
    try:
        for i, (name, (n, size)) in enumerate(cases.items()):
            cfg = TaskConfig(id=f"bench/g/{i}/t", alloc_id=f"bench/g/{i}", command="/bin/true",
                             artifacts=(fetchable(f"{url}/{name}", "local/", key=name),))  # fmt: skip
            ended = threading.Event()
            t0 = time.perf_counter()
            state = ex.fetch_artifacts(cfg, lambda _t: ended.set())
            returned = time.perf_counter() - t0
            ended.wait(600)
            took = time.perf_counter() - t0
            final = ex.fetch_artifacts(cfg, lambda _t: None)
            mb = (www / name).stat().st_size / 1e6
            print(
                f"{name}: {n} files x {size} B ({mb:.1f} MB compressed): fetch_artifacts "
                f"returned {state!r} in {returned * 1e3:.2f} ms; placed in {took:.2f} s; "
                f"then {final!r}"
            )
    finally:
        server.shutdown()
        teardown(data)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
