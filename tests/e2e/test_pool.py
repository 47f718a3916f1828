"""Warm shims (executor/linux/pool.py): a claimed one runs its task as isolated as a cold
start does; none is handed out twice; one killed by hand is replaced; a crashed service
leaves none behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.executor.base import StartError, TaskConfig, TaskHandle, Template, VolumeBind
from reconciler.executor.linux import cgroups, cpusets, pool
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import logs, run_to_exit, sh, wait_for
from tests.e2e.service import alive


@pytest.fixture
def warm(data_dir: Path) -> Iterator[LinuxExecutor]:
    ex = LinuxExecutor(data_dir, warm_pool=3)
    yield ex
    ex.close()


def _ready(ex: LinuxExecutor, n: int = 1) -> list[int]:
    assert ex.pool is not None
    wait_for(lambda: ex.pool is not None and ex.pool.size() >= n, what=f"{n} warm shims")
    return ex.pool.pids()


def _pool_cgroups(ex: LinuxExecutor) -> set[str]:
    assert ex.layout is not None
    return {p.name for base in ex.layout.bases.values() if base.is_dir()
            for p in base.iterdir() if pool.is_pool_name(p.name)}  # fmt: skip


def test_a_claimed_warm_shim_runs_its_task_isolated(warm: LinuxExecutor, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "hello").write_text("from the host\n")
    ready = _ready(warm)
    script = (
        "echo pid=$$; id -un; hostname; cat /secrets/token; cat /data/hello; "
        "touch /rootfile 2>/dev/null && echo root-writable; "
        "touch /alloc/logs/x 2>/dev/null && echo logs-writable; "
        "touch /data/x 2>/dev/null && echo volume-writable; "
        "touch /local/ok && echo local-ok; cat /etc/shadow | wc -c; ps ax | wc -l; exit 7"
    )
    cfg = sh(script, templates=(Template("secrets/token", "s3cret\n"),),
             volumes=(VolumeBind(str(vol), "/data", read_only=True),))  # fmt: skip
    h = warm.start(cfg)
    assert h.shim_pid in ready  # the warm path, not a cold start
    r = warm.wait(h, 20)
    assert r is not None and r.exit_code == 7
    out = logs(warm, h).split()
    assert out[:5] == ["pid=1", "nobody", "t", "s3cret", "from"]
    assert "root-writable" not in out and "logs-writable" not in out
    assert "volume-writable" not in out and "local-ok" in out
    assert out[-2:] == ["0", "4"]  # shadow masked; ps sees a header, sh, ps and wc only
    assert "pool-" not in h.cgroup and cgroups.TaskCgroup.from_record(warm.layout, h.cgroup).name  # type: ignore[arg-type]


def test_no_warm_shim_is_handed_to_two_tasks(warm: LinuxExecutor) -> None:
    assert warm.pool is not None
    for _ in range(3):  # recent starts size the pool
        warm.pool.started()
    ready = set(_ready(warm, 3))
    cfgs = [sh("exec sleep 1000", f"j/g/{i}/t") for i in range(6)]
    handles = warm.start_all(cfgs)
    shims = [h.shim_pid for h in handles if not isinstance(h, Exception)]
    assert len(shims) == 6 and len(set(shims)) == 6
    assert ready & set(shims)  # some came warm
    assert not set(warm.pool.pids()) & set(shims)  # type: ignore[union-attr]
    for h in handles:
        assert not isinstance(h, Exception)
        assert warm.inspect(h) == "running"
        warm.stop(h, "SIGKILL", 0)
        assert warm.wait(h, 10) is not None


@pytest.mark.parametrize("victim", ["shim", "child"])
def test_a_warm_shim_killed_by_hand_is_replaced(warm: LinuxExecutor, victim: str) -> None:
    assert warm.pool is not None
    (first, *_) = _ready(warm)
    before = _pool_cgroups(warm)
    child = next(w.child for w in warm.pool._ready if w.pid == first)
    os.kill(first if victim == "shim" else child, signal.SIGKILL)
    wait_for(lambda: not alive(first) and not alive(child), what="the warm shim to end")
    wait_for(lambda: warm.pool is not None and warm.pool.replaced >= 1, what="it to be dropped")
    wait_for(lambda: warm.pool is not None and warm.pool.size() >= 1
             and first not in warm.pool.pids(), what="a replacement")  # fmt: skip
    assert len(_pool_cgroups(warm) & before) < len(before)  # its cgroups went with it
    h = warm.start(sh("exit 0"))
    assert h.shim_pid != first
    r = warm.wait(h, 20)
    assert r is not None and r.exit_code == 0


def test_a_crashed_service_leaves_no_warm_shim_behind(data_dir: Path) -> None:
    code = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from reconciler.executor.linux.executor import LinuxExecutor
        ex = LinuxExecutor(Path({str(data_dir)!r}), warm_pool=3)
        for _ in range(3):
            ex.pool.started()
        deadline = time.monotonic() + 20
        while ex.pool.size() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        print(" ".join(str(p) for w in ex.pool._ready for p in (w.pid, w.child)), flush=True)
        os.kill(os.getpid(), 9)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).parents[2])  # fmt: skip
    pids = [int(x) for x in p.stdout.split()]
    assert len(pids) == 6, p.stderr
    wait_for(lambda: not any(alive(pid) for pid in pids), what="every warm shim and child to end")
    again = LinuxExecutor(data_dir, warm_pool=1)  # the next service: sweeps, then its own
    try:
        left = {n for n in _pool_cgroups(again) if not n.startswith(f"{pool.PREFIX}{os.getpid()}x")}
        assert left == set()
        h = again.start(sh("exit 0"))
        assert h.shim_pid not in pids
        assert again.wait(h, 20) is not None
    finally:
        again.close()


def test_tasks_a_warm_shim_cannot_take_start_cold(warm: LinuxExecutor) -> None:
    ready = set(_ready(warm))
    h = warm.start(TaskConfig(id="j/g/0/t", alloc_id="j/g/0", command="/bin/sh",
                              args=("-c", "echo $$"), pid_mode="host"))  # fmt: skip
    assert h.shim_pid not in ready
    r = warm.wait(h, 20)
    assert r is not None and r.exit_code == 0
    assert logs(warm, h).strip() != "1"


def test_a_restart_claims_a_warm_shim_and_its_old_cgroups_go_in_the_background(
    warm: LinuxExecutor,
) -> None:
    """A task that starts again under its name (a restart keeps the emptied cgroups): the claim
    sets the old ones aside under a pool name, and they are removed, not left behind."""
    first = warm.start(sh("exit 3"))
    assert warm.wait(first, 20) is not None  # exited; its cgroups are kept, as for a restart
    old = cgroups.TaskCgroup.from_record(warm.layout, first.cgroup)  # type: ignore[arg-type]
    assert any(p.is_dir() for p in old.dirs.values())
    status = warm.dirs("j/g/0", "t").exit_file
    assert status.read_text().split()[0] == "3"
    ready = set(_ready(warm))
    again = warm.start(sh("exec sleep 1000"))
    assert again.shim_pid in ready  # warm, not cold
    assert not status.exists()  # the previous run's, set aside and removed in the background
    assert warm.pool is not None
    wait_for(lambda: warm.pool is not None and not any(warm.pool.old_files.iterdir()),
             what="the previous run's files to be removed")  # fmt: skip
    assert cgroups.TaskCgroup.from_record(warm.layout, again.cgroup).pids() == {again.pid}  # type: ignore[arg-type]
    wait_for(lambda: not any(n for n in _pool_cgroups(warm) if "-old" in n),
             what="the set-aside cgroups to be removed")  # fmt: skip
    warm.stop(again, "SIGKILL", 0)
    assert warm.wait(again, 10) is not None
    warm.destroy(again, force=True)


def test_warm_shims_work_with_descriptors_past_1024(data_dir: Path) -> None:
    """With a thousand tasks (two descriptors each) the pool's own descriptors are numbered
    past select()'s limit: warm shims are still made, watched and claimed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip(f"the open files limit ({hard}) is below 1,200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fillers: list[int] = []
    ex: LinuxExecutor | None = None
    try:
        while not fillers or fillers[-1] < 1100:  # the next descriptors are numbered past 1,024
            fillers.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        ex = LinuxExecutor(data_dir, warm_pool=2)
        ready = _ready(ex)
        h = ex.start(sh("exit 3"))
        assert h.shim_pid in ready  # claimed warm, not started cold after a failed pool
        r = ex.wait(h, 20)
        assert r is not None and r.exit_code == 3
        assert ex.pool is not None and ex.pool._failures == 0
    finally:
        if ex is not None:
            ex.close()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("warm_pool", [0, 1])
