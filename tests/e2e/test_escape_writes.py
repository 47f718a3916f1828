"""Attacks on the service's own hands: a task plants links, FIFOs and huge files where the
service (root) writes at its next start or render. After each attack a root-owned file (and
directory) planted outside the data dir must keep its content, mode and owner."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.executor.base import NodeConfig, StartError, TaskConfig, Template
from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import logs, run_to_exit, sh, wait_for

PY = "/usr/bin/python3"


class Victim:
    """A root-owned file and directory outside the data dir, and their state to compare."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "victim-dir"
        self.dir.mkdir(mode=0o755)
        self.file = self.dir / "host-file"
        self.file.write_text("host secret\n")
        os.chmod(self.file, 0o600)
        self.before = self.state()

    def state(self) -> tuple[object, ...]:
        st, dst = os.lstat(self.file), os.lstat(self.dir)
        return (self.file.read_text(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                stat.S_IMODE(dst.st_mode), dst.st_uid, sorted(os.listdir(self.dir)))  # fmt: skip

    def intact(self) -> bool:
        return self.state() == self.before


@pytest.fixture
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victim]:
    yield Victim(Path(tmp_path_factory.mktemp("victim")).resolve())


def plant(ex: LinuxExecutor, script: str, task: str = "a/g/0/t", **kw: object) -> None:
    """Run the attacker's set-up inside the task (as nobody), to completion."""
    h, out = run_to_exit(ex, sh(script + "\necho planted", task, **kw))
    assert "planted" in out, out + logs(ex, h, "stderr")


def with_template(dest: str, task: str = "a/g/0/t", text: str = "rendered\n") -> TaskConfig:
    return replace(sh("exit 0", task), templates=(Template(dest, text, 0o666),))


def test_link_at_a_template_destination_is_refused(ex: LinuxExecutor, victim: Victim) -> None:
    plant(ex, f"ln -s {victim.file} /local/out.conf")
    with pytest.raises(StartError, match=r"refused: out\.conf is a symbolic link"):
        ex.start(with_template("local/out.conf"))
    assert victim.intact()


def test_link_at_the_old_temporary_name_is_harmless(ex: LinuxExecutor, data_dir: Path,
                                                    victim: Victim) -> None:  # fmt: skip
    plant(ex, f"ln -s {victim.file} /local/.out.conf.tmp; ln -s {victim.file} /local/.reconciler-0.tmp")
    h = ex.start(with_template("local/out.conf"))
    assert ex.wait(h, 10) is not None
    out = data_dir / "allocs/a/g/0/tasks/t/local/out.conf"
    assert out.read_text() == "rendered\n" and not out.is_symlink()
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 and out.stat().st_uid == 65534
    assert victim.intact()


def test_directory_swapped_for_a_link_is_refused(ex: LinuxExecutor, victim: Victim) -> None:
    plant(ex, f"ln -s {victim.dir} /local/sub")
    with pytest.raises(StartError, match="sub is a symbolic link"):
        ex.start(with_template("local/sub/out.conf"))
    plant(ex, f"rm /local/sub; mkdir /local/sub; ln -s {victim.dir} /local/sub/deeper")
    with pytest.raises(StartError, match="deeper is a symbolic link"):
        ex.start(with_template("local/sub/deeper/x/out.conf"))
    assert victim.intact()


SWAPPER = """
import os, sys
os.makedirs('/local/real', exist_ok=True)
os.symlink(sys.argv[1], '/local/link')
print('swapping', flush=True)
while True:
    os.rename('/local/real', '/local/sub')
    os.rename('/local/sub', '/local/real')
    os.rename('/local/link', '/local/sub')
    os.rename('/local/sub', '/local/link')
"""


def test_racing_a_directory_swap_while_templates_render(ex: LinuxExecutor,
                                                        victim: Victim) -> None:  # fmt: skip
    cfg = replace(sh("", "a/g/0/t"), command=PY, args=("-c", SWAPPER, str(victim.dir)),
                  templates=(Template("local/sub/out.conf", "x\n", 0o666),))  # fmt: skip
    # The first render may meet either shape; the loop is what matters.
    try:
        h = ex.start(cfg)
    except StartError:
        h = ex.start(replace(cfg, templates=()))
    wait_for(lambda: "swapping" in logs(ex, h), what="the swapping loop")
    written = refused = 0
    for i in range(300):  # new output every time: a re-render writes only what changed
        try:
            ex.render_templates(replace(cfg, templates=(
                Template("local/sub/out.conf", f"x{i}\n", 0o666),)), h)  # fmt: skip
            written += 1
        except StartError:
            refused += 1
    ex.stop(h, "SIGKILL", 0)
    assert ex.wait(h, 10) is not None
    assert written + refused == 300
    assert victim.intact()


