"""Many starts at once (LinuxExecutor.start_all): the ones that fail fail alone and leave
nothing behind; a service that dies in the middle of a bulk start (the executor's, or the
service's) leaves no process that the next start of those tasks does not end, and no task
runs twice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from reconciler.executor.base import StartError, TaskConfig, TaskHandle
from reconciler.executor.linux import cgroups, pool, primer
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import sh, wait_for
from tests.e2e.service import ServiceProc, alive
from tests.e2e.test_faults import small
from tests.e2e.test_service import write


def _task_procs(ex: LinuxExecutor) -> dict[str, set[int]]:
    """Processes in each task cgroup of the data dir's subtree (not the primer's, not the
    warm pool's)."""
    assert ex.layout is not None
    base = next(iter(ex.layout.bases.values()))
    out: dict[str, set[int]] = {}
    for d in base.iterdir():
        if d.is_dir() and d.name != primer.CGROUP and not pool.is_pool_name(d.name):
            out[d.name] = {int(x) for x in (d / "cgroup.procs").read_text().split()}
    return out


def test_a_bulk_start_where_some_fail(data_dir: Path) -> None:
    ex = LinuxExecutor(data_dir, warm_pool=2)
    try:
        configs: list[TaskConfig] = []
        for i in range(12):
            task_id = f"b/g/{i}/t"
            if i % 3 == 1:  # the shim fails: its task cannot exec
                cfg = TaskConfig(id=task_id, alloc_id=f"b/g/{i}", command="/no/such/binary")
            elif i % 3 == 2:  # refused before anything is made
                cfg = sh("exec sleep 1000", task_id, user="no-such-user-here")
            else:
                cfg = sh("exec sleep 1000", task_id)
            configs.append(cfg)
        results = ex.start_all(configs)
        started = [r for r in results if isinstance(r, TaskHandle)]
        for i, r in enumerate(results):
            if i % 3 == 0:
                assert isinstance(r, TaskHandle) and ex.inspect(r) == "running", r
            else:
                assert isinstance(r, StartError), r
        assert "no-such-user-here" in str(results[2]) and "/no/such/binary" in str(results[1])
        procs = _task_procs(ex)
        running = {h.pid for h in started}
        assert set().union(*procs.values()) == running  # a failed start leaves no process
        assert len({h.shim_pid for h in started}) == len(started)  # no shim handed out twice
        for h in started:
            ex.stop(h, "SIGKILL", 0)
            assert ex.wait(h, 10) is not None
    finally:
        ex.close()


def test_a_crash_in_the_middle_of_a_bulk_start_leaks_nothing(data_dir: Path) -> None:
    """The service dies after 8 of 16 launches (others in flight on the launch threads):
    nothing was recorded, so the next service starts all 16 again. What the dead one began
    ends: shims still waiting for their cgroups see their pipe close; tasks that did start
    are killed when their cgroup is made again; warm shims end with their service."""
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from reconciler.executor.linux.executor import LinuxExecutor
        from tests.e2e.conftest import sh
        ex = LinuxExecutor(Path({str(data_dir)!r}), warm_pool=2)
        launch = ex._launch
        shims = []
        def dying(config):
            pending = launch(config)
            shims.append(pending.shim_pid)
            if len(shims) == 8:
                print(" ".join(map(str, shims)), flush=True)
                os.kill(os.getpid(), 9)
            return pending
        ex._launch = dying
        ex.start_all([sh("exec sleep 1000", f"c/g/{{i}}/t") for i in range(16)])
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).parents[2])  # fmt: skip
    first = [int(x) for x in p.stdout.split()]
    assert len(first) == 8, p.stderr
    again = LinuxExecutor(data_dir, warm_pool=1)  # the next service: sweeps, then starts
    try:
        results = again.start_all([sh("exec sleep 1000", f"c/g/{i}/t") for i in range(16)])
        handles = [r for r in results if isinstance(r, TaskHandle)]
        assert len(handles) == 16, [r for r in results if not isinstance(r, TaskHandle)]
        wait_for(lambda: not any(alive(pid) for pid in first), 20,
                 "every shim of the crashed bulk start to end")  # fmt: skip
        procs = _task_procs(again)
        # one process per task cgroup: the new task; nothing of the first run is left in one
        assert {name: len(ps) for name, ps in procs.items() if ps} == {
            again._cgroup_name(f"c/g/{i}/t"): 1 for i in range(16)
        }
        assert set().union(*procs.values()) == {h.pid for h in handles}
        assert all(again.inspect(h) == "running" for h in handles)
        layout = again.layout
        assert layout is not None
        old_pools = {
            p.name
            for base in layout.bases.values()
            for p in base.iterdir()
            if pool.is_pool_name(p.name) and not p.name.startswith(f"{pool.PREFIX}{os.getpid()}x")
        }
        assert old_pools == set()  # the crashed service's warm shims' cgroups were swept
        for h in handles:
            again.stop(h, "SIGKILL", 0)
            assert again.wait(h, 10) is not None
    finally:
        again.close()


def _cold_shims(data: Path) -> set[int]:
    """Every cold-started shim (`shim run CONFIG`) whose config lies in the data dir."""
    out = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[1] == "run" and argv[2].startswith(f"{data}/"):
            out.add(int(pid))
    return out


def test_a_service_killed_in_the_middle_of_a_bulk_start_leaks_nothing(svc: ServiceProc) -> None:
    """SIGKILL while a batch of 24 starts (task directories appear, nothing is recorded yet)
    and start again: every task runs once, with one shim, and its cgroup holds that task
    only."""
    svc.start()
    write(svc, "many.hcl", small("many", 24))
    group = svc.data / "allocs" / "many" / "g"
    svc.wait(lambda: group.is_dir() and len(list(group.iterdir())) >= 3, timeout=60,
             what="the bulk start to begin")  # fmt: skip
    svc.kill()
    svc.start()
    svc.wait(lambda: len(svc.pids("many")) == 24, timeout=120, what="24 tasks")
    pids = svc.pids("many")
    ex = LinuxExecutor(svc.data)
    assert ex.layout is not None
    for key, pid in pids.items():
        cg = cgroups.TaskCgroup.at(ex.layout, ex._cgroup_name(key))
        wait_for(lambda cg=cg, pid=pid: cg.pids() == {pid}, 20, f"{key}: its task alone")  # type: ignore[misc]
    shims = {p for (p,) in svc.query("SELECT i.shim_pid FROM task_slots s JOIN task_instances i "
                                     "ON i.id = s.instance_id WHERE s.state = 'running'")}  # fmt: skip
    assert len(shims) == 24 and all(alive(p) for p in shims)
    wait_for(lambda: _cold_shims(svc.data) <= shims, 20,
             "the killed service's shims to end")  # fmt: skip
