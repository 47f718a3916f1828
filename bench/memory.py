"""Memory of a running `reconciler run` with 0, 100, 1,000 trivial tasks (root).

For each size: a fresh data dir and job dir with N one-task job files (`sleep`), the service
started as `reconciler run`, every task up, then a quiet spell; then the figures:
- service PSS / Private (kB): smaps_rollup of the service process alone;
- helpers PSS (kB): every other process of the service's tree that is not a task (shims);
- modules: which heavy third-party packages the service has imported (from a dump the
  service writes on SIGUSR1 when started with --trace).

    sudo .venv/bin/python bench/memory.py [--sizes 0,100,1000] [--trace] [--restart]
    sudo .venv/bin/python bench/memory.py --sequence [--sizes 100,500,1000] [--trace]

--sequence is bench/peers.py's order in one service lifetime: the service started on one
anchor job, ten pickups (a job added, its task killed once, the job removed), then for each
size N files added while it runs, every task up, PSS 12 s and 22 s later (peers.py takes its
figure at 12 s), the N files removed and their tasks gone, then the next size; and a restart
on the last size's files at the end. It shows what earlier bursts leave behind.

--distinct gives each task an env naming its job: no two job models are then equal (the
plain files give 1,000 equal job models, which share everything).
--restart also stops the service and starts it again on the same files and running tasks (its
steady state: tasks adopted, files answered from the parse cache) and gives its PSS then.
--trace starts the service under tracemalloc (which itself costs memory: use it for where
the bytes are, not for the PSS figure) and prints the top allocation sites by file:line and
the bytes per task between the two largest sizes.
Everything started is stopped at the end (tasks killed by their cgroups).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.peers import JOB as PEERS_JOB  # restart delay 0s, cpu 1: peers.py's very job
from reconciler.executor.linux.cleanup import teardown

SLEEP = "100000"
JOB = """job "{s}" {{
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo up > /alloc/data/marker; exec sleep {sleep}"]
      }}
      kill_signal = "SIGKILL"{env}
      resources {{
        cpu    = 2
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

# Runs the service exactly as `reconciler run` does, under tracemalloc, and writes the top
# allocation sites and the loaded heavy packages to DUMP on SIGUSR1.
TRACED = """
import os, signal, sys, tracemalloc
if os.environ.get("RECONCILER_BENCH_TRACE") == "1":
    tracemalloc.start(1)
dump = os.environ["RECONCILER_BENCH_DUMP"]
HEAVY = ("sqlalchemy", "alembic", "pyroute2", "prometheus_client", "cryptography", "hcl2",
         "lark", "pydantic", "typer", "rich", "watchdog", "croniter", "psutil", "yaml", "urllib3")
def _dump(*_):
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]) if tracemalloc.is_tracing() else None
    if snap is None:  # not traced: the allocators' own figures only
        with open(dump + ".tmp", "w") as f:
            f.write(f"pymalloc {_pymalloc()}\\n")
            f.write(f"glibc {_glibc()}\\n")
        os.rename(dump + ".tmp", dump)
        return
    with open(dump + ".tmp", "w") as f:
        f.write("modules " + " ".join(m for m in HEAVY if m in sys.modules) + "\\n")
        f.write(f"total {sum(s.size for s in snap.statistics('filename'))}\\n")
        f.write(f"pymalloc {_pymalloc()}\\n")
        for s in snap.statistics("lineno")[:400]:
            fr = s.traceback[0]
            f.write(f"{s.size} {s.count} {fr.filename}:{fr.lineno}\\n")
    os.rename(dump + ".tmp", dump)
def _glibc():
    # mallinfo2: the brk heap's bytes in use and free (what fragmentation keeps resident)
    import ctypes
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                    "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Info
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return "?"
    try:  # SQLite's own allocations (page caches, prepared statements): not traced
        lite = ctypes.CDLL("libsqlite3.so.0")
        lite.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite = f"; sqlite {lite.sqlite3_memory_used() // 1024} kB"
    except (OSError, AttributeError):
        sqlite = ""
    return (f"heap {m.arena // 1024} kB: in use {m.uordblks // 1024}, free {m.fordblks // 1024} "
            f"in {m.ordblks} chunks; mmapped {m.hblkhd // 1024} kB in {m.hblks}{sqlite}")
def _pymalloc():
    # sys._debugmallocstats() writes to the C stderr: caught in a file for its arena counts
    # (it prints nothing under tracemalloc, nor with PYTHONMALLOC=malloc).
    import tempfile
    with tempfile.TemporaryFile() as t:
        saved = os.dup(2)
        os.dup2(t.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        t.seek(0)
        lines = t.read().decode().splitlines()
    keep = ("# arenas allocated current", "# arenas highwater mark", "# bytes in allocated")
    return ", ".join(" ".join(l.split()).replace("# ", "") for l in lines if l.startswith(keep))
signal.signal(signal.SIGUSR1, _dump)
from reconciler.entry import main
sys.argv = ["reconciler", *sys.argv[1:]]
main()
"""


def regions(pid: int) -> dict[str, int]:
    """PSS kB of the service by kind of mapping: the brk heap, anonymous mappings (pymalloc's
    arenas, large blocks, thread stacks), files (python, libraries)."""
    out = {"heap": 0, "anon": 0, "files": 0}
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 6)
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                name = head[5].strip() if len(head) > 5 else ""
                kind = "heap" if name == "[heap]" else "files" if name.startswith("/") else "anon"
            elif head[0] == "Pss:":
                out[kind] += int(head[1])
    return out


def smaps(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def wait(pred: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def helpers_pss(service: int) -> tuple[int, int]:
    """(PSS kB, count) of the service's descendants that are not tasks."""
    total = n = 0
    for p in psutil.Process(service).children(recursive=True):
        try:
            if p.cmdline()[:2] == ["sleep", SLEEP]:
                continue
            total += smaps(p.pid)["Pss"]
            n += 1
        except (psutil.Error, OSError, KeyError):
            continue
    return total, n


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(size: int, trace: bool, root: Path, restart: bool = False,
            distinct: bool = False) -> dict[str, object]:  # fmt: skip
    jobs, data = root / "jobs", root / "data"
    jobs.mkdir()
    for i in range(size):
        env = f'\n      env {{ INSTANCE = "m{i}" }}' if distinct else ""
        (jobs / f"m{i}.hcl").write_text(JOB.format(s=f"m{i}", sleep=SLEEP, env=env))
    dump = root / "trace.txt"
    argv = ["run", "--jobs", str(jobs), "--data-dir", str(data)]
    if trace:
        cmd = [sys.executable, "-c", TRACED, *argv]
    else:
        cmd = [str(Path(sys.executable).parent / "reconciler"), *argv]
    env = dict(os.environ, RECONCILER_BENCH_DUMP=str(dump), RECONCILER_BENCH_TRACE="1")
    proc = start(cmd, env)
    out: dict[str, object] = {"size": size}
    try:
        markers = [data / "allocs" / f"m{i}" / "g" / "0" / "alloc" / "data" / "marker"
                   for i in range(size)]  # fmt: skip
        wait(lambda: (data / "control.sock").exists(), 60)
        t0 = time.monotonic()
        up = wait(lambda: all(m.exists() for m in markers), 300)
        out["up_s"] = round(time.monotonic() - t0, 2) if up else None
        time.sleep(12)  # past min_healthy_time: nothing is due any more
        r = smaps(proc.pid)
        out["pss_kb"] = r["Pss"]
        out["private_kb"] = r["Private_Clean"] + r["Private_Dirty"]
        out["helpers_pss_kb"], out["helpers"] = helpers_pss(proc.pid)
        cpu = psutil.Process(proc.pid).cpu_times()
        out["cpu_s"] = round(cpu.user + cpu.system, 2)
        if trace:
            proc.send_signal(signal.SIGUSR1)
            wait(dump.exists, 60)
            out["trace"] = dump.read_text()
        out["load"] = os.getloadavg()
        if restart:  # the same files and tasks: adopted, files answered from the parse cache
            stop(proc)
            proc = start(cmd, env)
            pid_file = data / "service.pid"
            wait(lambda: pid_file.exists() and pid_file.read_text().strip() == str(proc.pid), 60)
            time.sleep(15)
            out["restarted_pss_kb"] = smaps(proc.pid)["Pss"]
            if trace:
                dump.unlink()
                proc.send_signal(signal.SIGUSR1)
                wait(dump.exists, 60)
                out["restarted_trace"] = dump.read_text()
    finally:
        stop(proc)
        teardown(data)
    return out


def sequence_run(sizes: list[int], trace: bool, root: Path) -> None:
    """bench/peers.py's order in one service lifetime (see the module's doc)."""
    jobs, data = root / "jobs", root / "data"
    jobs.mkdir()

    def add(names: list[str]) -> None:
        for s in names:
            tmp = jobs / f".{s}.tmp"
            tmp.write_text(PEERS_JOB.format(s=s, sleep=SLEEP))
            tmp.rename(jobs / f"{s}.hcl")

    def marker(s: str) -> Path:
        return data / "allocs" / s / "g" / "0" / "alloc" / "data" / "marker"

    def tasks() -> list[psutil.Process]:
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [p for p in kids if _cmdline(p)[:2] == ["sleep", SLEEP]]

    def report(what: str) -> None:
        r, g = smaps(proc.pid), regions(proc.pid)
        cpu = psutil.Process(proc.pid).cpu_times()
        load = "/".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{what:>24}: service PSS {r['Pss']} kB (heap {g['heap']}, anon {g['anon']}, "
              f"files {g['files']}), threads {psutil.Process(proc.pid).num_threads()}, "
              f"cpu {cpu.user + cpu.system:.2f} s, load {load}", flush=True)  # fmt: skip
        dump.unlink(missing_ok=True)
        proc.send_signal(signal.SIGUSR1)
        wait(dump.exists, 60)
        text = dump.read_text()
        if trace:
            print("    " + text.splitlines()[0] + "; traced " + text.splitlines()[1])
            traces[what] = text
        else:
            print("    " + text.strip())

    dump = root / "trace.txt"
    traces: dict[str, str] = {}
    add(["anchor"])
    argv = ["run", "--jobs", str(jobs), "--data-dir", str(data)]
    # through the wrapper even untraced: its SIGUSR1 gives pymalloc's arena counts
    cmd = [sys.executable, "-c", TRACED, *argv]
    env = dict(os.environ, RECONCILER_BENCH_DUMP=str(dump), RECONCILER_BENCH_TRACE=str(int(trace)))
    proc = start(cmd, env)
    try:
        wait(lambda: marker("anchor").exists(), 60)
        time.sleep(1)
        report("anchor up")
        for i in range(10):
            add([f"p{i}"])
            wait(lambda i=i: marker(f"p{i}").exists(), 12)
            before = marker(f"p{i}").stat().st_mtime_ns
            victim = [p for p in tasks() if f"/p{i}.g.0.t." in _cgroup(p)]
            for p in victim:
                p.kill()
            wait(lambda i=i: marker(f"p{i}").stat().st_mtime_ns > before, 10)
        for i in range(10):
            (jobs / f"p{i}.hcl").unlink()
        wait(lambda: len(tasks()) == 1, 60)
        report("after pickups")
        for size in sizes:
            names = [f"n{size}-{i}" for i in range(size)]
            t0 = time.monotonic()
            add(names)
            wait(lambda ns=names: all(marker(x).exists() for x in ns), 300)
            up = time.monotonic() - t0
            time.sleep(12)
            report(f"{size} up ({up:.1f} s) +12 s")
            time.sleep(10)
            report(f"{size} +22 s")
            for s in names:
                (jobs / f"{s}.hcl").unlink()
            wait(lambda: len(tasks()) == 1 and slots(data) == 1, 120)  # every exit recorded
            time.sleep(2)
            report(f"{size} removed")
        if sizes:
            add(names)
            wait(lambda ns=names: all(marker(x).exists() for x in ns), 300)
            time.sleep(12)
            stop(proc)
            proc = start(cmd, env)
            pid_file = data / "service.pid"
            wait(lambda: pid_file.exists() and pid_file.read_text().strip() == str(proc.pid), 60)
            time.sleep(15)
            report(f"{sizes[-1]} restarted")
    finally:
        stop(proc)
        teardown(data)
    if trace and len(sizes) >= 1:
        first, last = f"{sizes[0]} +22 s", f"{sizes[-1]} +22 s"
        growth({"size": sizes[0], "t": traces[first]}, {"size": sizes[-1], "t": traces[last]},
               "t", 25)  # fmt: skip
        growth({"size": 0, "t": traces["after pickups"]}, {"size": 1, "t": traces[f"{sizes[-1]} removed"]},
               "t", 25)  # fmt: skip


def slots(data: Path) -> int | None:
    """How many task slots the store holds (read-only; None while it is busy)."""
    try:
        with sqlite3.connect(f"file:{data / 'state.db'}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM task_slots").fetchone()[0])
    except sqlite3.Error:
        return None


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return list(p.cmdline())
    except psutil.Error:
        return []


def _cgroup(p: psutil.Process) -> str:
    try:
        with open(f"/proc/{p.pid}/cgroup") as f:
            return f.read()
    except OSError:
        return ""


def sites(trace: str) -> dict[str, tuple[int, int]]:
    out = {}
    for line in trace.splitlines()[3:]:
        size, count, where = line.split(" ", 2)
        out[where] = (int(size), int(count))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0,100,1000")
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--restart", action="store_true",
                    help="also: the service stopped and started again on the same tasks")
    ap.add_argument("--sequence", action="store_true",
                    help="bench/peers.py's order: sizes added and removed in one service lifetime")
    ap.add_argument("--distinct", action="store_true",
                    help="each task's env names its job, so no two job models are equal")
    args = ap.parse_args()
    if args.sequence:
        sizes = [int(s) for s in args.sizes.split(",")]
        with tempfile.TemporaryDirectory(prefix="rc-mem-") as tmp:
            sequence_run([n for n in sizes if n], args.trace, Path(tmp))
        return
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="rc-mem-") as tmp:
            r = measure(size, args.trace, Path(tmp), args.restart, args.distinct)
        results.append(r)
        load = "/".join(f"{x:.2f}" for x in r["load"])  # type: ignore[attr-defined]
        print(f"{size:5d} tasks: service PSS {r['pss_kb']} kB (private {r['private_kb']}), "
              f"helpers {r['helpers_pss_kb']} kB in {r['helpers']}, up {r['up_s']} s, "
              f"cpu {r['cpu_s']} s, load {load}"
              + (f"; restarted: service PSS {r['restarted_pss_kb']} kB" if args.restart else ""),
              flush=True)  # fmt: skip
        if args.trace:
            trace = str(r["trace"])
            print("  " + trace.splitlines()[0] + "; traced " + trace.splitlines()[1])
    if args.trace and len(results) >= 2:
        growth(results[-2], results[-1], "trace", args.top)
        if args.restart:
            growth(results[-2], results[-1], "restarted_trace", args.top)


def growth(a: dict[str, object], b: dict[str, object], which: str, top: int) -> None:
    """The allocation sites that grew between two sizes, per task."""
    n = int(b["size"]) - int(a["size"])  # type: ignore[call-overload]
    sa, sb = sites(str(a[which])), sites(str(b[which]))
    grew = sorted(
        ((sb[k][0] - sa.get(k, (0, 0))[0], k, sb[k][1] - sa.get(k, (0, 0))[1]) for k in sb),
        reverse=True,
    )
    total = int(str(b[which]).splitlines()[1].split()[1]) - int(
        str(a[which]).splitlines()[1].split()[1]
    )
    print(f"{which}: traced bytes per task ({a['size']} -> {b['size']}): {total / max(n, 1):.0f}")
    for size, where, count in grew[:top]:
        print(f"  {size / max(n, 1):8.0f} B/task {count / max(n, 1):6.1f} blocks/task  {where}")


if __name__ == "__main__":
    main()