def test_links_in_shared_alloc_dirs_before_a_restart(make_executor, victim: Victim) -> None:  # type: ignore[no-untyped-def]
    ex = make_executor()
    plant(ex, f"ln -s {victim.file} /alloc/data/out.conf; ln -s {victim.dir} /alloc/tmp/sub")
    for dest in ("alloc/data/out.conf", "alloc/tmp/sub/out.conf"):
        with pytest.raises(StartError, match="symbolic link"):
            ex.start(with_template(dest))
    # A root task of the group swaps /alloc/data itself for a link; the next new task of the
    # group (whose directories are made now) is refused, not chmod'ed through it.
    root_ex = make_executor(allow_root=True)
    plant(root_ex, f"mv /alloc/data /alloc/data.old && ln -s {victim.dir} /alloc/data",
          task="a/g/0/prestart", user="root")  # fmt: skip
    with pytest.raises(StartError, match="data is a symbolic link"):
        root_ex.start(sh("exit 0", "a/g/0/other"))
    assert victim.intact()


def test_fifo_and_sparse_file_at_destinations(ex: LinuxExecutor, data_dir: Path) -> None:
    plant(ex, "mkfifo /local/pipe.conf && truncate -s 10G /local/big.conf")
    with pytest.raises(StartError, match=r"pipe\.conf is a FIFO"):
        ex.start(with_template("local/pipe.conf"))
    h = ex.start(with_template("local/big.conf"))  # replaced, never read
    assert ex.wait(h, 10) is not None
    assert (data_dir / "allocs/a/g/0/tasks/t/local/big.conf").read_text() == "rendered\n"


def test_secrets_are_staged_root_only_and_not_followed(ex: LinuxExecutor, data_dir: Path) -> None:
    cfg = replace(sh("cat /secrets/token; ls -l /secrets/token", "a/g/0/t"),
                  templates=(Template("secrets/token", "s3cret\n", 0o400),))  # fmt: skip
    h, out = run_to_exit(ex, cfg)
    assert "s3cret" in out and "nobody" in out, out + logs(ex, h, "stderr")
    staged = data_dir / "allocs/a/g/0/tasks/t/secrets"
    assert stat.S_IMODE(staged.stat().st_mode) == 0o700 and staged.stat().st_uid == 0


def test_no_device_nodes_usable_in_writable_dirs(ex: LinuxExecutor) -> None:
    """Nomad's default caps include mknod: nodes made where the task writes must be useless."""
    _, out = run_to_exit(ex, sh(
        "for d in /local /tmp /alloc/data /dev; do mknod $d/n c 1 5 2>/dev/null; echo made=$?; "
        "head -c1 $d/n >/dev/null 2>&1; echo read=$?; done; mount | grep -c ' /local .*nodev'"))  # fmt: skip
    assert "made=0" not in out and "read=0" not in out and out.strip().endswith("1"), out


def test_host_pid_tasks_cannot_read_or_signal_each_other(ex: LinuxExecutor) -> None:
    victim_task = ex.start(replace(sh("exec sleep 100", "v/g/0/t", pid_mode="host"),
                                   env={"SECRET": "s3cret"}))  # fmt: skip
    code = f"""
import os
for p in ('/proc/{victim_task.pid}/environ', '/proc/{victim_task.pid}/root/local'):
    try:
        open(p, 'rb').read() if p.endswith('environ') else os.listdir(p)
        print('READ', p)
    except OSError as e:
        print('denied', p, e.errno)
for pid in ({victim_task.pid}, {os.getpid()}):
    try:
        os.kill(pid, 0)
        print('SIGNALLED', pid)
    except OSError as e:
        print('no-signal', pid, e.errno)
"""
    cfg = replace(sh("", "w/g/0/t", pid_mode="host"), command=PY, args=("-c", code))
    h, out = run_to_exit(ex, cfg)
    ex.stop(victim_task, "SIGKILL", 0)
    ex.wait(victim_task, 10)
    assert out.count("denied") == 2 and "READ" not in out, out + logs(ex, h, "stderr")
    assert out.count("no-signal") == 2 and "SIGNALLED" not in out, out


