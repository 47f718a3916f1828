"""Host volumes and dns in the job model, the planner and the executor's task config."""

from __future__ import annotations

import pytest

from reconciler.db.snapshot import Observed, SlotKey
from reconciler.executor.base import DnsConfig, NodeConfig
from reconciler.executor.linux import resolvconf
from reconciler.plan import Host, plan
from reconciler.spec.load import Desired, parse_text
from reconciler.taskconfig import task_config

JOB = """job "db" {{
  group "g" {{
    count = 2
    volume "data" {{
      type = "host"
      source = "pg"
      {volume}
    }}
    network {{
      dns {{ servers = ["10.0.0.53"] }}
    }}
    task "t" {{
      driver = "exec"
      config {{ command = "/bin/true" }}
      volume_mount {{
        volume = "data"
        destination = "${{NOMAD_TASK_NAME}}-data"
        {mount}
      }}
    }}
  }}
}}
"""


def parsed(volume: str = "", mount: str = ""):  # type: ignore[no-untyped-def]
    return parse_text(JOB.format(volume=volume, mount=mount), "db.hcl")


@pytest.mark.parametrize(("volume", "mount", "message"), [
    ('type = "csi"', "", 'volume type "csi" is not supported'),
    ("mount_options = {}", "", "cannot have mount options"),
    ('access_mode = "single-node-reader-only"', "", "needs read_only = true"),
    ('access_mode = "multi-node"', "", "cannot be mounted with multi-node access mode"),
    ("", 'propagation_mode = "bidirectional"', 'propagation_mode "bidirectional" is not supported'),
    ("", 'destination = "/local/x"', "cannot mount a volume at /local/x"),
    ("", 'volume = "nope"', "Volume Mount (0) references undefined volume nope"),
])  # fmt: skip
def test_invalid_volumes_are_file_line_errors(volume: str, mount: str, message: str) -> None:
    text = JOB.format(volume=volume, mount=mount)
    if 'destination = "/local' in mount or 'volume = "nope"' in mount:
        key = "destination" if "destination" in mount else "volume"
        text = text.replace(f'        {key} = ' + ('"${NOMAD_TASK_NAME}-data"' if key == "destination" else '"data"') + "\n", "")
    r = parse_text(text, "db.hcl")
    assert not r.ok and any(message in p.message for p in r.problems), r.problems
    assert all(p.line for p in r.problems)


def host(volumes: dict[str, bool]) -> Host:
    return Host({"driver.exec": "true", "attr.kernel.name": "linux"}, volumes=volumes)


def test_missing_or_read_only_volume_blocks_the_job() -> None:
    r = parsed()
    desired = Desired({"db": r.jobs[0]}, {})
    p = plan(desired, Observed(), host({}), 0.0)
    assert len(p.blocked) == 2 and not p.start
    assert 'Constraint "missing compatible host volumes"' in p.blocked[0].reason
    assert '"pg" is not on this node' in p.blocked[0].reason
    p = plan(desired, Observed(), host({"pg": True}), 0.0)
    assert p.blocked and "read-only on this node" in p.blocked[0].reason
    assert len(plan(desired, Observed(), host({"pg": False}), 0.0).start) == 2
    ro = Desired({"db": parsed(volume="read_only = true").jobs[0]}, {})
    assert len(plan(ro, Observed(), host({"pg": True}), 0.0).start) == 2


def test_per_alloc_volumes_use_the_instance_index() -> None:
    spec = parsed(volume="per_alloc = true").jobs[0]
    desired = Desired({"db": spec}, {})
    p = plan(desired, Observed(), host({"pg[0]": False}), 0.0)
    assert p.blocked and '"pg[1]" is not on this node' in p.blocked[0].reason
    node = NodeConfig(host_volumes={"pg[0]": ("/srv/a", False), "pg[1]": ("/srv/b", True)})
    cfg0 = task_config(spec, SlotKey("db", "g", 0, "t"), node, {})
    cfg1 = task_config(spec, SlotKey("db", "g", 1, "t"), node, {})
    assert (cfg0.volumes[0].source, cfg0.volumes[0].destination, cfg0.volumes[0].read_only) == (
        "/srv/a", "/t-data", False)  # fmt: skip
    assert cfg1.volumes[0].source == "/srv/b" and cfg1.volumes[0].read_only  # the node says so
    spec = parsed(mount="read_only = true").jobs[0]
    cfg = task_config(spec, SlotKey("db", "g", 0, "t"),
                      NodeConfig(host_volumes={"pg": ("/srv/p", False)}), {})  # fmt: skip
    assert cfg.volumes[0].read_only and cfg.dns == DnsConfig(("10.0.0.53",))


def test_resolv_conf_keeps_the_hosts_values_for_empty_fields() -> None:
    hostconf = resolvconf.parse("# c\nnameserver 1.1.1.1\nsearch a b\ndomain c\noptions ndots:2\n")
    assert hostconf == DnsConfig(("1.1.1.1",), ("c",), ("ndots:2",))
    assert resolvconf.render(DnsConfig(("9.9.9.9",)), hostconf) == (
        "nameserver 9.9.9.9\nsearch c\noptions ndots:2\n")  # fmt: skip
    assert resolvconf.render(DnsConfig((), ("x.test",), ("edns0",)), hostconf) == (
        "nameserver 1.1.1.1\nsearch x.test\noptions edns0\n")  # fmt: skip


def test_volumes_and_dns_survive_nomads_json() -> None:
    import json

    from reconciler.service import jobjson, nomad

    spec = parsed(volume='read_only = true\n      per_alloc = true',
                  mount='read_only = true').jobs[0]  # fmt: skip
    as_json = json.loads(json.dumps(nomad.job(spec.id, spec.job.model_dump(mode="json"), None, 0)))
    group = as_json["TaskGroups"][0]
    assert group["Volumes"]["data"]["Source"] == "pg" and group["Volumes"]["data"]["PerAlloc"]
    assert group["Tasks"][0]["VolumeMounts"][0]["Destination"] == "${NOMAD_TASK_NAME}-data"
    assert group["Networks"][0]["DNS"]["Servers"] == ["10.0.0.53"]
    again = parse_text(jobjson.to_hcl(as_json), "<json>")
    assert [s.canonical for s in again.jobs] == [spec.canonical], again.problems
