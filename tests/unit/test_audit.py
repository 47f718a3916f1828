"""`audit` rates default isolation as OK and weakened isolation as exposed."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from reconciler.audit import audit
from reconciler.cli import app
from reconciler.executor.base import NodeConfig
from reconciler.executor.linux.caps import NOMAD_DEFAULTS
from reconciler.spec.load import parse_text

DEFAULT = """job "safe" {
  group "g" {
    task "t" {
      driver = "exec"
      config { command = "/bin/true" }
    }
  }
}
"""
WEAK = """job "weak" {
  group "g" {
    network { mode = "host" }
    task "t" {
      driver = "exec"
      user = "root"
      config {
        command = "/bin/true"
        pid_mode = "host"
        ipc_mode = "host"
        cap_add = ["sys_admin", "net_raw"]
      }
      resources { memory_max = -1 }
    }
    task "raw" {
      driver = "raw_exec"
      config { command = "/bin/true" }
    }
  }
}
"""


def job(text: str):  # type: ignore[no-untyped-def]
    r = parse_text(text, "x.hcl")
    assert r.ok, r.problems
    return r.jobs[0].job


def test_default_isolation_is_ok() -> None:
    (t,) = audit(job(DEFAULT), NodeConfig())
    assert t.rating == "OK" and t.score <= 2
    props = {f.prop: f for f in t.findings}
    assert props["user"].value == "nobody" and props["pid namespace"].value == "private"
    assert props["capabilities beyond defaults"].value == "none"
    assert props["no_new_privs"].value == "yes"


def test_weakened_isolation_is_exposed() -> None:
    node = NodeConfig(allow_caps=NOMAD_DEFAULTS | {"sys_admin", "net_raw"}, allow_root=True)
    t, raw = audit(job(WEAK), node)
    props = {f.prop: f for f in t.findings}
    assert props["capabilities beyond defaults"].value == "net_raw, sys_admin"
    assert props["pid namespace"].exposure > 0 and props["user"].exposure >= 3
    assert props["memory limit"].exposure > 0
    assert t.rating == "UNSAFE" and raw.rating == "UNSAFE" and raw.score == 10


def test_caps_refused_by_the_node_are_reported() -> None:
    t, _ = audit(job(WEAK), NodeConfig())
    assert any("sys_admin" in f.note for f in t.findings)


def test_cli_audit(tmp_path: Path) -> None:
    (tmp_path / "safe.hcl").write_text(DEFAULT)
    (tmp_path / "weak.hcl").write_text(WEAK)
    r = CliRunner().invoke(app, ["audit", "safe", "--jobs", str(tmp_path)])
    assert r.exit_code == 0 and "OK" in r.output
    r = CliRunner().invoke(app, ["audit", "weak", "--jobs", str(tmp_path), "--json"])
    data = json.loads(r.output)
    assert [d["rating"] for d in data] == ["UNSAFE", "UNSAFE"]
    r = CliRunner().invoke(app, ["audit", "nope", "--jobs", str(tmp_path)])
    assert r.exit_code == 4


def test_node_audit_flags_settings_that_reopen_a_way_out(tmp_path: Path) -> None:
    from reconciler.audit import audit_node

    data = tmp_path / "data"
    data.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert audit_node(NodeConfig(), data) == []
    node = NodeConfig(chroot_env={str(tmp_path): "/host", str(shared): "/local/x", "/usr": "/usr"},
                      no_pivot_root=True, allow_raw_exec=True)  # fmt: skip
    found = {(f.prop, f.note) for f in audit_node(node, data)}
    assert (f"chroot_env {tmp_path}",
            "shows tasks the data dir: other tasks' files and staged secrets") in found  # fmt: skip
    assert (f"chroot_env {shared}", "lands inside a directory the task writes") in found
    assert any(p == f"chroot_env {shared}" and "changed from outside" in n for p, n in found)
    assert any(p == "no_pivot_root" for p, _ in found)
    assert any(p == "allow_raw_exec" for p, _ in found)
    assert not any("/usr" in p for p, _ in found)
    vols = NodeConfig(host_volumes={"all": ("/", False), "ok": (str(shared), False)})
    assert [f.prop for f in audit_node(vols, data)] == ["host_volume all"]
    loose = tmp_path / "loose"
    (loose / "d").mkdir(parents=True)
    loose.chmod(0o777)
    assert any(f.prop == "data dir path" for f in audit_node(NodeConfig(), loose / "d"))


def test_cli_audit_of_the_node(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["audit", "--data-dir", str(tmp_path), "--jobs", str(tmp_path)])
    assert r.exit_code == 0 and "node: nothing re-opens a way out" in r.output
    r = CliRunner().invoke(app, ["audit", "--data-dir", str(tmp_path), "--json"])
    assert json.loads(r.output) == {"node": []}