def test_staged_secrets_or_none_are_handled_alike_cold_and_warm(
    data_dir: Path, tmp_path: Path, warm_pool: int
) -> None:
    """No template staged secrets: the task gets an empty /secrets. A link where they are
    staged: the start is refused, never run without them. The same for a cold start and a
    claim of a warm shim (one routine in the shim reads them)."""
    ex = LinuxExecutor(data_dir, warm_pool=warm_pool)
    try:
        ready = set(_ready(ex)) if warm_pool else set()
        h, out = run_to_exit(ex, sh("ls -A /secrets | wc -l; echo ok", "a/g/0/t"))
        assert out.split() == ["0", "ok"], out + logs(ex, h, "stderr")
        assert (h.shim_pid in ready) == bool(warm_pool)
        (data_dir / "allocs/a/g/0/tasks/t/secrets").symlink_to(tmp_path)
        if warm_pool:
            _ready(ex)  # so the start below is a claim
        with pytest.raises(StartError, match="staged secrets"):
            ex.start(sh("echo ran", "a/g/0/t"))
    finally:
        ex.close()


def test_a_claim_passes_a_config_larger_than_a_pipe_holds(warm: LinuxExecutor) -> None:
    """The claim sends the task's config on the shim's stdin: one of 100 kB, more than a pipe
    holds, arrives whole."""
    ready = _ready(warm)
    big = "x" * 100_000
    h = warm.start(sh('echo "${#BIG}"; exit 3', env={"BIG": big}))
    assert h.shim_pid in ready
    r = warm.wait(h, 20)
    assert r is not None and r.exit_code == 3
    assert logs(warm, h).split() == ["100000"]