def test_other_host_users_cannot_read_the_data_dir(make_executor, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    os.chmod(data_dir, 0o755)  # as a data dir made by hand might be
    ex = make_executor()
    cfg = replace(sh("echo hi > /local/mine", "a/g/0/t"),
                  templates=(Template("secrets/token", "s3cret\n", 0o644),))  # fmt: skip
    run_to_exit(ex, cfg)
    task = data_dir / "allocs/a/g/0/tasks/t"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(data_dir / "control.sock"))
    os.chmod(data_dir / "control.sock", 0o777)  # only the data dir's mode stands in the way
    code = (
        "import os, socket, sys\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    socket.socket(socket.AF_UNIX).connect(sys.argv[1]); print('CONNECTED')\n"
        "except OSError:\n"
        "    print('no-connect')\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        open(p).read() if not os.path.isdir(p) else os.listdir(p); print('READ', p)\n"
        "    except OSError as e:\n"
        "        print('denied', p)\n"
    )
    paths = [str(data_dir / "control.sock"), str(task / "secrets/token"), str(task / "local/mine"), str(task / "local"),
             str(task / "shim.conf"), str(data_dir)]  # fmt: skip
    out = subprocess.run([PY, "-c", code, *paths], capture_output=True, text=True).stdout
    sock.close()
    assert "no-connect" in out and "CONNECTED" not in out, out
    assert "READ" not in out and out.count("denied") == len(paths), out
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_raw_exec_node_keeps_the_data_dir_unlistable(make_executor, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    make_executor(**{"allow_raw_exec": True})
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711
    assert NodeConfig().allow_raw_exec is False


def test_a_volume_path_with_a_link_is_refused(ex: LinuxExecutor, tmp_path: Path,
                                              victim: Victim) -> None:  # fmt: skip
    """A task with one volume may swap a directory on the way to another volume's path."""
    from reconciler.executor.base import VolumeBind

    (tmp_path / "vols").mkdir()
    (tmp_path / "vols/b").symlink_to(victim.dir)
    cfg = replace(sh("echo x > /srv/b/owned", "a/g/0/t"),
                  volumes=(VolumeBind(str(tmp_path / "vols/b"), "/srv/b"),))  # fmt: skip
    with pytest.raises(StartError, match="a symbolic link in its path"):
        ex.start(cfg)
    assert victim.intact()


SECRET_PLANTER = """
import os, time
os.symlink('/', '/secrets/up')
os.unlink('/secrets/app.env')
os.symlink('/etc/passwd', '/secrets/app.env')
print('planted', flush=True)
time.sleep(1000)
"""


def test_a_re_rendered_secret_meets_the_links_a_task_planted(ex: LinuxExecutor) -> None:
    """A secrets/ template re-rendered into the running task's own /secrets: a link the task
    put in its place, or on the way to it, is refused and never followed."""
    cfg = replace(sh("", "s/g/0/t"), command=PY, args=("-c", SECRET_PLANTER),
                  templates=(Template("secrets/app.env", "A=1\n", 0o600),))  # fmt: skip
    h = ex.start(cfg)
    wait_for(lambda: "planted" in logs(ex, h), what="the links planted")
    for dest in ("secrets/app.env", "secrets/up/x"):
        with pytest.raises(StartError, match="refused"):
            ex.render_templates(replace(cfg, templates=(Template(dest, "A=2\n", 0o600),)), h)
    r = ex.exec(h, ["/bin/sh", "-c", "readlink /secrets/app.env; ls /secrets"], timeout=10)
    assert r.output.decode().split() == ["/etc/passwd", "app.env", "up"]  # as the task left them
    # a handle whose pid is not (or no longer) this shim's task: nothing is written into it
    other = replace(h, shim_pid=os.getpid())
    assert ex.render_templates(replace(cfg, templates=(Template("secrets/new", "n", 0o600),)),
                               other) == {"secrets/new"}  # (staged for its next start)
    assert "new" not in ex.exec(h, ["ls", "/secrets"], timeout=10).output.decode()
    ex.stop(h, "SIGKILL", 0)
    assert ex.wait(h, 10) is not None
