"""reconciler next to its peers, same workload, one run, one table (root).

Peers: s6 (`s6-svscan` on a private scan dir), runit (`runsvdir` on a private service dir),
supervisord (PyPI `supervisor`, private config and socket). No system-wide supervisor is
started or touched; everything started here is stopped at the end.

Workload: a service is `sh -c 'date +%s%N > MARKER; exec sleep 100000'`; the marker's
timestamp is when the process exec'd. Definitions:
- pickup: the definition is written (plus whatever the peer needs to apply it) until the
  process has exec'd;
- restart: SIGKILL of the service until it exec'd again (reconciler: restart delay "0s"),
  `--samples` times for every peer, round the services picked up (runit: 3), each kill of a
  run at least 1.2 s old (runsv and s6-supervise wait 1 s before restarting a service that ran
  less than 1 s: the figure is the respawn, not that wait);
- stop: definition removed (plus apply) until the process is gone;
- up N: N definitions written at once (plus apply) until all N have exec'd, starting with
  nothing of the size before still running;
- stop all N: the N definitions removed (plus apply) until 20 of them (the first written) are
  gone;
- memory: with N services, PSS of the supervisor's own process (reconciler's service, s6-svscan,
  runsvdir, supervisord), of each per-service helper (reconciler's shim, s6-supervise, runsv;
  supervisord has none), and the total of every process the supervisor runs besides the services;
- idle CPU: CPU time of those processes over 10 s, with N services.

    sudo .venv/bin/python bench/peers.py [--sizes 100,500,1000]     # or: make bench-peers
Writes bench/results/peers.md and bench/results/peers.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parents[1]))

from reconciler.executor.linux.cleanup import teardown
from reconciler.executor.linux.proc import pss_kb

RESULTS = Path(__file__).parent / "results"
SLEEP = "100000"
SETTLED_NS = 1_200_000_000  # past runsv's and s6-supervise's 1 s throttle


def now_ns() -> int:
    return time.time_ns()


def gone(pid: int | None) -> bool:
    try:
        return pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def wait(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.0005)
    return False


def all_started(peer: Peer, names: list[str]) -> Callable[[], bool]:
    """A check that reads each marker until it is there, not all of them every time: reading
    a thousand files every 0.5 ms would take a core from the peer being measured."""
    left = list(names)

    def check() -> bool:
        while left and peer.started_ns(left[-1]) is not None:
            left.pop()
        return not left

    return check


class Peer:
    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root / self.name
        self.root.mkdir(parents=True)
        self.markers = self.root / "markers"
        self.markers.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    def script(self, svc: str) -> str:
        return f"date +%s%N > {self.marker(svc)}; exec sleep {SLEEP}"

    def marker(self, svc: str) -> Path:
        return self.markers / svc

    def started_ns(self, svc: str) -> int | None:
        try:
            text = self.marker(svc).read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def service_pid(self, svc: str) -> int | None:
        for p in self.tree():
            try:
                if p.cmdline()[:2] == ["sleep", SLEEP] and self._owns(p, svc):
                    return int(p.pid)
            except psutil.Error:
                continue
        return None

    def _owns(self, p: psutil.Process, svc: str) -> bool:
        """runsv and s6-supervise run a service in its own directory. (Any sleep would do
        for none: a restart sample would kill one service and wait for another's marker.)"""
        return Path(p.cwd()).name == svc

    def services_left(self) -> bool:
        """Whether any service process (not the anchor) still runs under the supervisor."""
        for p in self.tree():
            try:
                if p.cmdline()[:2] == ["sleep", SLEEP]:
                    return True
            except psutil.Error:
                continue
        return False

    def tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def overhead(self) -> tuple[int, int, int, float]:
        """(PSS kB of the supervisor's own process, PSS kB of its other processes, how many
        of those, CPU seconds of all of them), leaving out the services themselves."""
        own, helpers, count, cpu = 0, 0, 0, 0.0
        for p in self.tree():
            try:
                if p.cmdline()[:2] == ["sleep", SLEEP]:
                    continue
                pss = pss_kb(p.pid)
                cpu += sum(p.cpu_times()[:2])
            except (psutil.Error, OSError):
                continue
            if self.proc is not None and p.pid == self.proc.pid:
                own += pss
            else:
                helpers, count = helpers + pss, count + 1
        return own, helpers, count, cpu

    def service_dir(self, svc: str, into: Path) -> None:
        """An s6/runit service directory with a `run` script, moved in atomically."""
        d = self.root / f".{svc}"
        d.mkdir()
        (d / "run").write_text(f"#!/bin/sh\n{self.script(svc)}\n")
        (d / "run").chmod(0o755)
        d.rename(into / svc)

    def add(self, svcs: list[str]) -> None: ...
    def remove(self, svcs: list[str]) -> None: ...
    def start(self) -> None: ...

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class S6(Peer):
    name = "s6"

    def start(self) -> None:
        self.scan = self.root / "scan"
        self.scan.mkdir()
        self.proc = subprocess.Popen(["s6-svscan", "-c", "4096", str(self.scan)], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.2)

    def add(self, svcs: list[str]) -> None:
        for s in svcs:
            self.service_dir(s, self.scan)
        subprocess.run(["s6-svscanctl", "-a", str(self.scan)], check=True)

    def remove(self, svcs: list[str]) -> None:
        for s in svcs:
            subprocess.run(["s6-svc", "-d", str(self.scan / s)], check=False)
            shutil.rmtree(self.scan / s, ignore_errors=True)
        subprocess.run(["s6-svscanctl", "-an", str(self.scan)], check=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(["s6-svscanctl", "-t", str(self.scan)], check=False)
            if self.proc.wait(10) is None:
                super().stop()


class Runit(Peer):
    name = "runit"

    def start(self) -> None:
        self.svdir = self.root / "service"
        self.svdir.mkdir()
        self.proc = subprocess.Popen(["runsvdir", "-P", str(self.svdir)], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.2)

    def add(self, svcs: list[str]) -> None:
        for s in svcs:
            self.service_dir(s, self.svdir)

    def remove(self, svcs: list[str]) -> None:
        for s in svcs:
            shutil.rmtree(self.svdir / s, ignore_errors=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)  # runsvdir: stop every runsv and its service
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                super().stop()
        for p in psutil.process_iter():
            try:
                if p.cmdline()[:1] == ["runsv"] and str(self.svdir) in (p.cwd() or ""):
                    p.kill()
            except psutil.Error:
                continue


class Supervisord(Peer):
    name = "supervisord"
    BIN = Path(sys.executable).parent

    def start(self) -> None:
        self.conf = self.root / "supervisord.conf"
        (self.root / "conf.d").mkdir()
        sock = self.root / "s.sock"
        self.conf.write_text(
            f"[unix_http_server]\nfile={sock}\n[supervisord]\nlogfile={self.root}/sd.log\n"
            f"pidfile={self.root}/sd.pid\nnodaemon=true\nminfds=1024\n"
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
            "supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[supervisorctl]\nserverurl=unix://{sock}\n[include]\nfiles={self.root}/conf.d/*.conf\n"
        )
        self.proc = subprocess.Popen([str(self.BIN / "supervisord"), "-c", str(self.conf)],
                                     start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        wait(sock.exists, 10)
        time.sleep(0.3)

    def _update(self) -> None:
        subprocess.run([str(self.BIN / "supervisorctl"), "-c", str(self.conf), "update"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def add(self, svcs: list[str]) -> None:
        for s in svcs:
            (self.root / "conf.d" / f"{s}.conf").write_text(
                f"[program:{s}]\ncommand=/bin/sh -c '{self.script(s).replace('%', '%%')}'\nautorestart=true\n"
                "startsecs=0\nstopsignal=KILL\n"
            )
        self._update()

    def remove(self, svcs: list[str]) -> None:
        for s in svcs:
            (self.root / "conf.d" / f"{s}.conf").unlink()
        self._update()

    def _owns(self, p: psutil.Process, svc: str) -> bool:
        return p.environ().get("SUPERVISOR_PROCESS_NAME") == svc


JOB = """job "{s}" {{
  group "g" {{
    restart {{
      attempts = 1000
      delay    = "0s"
    }}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "date +%s%N > /alloc/data/marker; exec sleep {sleep}"]
      }}
      kill_signal = "SIGKILL"
      resources {{
        cpu    = 1  # Nomad's minimum: 1,000 tasks fit the node (admission counts MHz)
        memory = 16
      }}
      logs {{
        max_files     = 1
        max_file_size = 1
      }}
    }}
  }}
}}
"""


class Reconciler(Peer):
    name = "reconciler"

    def start(self) -> None:
        self.jobs = self.root / "jobs"
        self.jobs.mkdir()
        self.data = self.root / "data"
        (self.jobs / "anchor.hcl").write_text(JOB.format(s="anchor", sleep="99999"))
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "reconciler"), "run", "--jobs", str(self.jobs),
             "--data-dir", str(self.data)],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait(lambda: (self.data / "control.sock").exists(), 30)
        time.sleep(1)

    def marker(self, svc: str) -> Path:
        return self.data / "allocs" / svc / "g" / "0" / "alloc" / "data" / "marker"

    def add(self, svcs: list[str]) -> None:
        for s in svcs:
            tmp = self.jobs / f".{s}.tmp"
            tmp.write_text(JOB.format(s=s, sleep=SLEEP))
            tmp.rename(self.jobs / f"{s}.hcl")

    def remove(self, svcs: list[str]) -> None:
        for s in svcs:
            (self.jobs / f"{s}.hcl").unlink()

    def _owns(self, p: psutil.Process, svc: str) -> bool:
        with open(f"/proc/{p.pid}/cgroup") as f:
            return f"/{svc}.g.0.t." in f.read()

    def stop(self) -> None:
        super().stop()
        teardown(self.data)


def measure(peer: Peer, sizes: list[int], samples: int) -> dict[str, object]:
    out: dict[str, object] = {}
    peer.start()
    try:
        lat, restart, stop = [], [], []
        # runsvdir looks for new services every 5 s: each runit pickup costs up to 5 s, so it
        # gets 3 (and 3 services); restarts go round the services picked up, `samples` each peer
        n = 3 if isinstance(peer, Runit) else samples
        for i in range(n):
            svc = f"p{i}"
            t0 = now_ns()
            peer.add([svc])
            if not wait(lambda s=svc: peer.started_ns(s) is not None, 12):
                continue
            lat.append((peer.started_ns(svc) - t0) / 1e6)  # type: ignore[operator]
        running = [f"p{i}" for i in range(min(n, len(lat)))]
        for k in range(samples if running else 0):
            svc = running[k % len(running)]
            wait(lambda s=svc: peer.service_pid(s) is not None, 5)
            pid = peer.service_pid(svc)
            before = peer.started_ns(svc)
            if pid is None or before is None:
                continue
            # runsv and s6-supervise wait 1 s before restarting a service that ran less than
            # 1 s: kill only a run older than that, so each figure is the respawn, not the wait
            wait(lambda b=before: now_ns() - b >= SETTLED_NS, 5)
            t0 = now_ns()
            os.kill(pid, signal.SIGKILL)
            if wait(lambda s=svc, b=before: (peer.started_ns(s) or 0) > b, 10):
                restart.append((peer.started_ns(svc) - t0) / 1e6)  # type: ignore[operator]
        for i in range(min(n, len(lat))):
            svc = f"p{i}"
            pid = peer.service_pid(svc)
            t0 = time.monotonic()
            peer.remove([svc])
            if pid and wait(lambda p=pid: gone(p), 15):
                stop.append((time.monotonic() - t0) * 1000)
        out["pickup"], out["restart"], out["stop"] = lat, restart, stop
        done = 0
        for size in sizes:
            names = [f"n{size}-{i}" for i in range(size)]
            t0 = now_ns()
            peer.add(names)
            ok = wait(all_started(peer, names), 300)
            last = max((peer.started_ns(x) or 0) for x in names)
            out[f"up{size}"] = (last - t0) / 1e9 if ok else None
            time.sleep(12)  # past reconciler's min_healthy_time: nothing is due any more
            own, helpers, count, cpu0 = peer.overhead()
            time.sleep(10)
            *_, cpu1 = peer.overhead()
            out[f"own{size}"] = own
            out[f"helper{size}"] = round(helpers / count) if count else "-"
            out[f"pss{size}"] = own + helpers
            out[f"cpu{size}"] = (cpu1 - cpu0) / 10 * 100
            t0 = time.monotonic()
            pids = [peer.service_pid(x) for x in names[:20]]
            peer.remove(names)
            finished = wait(lambda ps=pids: all(gone(p) for p in ps), 90)
            out[f"down{size}"] = time.monotonic() - t0 if finished else None
            # the next size starts from nothing running, for every peer alike
            wait(lambda: not peer.services_left(), 120)
            done += size
    finally:
        peer.stop()
    return out


def fmt(v: object, unit: str = "") -> str:
    if v is None:
        return "timeout"
    if isinstance(v, list):
        return f"{statistics.median(v):.1f}" if v else "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,500,1000")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--peers", default="reconciler,s6,runit,supervisord")
    ap.add_argument("--supervisord-max", type=int, default=500,
                    help="supervisord's largest size: past 500 its `update` adds a few programs a "
                    "second, and 1,000 takes tens of minutes")  # fmt: skip
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    classes = {c.name: c for c in (Reconciler, S6, Runit, Supervisord)}
    missing = [n for n, b in (("s6", "s6-svscan"), ("runit", "runsvdir")) if not shutil.which(b)]
    if missing:
        sys.exit(f"install the peers first: apt-get install -y {' '.join(missing)}")
    results: dict[str, dict[str, object]] = {}
    root = Path(tempfile.mkdtemp(prefix="peers"))
    try:
        for name in args.peers.split(","):
            print(f"measuring {name} ...", flush=True)
            mine = [n for n in sizes if name != "supervisord" or n <= args.supervisord_max]
            results[name] = measure(classes[name](root), mine, args.samples)
            print(results[name], flush=True)  # a run cut short still leaves its figures
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [("pickup p50 (ms)", "pickup", ""), ("restart after SIGKILL p50 (ms)", "restart", ""),
            ("stop p50 (ms)", "stop", "")]  # fmt: skip
    for n in sizes:
        rows += [(f"up {n} (s)", f"up{n}", ""), (f"supervisor process PSS at {n} (kB)", f"own{n}", ""),
                 (f"per-service helper PSS at {n} (kB)", f"helper{n}", ""),
                 (f"total PSS at {n}: supervisor + helpers (kB)", f"pss{n}", ""),
                 (f"idle CPU at {n} (% core)", f"cpu{n}", ""), (f"stop all {n} (s)", f"down{n}", "")]  # fmt: skip
    names = list(results)
    head = (
        "| figure | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"reconciler/{p}" for p in names[1:])
        + " |"
    )
    lines = [head, "|" + "---|" * (1 + 2 * len(names) - 1)]
    for label, key, unit in rows:
        vals = [results[p].get(key) for p in names]
        cells = [
            fmt(v, unit) if key in results[p] else "not run"
            for v, p in zip(vals, names, strict=True)
        ]
        ours = vals[0]
        ratios = []
        for v in vals[1:]:
            a = statistics.median(ours) if isinstance(ours, list) and ours else ours
            b = statistics.median(v) if isinstance(v, list) and v else v
            ratios.append(
                f"{a / b:.2f}"
                if isinstance(a, int | float) and isinstance(b, int | float) and b
                else "-"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    cmd = "sudo .venv/bin/python bench/peers.py " + " ".join(sys.argv[1:])
    (RESULTS / "peers.md").write_text(f"# reconciler and its peers\n\n`{cmd}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                                      f"{os.cpu_count()} cores\n\n{table}\n")  # fmt: skip
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for ax, (label, key) in zip(axes, [("pickup p50 (ms)", "pickup"), ("restart p50 (ms)", "restart"),
                                           (f"total PSS at {sizes[-1]} (kB)", f"pss{sizes[-1]}")], strict=True):  # fmt: skip
            vals = []
            for p in names:
                v = results[p].get(key)
                vals.append(statistics.median(v) if isinstance(v, list) and v else (v or 0))
            ax.bar(names, vals, color=["#2a7" if p == "reconciler" else "#999" for p in names])
            ax.set_title(label)
            ax.set_yscale("log")
        fig.tight_layout()
        fig.savefig(RESULTS / "peers.png", dpi=90)
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)")


if __name__ == "__main__":
    main()