def test_a_command_runs_inside_a_warm_started_task(warm: LinuxExecutor) -> None:
    """`reconciler exec` and script checks enter a task with its own user, env and cgroup,
    also when a warm shim started it."""
    ready = _ready(warm)
    h = warm.start(sh("exec sleep 1000", env={"WHO": "task"}))
    try:
        assert h.shim_pid in ready
        r = warm.exec(h, ["/bin/sh", "-c", 'echo "$WHO $(id -u)"'], 20)
        assert (r.exit_code, r.output.decode().split()) == (0, ["task", "65534"])
    finally:
        warm.stop(h, "SIGKILL", 0)
        warm.wait(h, 20)


def test_an_exit_clears_the_cgroups_for_the_next_claim_and_a_start_first_keeps_its_own(
    warm: LinuxExecutor,
) -> None:
    """A warm-started task's exit has its cgroups set aside at the waiter's next poll (off the
    restart's path); a start of the task that comes before that poll (warm or cold) cancels
    it, so the new run's cgroups are never moved."""
    _ready(warm)
    first = warm.start(sh("exit 0"))
    assert warm.wait(first, 20) is not None
    name = cgroups.TaskCgroup.from_record(warm.layout, first.cgroup).name  # type: ignore[arg-type]
    assert any(p.is_dir() for p in cgroups.TaskCgroup.at(warm.layout, name).dirs.values())  # type: ignore[arg-type]
    warm.poll_exits(0)  # the next poll clears them
    assert not any(p.is_dir() for p in cgroups.TaskCgroup.at(warm.layout, name).dirs.values())  # type: ignore[arg-type]
    # A start between the exit and the next poll: warm, then cold (host pid mode)
    for cfg in (sh("exec sleep 1000"), sh("exec sleep 1000", pid_mode="host")):
        _ready(warm)
        h = warm.start(sh("exit 0"))
        assert warm.wait(h, 20) is not None
        again = warm.start(cfg)
        warm.poll_exits(0)
        cg = cgroups.TaskCgroup.from_record(warm.layout, again.cgroup)  # type: ignore[arg-type]
        assert cg.pids() == {again.pid}
        warm.stop(again, "SIGKILL", 0)
        assert warm.wait(again, 10) is not None
    wait_for(lambda: not any(n for n in _pool_cgroups(warm) if "-old" in n),
             what="the set-aside cgroups to be removed")  # fmt: skip


def test_a_claim_ends_with_its_own_limits_whatever_was_set_ahead(data_dir: Path) -> None:
    """The pool sets the last claim's limits on the cgroups it makes, and a claim writes only
    what differs: each task still ends with exactly its own."""
    ex = LinuxExecutor(data_dir, warm_pool=1)
    assert ex.layout is not None and ex.pool is not None
    v1 = ex.layout.version == 1

    def memory(h: TaskHandle) -> tuple[int, str]:
        cg = cgroups.TaskCgroup.from_record(ex.layout, h.cgroup)  # type: ignore[arg-type]
        if v1:
            d = cg.dirs["memory"]
            return (int((d / "memory.limit_in_bytes").read_text()) >> 20,
                    (d / "memory.soft_limit_in_bytes").read_text().strip())  # fmt: skip
        d = cg.dirs["unified"]
        return int((d / "memory.max").read_text()) >> 20, (d / "memory.low").read_text().strip()

    unset = "9223372036854771712" if v1 else "0"
    try:
        for i, (mem, mx) in enumerate(((32, 64), (48, 0), (48, 0))):
            wait_for(lambda i=i: ex.pool is not None and ex.pool.size() >= 1 and (
                i == 0 or ex.pool._ready[0].limits is not None), what="a warm shim")  # fmt: skip
            ready = ex.pool.pids()
            h = ex.start(sh("exec sleep 1000", task_id=f"j/g/0/t{i}", memory_mb=mem,
                            memory_max_mb=mx))  # fmt: skip
            assert h.shim_pid in ready
            assert memory(h) == (mx or mem, str(mem << 20) if mx else unset)
            ex.stop(h, "SIGKILL", 0)
            assert ex.wait(h, 10) is not None
    finally:
        ex.close()


def test_a_pool_cgroup_left_only_in_the_shared_cpuset_is_swept(data_dir: Path) -> None:
    """A removal cut short (the service killed between its rmdirs) can leave a set-aside
    cgroup's name only under the shared cpuset: the next service's sweep finds it there."""
    ex = LinuxExecutor(data_dir)
    layout = ex.layout
    if layout is None or layout.version != 1 or not cgroups.cpusets_mounted():
        pytest.skip("cgroup v1 with the cpuset controller only")
    shared = cgroups.cpuset_base(layout) / cpusets.SHARED
    shared.mkdir(parents=True, exist_ok=True)
    left = shared / f"{pool.PREFIX}1x000000-old0"
    left.mkdir()
    pool.sweep(layout)
    assert not left.exists() and shared.is_dir()
