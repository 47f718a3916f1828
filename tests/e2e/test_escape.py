"""Attacks from inside a task: each must fail. Run as root, with Nomad's default isolation."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from reconciler.executor.linux.executor import LinuxExecutor
from tests.e2e.conftest import logs, run_to_exit, sh

PY = "/usr/bin/python3"


def py(ex: LinuxExecutor, code: str, task: str = "x/g/0/t", **kw: object) -> str:
    cfg = sh("")
    cfg = cfg.__class__(**{**cfg.__dict__, "id": task, "alloc_id": task.rpartition("/")[0],
                           "command": PY, "args": ("-c", code), **kw})  # fmt: skip
    h, out = run_to_exit(ex, cfg)
    return out + logs(ex, h, "stderr")


def test_cannot_see_or_signal_host_processes(ex: LinuxExecutor) -> None:
    host_pid = os.getpid()
    out = py(
        ex,
        f"""
import os
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
print('pids', pids)
try:
    os.kill({host_pid}, 0)
    print('SIGNALLED')
except ProcessLookupError:
    print('no-such-process')
""",
    )
    assert "no-such-process" in out and "SIGNALLED" not in out
    pids = eval(out.split("pids ")[1].splitlines()[0])
    assert pids == [1]


def test_cannot_read_host_init_environ(ex: LinuxExecutor) -> None:
    out = py(ex, "print(open('/proc/1/environ').read().count('NOMAD_TASK_NAME'))",
             env={"NOMAD_TASK_NAME": "t"})  # fmt: skip
    assert out.strip() == "1"  # PID 1 is the task itself
    out = py(ex, """
try:
    open('/proc/1/environ').read(); print('READ')
except PermissionError:
    print('denied')
""", task="x/g/1/t", pid_mode="host")  # fmt: skip
    assert "denied" in out and "READ" not in out


def test_cannot_mount(ex: LinuxExecutor) -> None:
    _, out = run_to_exit(
        ex, sh("mount -t tmpfs none /tmp 2>&1; echo rc=$?; unshare -m true 2>&1; echo rc=$?")
    )
    codes = [line for line in out.splitlines() if line.startswith("rc=")]
    assert codes and all(c != "rc=0" for c in codes)


def test_cannot_write_outside_its_dirs(ex: LinuxExecutor, data_dir: Path) -> None:
    targets = ["/x", "/usr/x", "/etc/passwd", "/bin/x", "/proc/sys/kernel/hostname", "/sys/x",
               "/alloc/logs/x", "/proc/sysrq-trigger"]  # fmt: skip
    code = "import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x'); print('WROTE', p)\n    except OSError:\n        pass\nprint('done')"
    cfg = sh("")
    cfg = cfg.__class__(**{**cfg.__dict__, "command": PY, "args": ("-c", code, *targets)})
    h, out = run_to_exit(ex, cfg)
    assert "WROTE" not in out and "done" in out, out + logs(ex, h, "stderr")


def test_cannot_raise_capabilities(ex: LinuxExecutor) -> None:
    out = py(
        ex,
        """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
print('ambient', libc.prctl(47, 2, 21, 0, 0), ctypes.get_errno())      # raise CAP_SYS_ADMIN
hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)(0xffffffff, 0xffffffff, 0, 0xff, 0xff, 0)
print('capset', libc.capset(hdr, data), ctypes.get_errno())
print('nnp', libc.prctl(39, 0, 0, 0, 0))                               # PR_GET_NO_NEW_PRIVS
""",
    )
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["ambient"].split()[0] == "-1" and lines["capset"].split()[0] == "-1"
    assert lines["nnp"] == "1"


def test_cannot_load_kernel_modules(ex: LinuxExecutor) -> None:
    out = py(
        ex,
        """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open('/dev/null', os.O_RDONLY)
print(libc.syscall(313, fd, b'', 0), ctypes.get_errno())   # finit_module
bnd = [l for l in open('/proc/self/status') if l.startswith('CapBnd')][0].split()[1]
print(int(bnd, 16) >> 16 & 1)                                 # CAP_SYS_MODULE
""",
    )
    rc, errno, sys_module = out.split()[:3]
    # EPERM; ENOSYS on kernels built without module support (this CI's Firecracker kernel)
    assert rc == "-1" and int(errno) in (1, 38)
    assert sys_module == "0"  # and the capability is gone from the bounding set for good


def test_cannot_change_the_host_hostname(ex: LinuxExecutor) -> None:
    before = socket.gethostname()
    _, out = run_to_exit(ex, sh("hostname evil 2>&1; echo rc=$?; hostname"))
    assert "rc=0" not in out
    assert socket.gethostname() == before


def test_cannot_reach_the_control_socket(ex: LinuxExecutor, data_dir: Path) -> None:
    sock_path = data_dir / "control.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(sock_path))
    srv.listen()
    try:
        out = py(
            ex,
            f"""
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({str(sock_path)!r}); print('CONNECTED')
except OSError as e:
    print('refused', e.errno)
""",
        )
        assert "CONNECTED" not in out and "refused" in out
    finally:
        srv.close()


def test_cannot_exhaust_host_memory_or_pids(ex: LinuxExecutor) -> None:
    hog = "b = []\nwhile True:\n    b.append(bytearray(16 << 20))"
    cfg = sh("")
    cfg = cfg.__class__(**{**cfg.__dict__, "command": PY, "args": ("-c", hog), "memory_mb": 64})
    h = ex.start(cfg)
    r = ex.wait(h, 30)
    assert r is not None and r.oom_killed
    bomb = ex.start(sh(":(){ :|:& };:; sleep 2", "x/g/2/t", pids_max=100))
    time.sleep(1.5)
    assert ex.stats(bomb).pids <= 100
    ex.stop(bomb, "SIGKILL", 0)
    assert ex.wait(bomb, 15) is not None
