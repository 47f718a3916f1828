"""Rendered templates into the task's directories (`local/`, `secrets/` staged for the
tmpfs, `alloc/`), with their perms and owner; `env = true` files read back as variables."""

from __future__ import annotations

import os
import pwd

from reconciler.executor.base import StartError
from reconciler.executor.linux import rootfs


def write(dirs: rootfs.TaskDirs, dest: str, text: str, perms: int, pw: pwd.struct_passwd) -> None:
    rel = os.path.normpath(dest).lstrip("/")
    top, _, rest = rel.partition("/")
    bases = {"local": dirs.local, "secrets": dirs.secrets, "alloc": dirs.alloc / "alloc"}
    base = bases.get(top)
    if base is None or not rest:
        base, rest = dirs.local, rel  # Nomad resolves other paths inside the task dir
    path = (base / rest).resolve()
    if not str(path).startswith(str(base.resolve()) + "/"):
        raise StartError(f"template destination {dest} leaves the task directory")
    if base == dirs.secrets and not base.is_dir():
        base.mkdir(mode=0o700)  # staged for the task's /secrets tmpfs: root only on the host
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, perms)
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.replace(tmp, path)


def env_lines(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[k.strip().removeprefix("export ").strip()] = v
    return out
