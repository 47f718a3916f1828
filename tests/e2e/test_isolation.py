"""What a task sees from inside, checked for real: Nomad's exec isolation properties."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from reconciler.executor.base import StartError, Template
from reconciler.executor.linux import proc
from reconciler.executor.linux.caps import NOMAD_DEFAULTS, NUMBERS
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import logs, run_to_exit, sh, wait_for


def status_field(text: str, name: str) -> str:
    return next(line.split()[1] for line in text.splitlines() if line.startswith(name + ":"))


def test_private_pid_namespace_task_is_pid_1(ex: LinuxExecutor) -> None:
    _, out = run_to_exit(ex, sh("echo $$"))
    assert out.strip() == "1"


def test_host_pid_mode_is_not_pid_1(ex: LinuxExecutor) -> None:
    _, out = run_to_exit(ex, sh("echo $$", pid_mode="host", ipc_mode="host"))
    assert out.strip() != "1" and int(out) > 1


def test_ps_through_exec_shows_only_the_task(ex: LinuxExecutor) -> None:
    h = ex.start(sh("exec sleep 1000"))
    r = ex.exec(h, ["ps", "ax"], timeout=10)
    lines = r.output.decode().strip().splitlines()
    assert r.exit_code == 0
    assert len(lines) == 3, lines  # header, sleep, ps
    assert "sleep 1000" in lines[1] and lines[1].split()[0] == "1"
    ex.stop(h, "SIGKILL", 0)
    assert ex.wait(h, 10) is not None


def test_root_dirs_env_user_and_writability(ex: LinuxExecutor) -> None:
    script = (
        "ls /; echo ---; echo $NOMAD_ALLOC_DIR $NOMAD_TASK_DIR $NOMAD_SECRETS_DIR; id -u; id -un;"
        "echo ---; for d in / /usr /etc /bin /root /proc/sys /sys; do touch $d/x 2>/dev/null && echo W:$d; done;"
        "for d in /local /alloc/data /secrets /tmp /dev/shm; do touch $d/x && echo OK:$d; done;"
        "test -e /root && echo HOSTROOT; cat /etc/shadow >/dev/null 2>&1 && echo SHADOW; echo end"
    )
    env = {"NOMAD_ALLOC_DIR": "/alloc", "NOMAD_TASK_DIR": "/local", "NOMAD_SECRETS_DIR": "/secrets"}
    _, out = run_to_exit(ex, sh(script, env=env))
    listing, envline, rest = out.split("---\n")
    assert set(listing.split()) == {"alloc", "bin", "dev", "etc", "lib", "lib64", "local", "proc",
                                    "sbin", "secrets", "sys", "tmp", "usr"}  # fmt: skip
    assert envline.split()[:3] == ["/alloc", "/local", "/secrets"]
    assert envline.split()[3:] == ["65534", "nobody"]
    assert "W:" not in rest, rest
    for d in ("/local", "/alloc/data", "/secrets", "/tmp", "/dev/shm"):
        assert f"OK:{d}" in rest
    assert "HOSTROOT" not in rest and "SHADOW" not in rest and rest.strip().endswith("end")


def test_secrets_is_noexec_tmpfs(ex: LinuxExecutor) -> None:
    _, out = run_to_exit(ex, sh("grep ' /secrets ' /proc/mounts"))
    assert "tmpfs" in out and "noexec" in out and "size=1024k" in out
    # resources { secrets = 3 }: its size, on a cold start and on a warm shim's claim alike
    for _ in range(2):
        _, out = run_to_exit(ex, dataclasses.replace(sh("grep ' /secrets ' /proc/mounts"),
                                                     secrets_mb=3))  # fmt: skip
        assert "size=3072k" in out


def test_binary_lookup_stays_inside_the_task(ex: LinuxExecutor) -> None:
    cfg = sh("")
    with pytest.raises(StartError, match="not found under the task root"):
        ex.start(
            cfg.__class__(**{**cfg.__dict__, "command": "definitely-not-a-binary", "args": ()})
        )


def caps_of(ex: LinuxExecutor, **kw: object) -> dict[str, int]:
    _, out = run_to_exit(ex, sh("grep Cap /proc/self/status", **kw))
    return {k: int(status_field(out, k), 16) for k in ("CapEff", "CapBnd", "CapAmb", "CapPrm")}


def mask(names: set[str] | frozenset[str]) -> int:
    return sum(1 << NUMBERS[n] for n in names)


def test_default_capabilities_are_nomads(ex: LinuxExecutor) -> None:
    caps = caps_of(ex)
    assert caps == dict.fromkeys(caps, 0xA80405FB) and mask(NOMAD_DEFAULTS) == 0xA80405FB


def test_drop_all_add_net_bind_service(ex: LinuxExecutor) -> None:
    caps = caps_of(ex, cap_drop=("all",), cap_add=("net_bind_service",))
    assert caps == dict.fromkeys(caps, 0x400)


def test_cap_add_outside_allow_caps_names_the_caps(ex: LinuxExecutor) -> None:
    with pytest.raises(StartError, match="sys_admin"):
        ex.start(sh("true", cap_add=("sys_admin",)))


@pytest.mark.skipif(not shutil.which("ping"), reason="iputils-ping is not installed")
def test_net_raw_makes_ping_work(make_executor) -> None:  # type: ignore[no-untyped-def]
    ex = make_executor(allow_caps=NOMAD_DEFAULTS | {"net_raw"})
    _, out = run_to_exit(ex, sh("ping -c1 -W2 127.0.0.1 >/dev/null 2>&1; echo rc=$?"))
    assert out.strip() != "rc=0"  # no net_raw by default (NET_RAW is not in Nomad's defaults)
    _, out = run_to_exit(
        ex,
        sh("ping -c1 -W2 127.0.0.1 >/dev/null 2>&1; echo rc=$?", "j/g/1/t", cap_add=("net_raw",)),
    )
    assert out.strip() == "rc=0"


def test_memory_hog_is_oom_killed_and_reported(ex: LinuxExecutor) -> None:
    hog = "import time\nb=[]\nwhile True:\n b.append(bytearray(8<<20))\n time.sleep(0.001)"
    cfg = sh("")
    cfg = cfg.__class__(**{**cfg.__dict__, "command": "/usr/bin/python3", "args": ("-c", hog),
                           "memory_mb": 40})  # fmt: skip
    h = ex.start(cfg)
    r = ex.wait(h, 30)
    assert r is not None and r.oom_killed and r.signal == signal.SIGKILL and not r.successful


def test_fork_bomb_is_contained(ex: LinuxExecutor) -> None:
    h = ex.start(sh("for i in $(seq 400); do sleep 30 & done; wait", pids_max=64))
    time.sleep(1.5)
    assert ex.stats(h).pids <= 64
    _, out = h, logs(ex, h, "stderr")
    assert "fork" in out.lower() or "resource" in out.lower()
    ex.stop(h, "SIGKILL", 0)
    assert ex.wait(h, 10) is not None


def test_kill_signal_honoured_and_timeout_escalates(ex: LinuxExecutor) -> None:
    trap = sh("trap 'echo got-term; exit 7' TERM; while true; do sleep 0.05; done")
    h = ex.start(trap)
    time.sleep(0.3)
    ex.stop(h, "SIGTERM", 5)
    r = ex.wait(h, 10)
    assert r is not None and r.exit_code == 7 and "got-term" in logs(ex, h)
    h = ex.start(sh("trap '' INT TERM; while true; do sleep 0.05; done", task_id="j/g/0/u"))
    time.sleep(0.3)
    t0 = time.monotonic()
    ex.stop(h, "SIGINT", 0.5)
    r = ex.wait(h, 10)
    assert r is not None and r.signal == signal.SIGKILL and time.monotonic() - t0 >= 0.45


def test_logs_rotate(ex: LinuxExecutor) -> None:
    script = (
        "python3 -c \"import sys\nfor i in range(400000): sys.stdout.write('line %06d\\n' % i)\""
    )
    h, _ = run_to_exit(ex, sh(script, log_max_files=3, log_max_file_mb=1))
    d = ex.dirs("j/g/0", "t").logs
    files = sorted(int(p.name.rsplit(".", 1)[1]) for p in d.glob("t.stdout.*"))
    assert len(files) == 3 and max(files) == 4
    assert all((d / f"t.stdout.{i}").stat().st_size <= 1 << 20 for i in files)
    assert logs(ex, h).rstrip().endswith("line 399999")


def test_stats_report(ex: LinuxExecutor) -> None:
    h = ex.start(
        sh(
            "python3 -c 'b = bytearray(30 << 20); import time\nwhile time.process_time() < 0.5: pass\ntime.sleep(60)'"
        )
    )
    # the task uses 0.5 s of CPU, however long a busy machine takes to give it that
    wait_for(lambda: ex.stats(h).cpu_user_s + ex.stats(h).cpu_system_s > 0.3, 60)
    s = ex.stats(h)
    assert s.memory_rss >= 25 << 20 and s.pids >= 1 and s.cpu_user_s + s.cpu_system_s > 0.3
    ex.stop(h, "SIGKILL", 0)
    ex.wait(h, 10)


def test_templates_rendered_with_perms_and_env(ex: LinuxExecutor) -> None:
    t1 = Template("local/conf.txt", "hello\n", 0o640)
    t2 = Template("secrets/app.env", "TOKEN=abc\n", 0o600, env=True)
    _, out = run_to_exit(ex, sh("cat /local/conf.txt; stat -c %a /local/conf.txt; echo $TOKEN; cat /secrets/app.env",
                                templates=(t1, t2)))  # fmt: skip
    assert out.split() == ["hello", "640", "abc", "TOKEN=abc"]


def test_network_none_has_only_lo(ex: LinuxExecutor) -> None:
    _, out = run_to_exit(
        ex, sh("ls /sys/class/net; cat /sys/class/net/lo/operstate", net_mode="none")
    )
    names = out.split()
    assert names[:-1] == ["lo"] and names[-1] in ("unknown", "up")


def test_no_process_left_behind_after_stop(ex: LinuxExecutor) -> None:
    h = ex.start(sh("sleep 1000 & sleep 1000 & (sleep 1000 &); wait", pid_mode="host"))
    cg = ex._cgroup(h)
    assert cg is not None
    wait_for(lambda: len(cg.pids()) >= 4, 30)  # sh and its three sleeps
    ex.stop(h, "SIGINT", 0.3)
    assert ex.wait(h, 10) is not None
    assert cg.pids() == set()
    # The shim reports the exit before it tears the task's namespaces down and ends; the
    # waiter's next polls reap it (a zombie would still count as the same process).
    wait_for(lambda: not ex.poll_exits(0.02) and not proc.same_process(h.shim_pid,
             h.shim_start_ticks), what="the shim's end")  # fmt: skip


def test_shim_is_not_in_the_task_cgroup(ex: LinuxExecutor) -> None:
    h = ex.start(sh("exec sleep 1000"))
    cg = ex._cgroup(h)
    assert cg is not None and h.shim_pid not in cg.pids() and h.pid in cg.pids()
    ex.stop(h, "SIGKILL", 0)
    ex.wait(h, 10)


def test_leftovers_in_the_cgroup_are_killed_before_relaunch(ex: LinuxExecutor) -> None:
    h = ex.start(sh("exec sleep 1000"))
    cg = ex._cgroup(h)
    assert cg is not None
    stray = os.fork()
    if stray == 0:
        os.execv("/bin/sleep", ["sleep", "1000"])
    with open(next(iter(cg.procs_files())), "w") as f:
        f.write(str(stray))
    os.kill(h.shim_pid, signal.SIGKILL)  # the shim dies: the task is killed with it (pdeathsig)
    wait_for(lambda: h.pid not in cg.pids(), what="task death")
    h2 = ex.start(sh("exec sleep 1000"))
    assert os.waitpid(stray, 0)[1] != 0  # the stray was killed
    assert cg.pids() == {h2.pid}
    ex.stop(h2, "SIGKILL", 0)
    ex.wait(h2, 10)


def test_recovery_after_the_executor_is_gone(make_executor) -> None:  # type: ignore[no-untyped-def]
    first = make_executor()
    h = first.start(sh("sleep 1; exit 42"))
    del first  # a new service process: only the persisted handle remains
    second = make_executor()
    assert second.recover(h)
    r = second.wait(h, 10)
    assert r is not None and r.exit_code == 42


def test_exit_while_nobody_watches_is_recorded(make_executor) -> None:  # type: ignore[no-untyped-def]
    first = make_executor()
    h = first.start(sh("exit 3"))
    wait_for(lambda: Path(h.task_dir, "exit-status").exists(), what="exit status file")
    second = make_executor()
    assert second.recover(h)
    r = second.wait(h, 5)
    assert r is not None and r.exit_code == 3


def test_recover_refuses_a_reused_pid(make_executor) -> None:  # type: ignore[no-untyped-def]
    ex = make_executor()
    h = ex.start(sh("exit 0"))
    ex.wait(h, 10)
    fake = dataclasses.replace(h, shim_pid=os.getpid(), task_dir="/nonexistent")
    assert not ex.recover(fake)  # same pid number, different start time: not ours
    other_boot = dataclasses.replace(h, boot_id="another-boot")
    assert not ex.recover(other_boot)


def test_exec_exit_code_and_user(ex: LinuxExecutor) -> None:
    h = ex.start(sh("exec sleep 1000"))
    r = ex.exec(h, ["sh", "-c", "id -un; exit 5"], timeout=10)
    assert r.exit_code == 5 and r.output.decode().strip() == "nobody"
    ex.stop(h, "SIGKILL", 0)
    ex.wait(h, 10)


def test_port_answers_on_loopback_in_host_mode(ex: LinuxExecutor) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = ex.start(sh(f"exec python3 -m http.server {port} --bind 127.0.0.1 --directory /"))

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return True
        except OSError:
            return False

    wait_for(answers, what="http.server")
    ex.stop(h, "SIGINT", 2)
    ex.wait(h, 10)


LISTENER = (
    "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 8080))\ns.listen()\nwhile True:\n c, _ = s.accept()\n c.sendall(b'pong')\n c.close()"
)


def test_bridge_group_shares_a_netns_and_its_port_answers_from_the_host(ex: LinuxExecutor) -> None:
    from reconciler.executor.base import PortMap, TaskConfig

    ports = (PortMap("http", 28080, 8080),)
    server = ex.start(TaskConfig(id="n/g/0/srv", alloc_id="n/g/0", command="/usr/bin/python3",
                                 args=("-c", LISTENER), net_mode="bridge", ports=ports))  # fmt: skip
    client = ex.start(sh(
        "sleep 0.5; python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', 8080)).recv(4))\"",
        "n/g/0/cli", net_mode="bridge", ports=ports))  # fmt: skip
    r = ex.wait(client, 15)
    assert r is not None and r.exit_code == 0 and "pong" in logs(ex, client)  # same netns: loopback
    ip = ex.network.address("n/g/0")

    def answers() -> bool:
        try:
            with socket.create_connection((ip, 8080), 0.5) as c:
                return c.recv(4) == b"pong"
        except OSError:
            return False

    wait_for(answers, what="the group's port from the host")
    ex.stop(server, "SIGKILL", 0)
    ex.wait(server, 10)
    ex.release("n/g/0")
    assert not Path("/run/netns", ex.network._name("n/g/0")).exists()


def test_cgroup_v2_kill_and_membership(make_executor) -> None:  # type: ignore[no-untyped-def]
    """What this host's cgroup2 mount can show: a task cgroup per task, the shim outside it,
    and a stop by `cgroup.kill` that takes escaped children too. (Its v2 mount has no memory,
    cpu or pids controller: limits on v2 are not testable here.)"""
    ex = make_executor(cgroup_version=2)
    if ex.layout is None or ex.layout.version != 2:
        pytest.skip("no cgroup2 mount")
    h = ex.start(sh("sleep 1000 & (sleep 1000 &); exec sleep 1000", pid_mode="host"))
    cg = ex._cgroup(h)
    assert cg is not None and list(cg.dirs) == ["unified"]
    wait_for(lambda: len(cg.pids()) >= 3, what="three processes")
    assert h.shim_pid not in cg.pids()
    ex.stop(h, "SIGKILL", 0)  # cgroup.kill
    assert ex.wait(h, 10) is not None
    assert cg.pids() == set()
    ex.destroy(h, force=True)
    assert not next(iter(cg.dirs.values())).exists()


def test_templates_render_again_into_a_running_task(ex: LinuxExecutor) -> None:
    cfg = sh("exec sleep 1000", templates=(Template("local/conf.txt", "v1\n", 0o644),
                                           Template("secrets/app.env", "K=v1\n", 0o600)))
    h = ex.start(cfg)
    again = (Template("local/conf.txt", "v2\n", 0o644), Template("local/same.txt", "s\n", 0o644),
             Template("secrets/app.env", "K=v2\n", 0o600))  # fmt: skip
    assert ex.render_templates(dataclasses.replace(cfg, templates=again), h) == {
        "local/conf.txt", "local/same.txt", "secrets/app.env"}  # fmt: skip
    r = ex.exec(h, ["cat", "/local/conf.txt", "/secrets/app.env"], timeout=10)
    assert r.output.decode() == "v2\nK=v2\n"  # /secrets too: the task's own tmpfs
    # the same output again: nothing written, nothing for its change_mode to act on
    assert ex.render_templates(dataclasses.replace(cfg, templates=again), h) == set()
    ex.stop(h, "SIGKILL", 0)
    ex.wait(h, 10)


def test_dev_holds_only_the_usual_devices_and_they_work(ex: LinuxExecutor) -> None:
    _, out = run_to_exit(ex, sh(
        "ls /dev | tr '\\n' ' '; echo; stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/tty;"
        "echo hi > /dev/null && head -c 4 /dev/zero | od -An -tx1; head -c 8 /dev/urandom | wc -c;"
        "echo x > /dev/full 2>/dev/null || echo full-refused"
    ))  # fmt: skip
    lines = out.splitlines()
    assert set(lines[0].split()) == {"fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr",
                                     "stdin", "stdout", "tty", "urandom", "zero"}  # fmt: skip
    assert lines[1:4] == ["/dev/null character special file 1:3 666",
                          "/dev/zero character special file 1:5 666",
                          "/dev/tty character special file 5:0 666"]  # fmt: skip
    assert lines[4].split() == ["00", "00", "00", "00"] and lines[5] == "8"
    assert lines[6] == "full-refused"


def test_a_secret_in_a_subdirectory_reaches_the_task(ex: LinuxExecutor) -> None:
    cfg = sh("exec sleep 1000", templates=(Template("secrets/certs/ca.pem", "CA\n", 0o600),
                                           Template("secrets/top", "T\n", 0o600)))  # fmt: skip
    h = ex.start(cfg)
    r = ex.exec(h, ["/bin/sh", "-c", "cat /secrets/top /secrets/certs/ca.pem; id -u; stat -c %u "
                    "/secrets/certs /secrets/certs/ca.pem"], timeout=10)  # fmt: skip
    uid = r.output.decode().split()[2]
    assert r.output.decode().split() == ["T", "CA", uid, uid, uid]
    again = (Template("secrets/certs/ca.pem", "CA2\n", 0o600),)
    assert ex.render_templates(dataclasses.replace(cfg, templates=again), h) == {"secrets/certs/ca.pem"}
    assert ex.exec(h, ["cat", "/secrets/certs/ca.pem"], timeout=10).output == b"CA2\n"
    ex.stop(h, "SIGKILL", 0)
    ex.wait(h, 10)
