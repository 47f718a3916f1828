"""A port means one number everywhere: the task's NOMAD_*PORT* variables, the mapping a bridge
namespace publishes and the port the registry gives services and checks all come from
spec.ports, for host and bridge groups, static and dynamic ports, with and without `to`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.spec import ports
from reconciler.spec.models import Network, Port
from tests.unit.conftest import Harness, job

CASES = [  # network mode, port block, (host port is static, `to`)
    ("host", "static = 23001", (True, 0)),
    ("host", "", (False, 0)),
    ("host", "to = 8080", (False, 8080)),
    ("bridge", "static = 23002", (True, 0)),
    ("bridge", "", (False, 0)),
    ("bridge", "to = 8080", (False, 8080)),
    ("bridge", "static = 23003\n to = 8080", (True, 8080)),
    ("bridge", "to = -1", (False, 0)),
    ("bridge", "to = 0", (False, 0)),  # was NOMAD_HOST_PORT_http=0 while 2xxxx was published
]


@pytest.mark.parametrize(("mode", "block", "shape"), CASES)
def test_env_follows_nomads_addports(mode: str, block: str, shape: tuple[bool, int]) -> None:
    static, to = shape
    fields = dict(line.strip().split(" = ") for line in block.split("\n") if line)
    network = Network(mode=mode, port={"http": Port(**{k: int(v) for k, v in fields.items()})})
    [p] = ports.allocated(network, "web/g/0").values()
    assert p.value == (int(fields["static"]) if static else ports.dynamic_port("web/g/0", "http"))
    assert ports.DYNAMIC_PORTS[0] <= p.value < ports.DYNAMIC_PORTS[1] or static
    env = ports.env({"http": p}, "127.0.0.1")
    assert env["NOMAD_HOST_PORT_http"] == str(p.value)  # never 0, in any mode
    assert env["NOMAD_PORT_http"] == env["NOMAD_ALLOC_PORT_http"] == str(to or p.value)
    assert env["NOMAD_ADDR_http"] == f"127.0.0.1:{p.value}"  # the host's port, not `to`


def test_a_dynamic_port_is_stable_per_instance_and_label() -> None:
    assert ports.dynamic_port("web/g/0", "http") == ports.dynamic_port("web/g/0", "http")
    assert len({ports.dynamic_port(f"web/g/{i}", "http") for i in range(20)}) > 1


PORT = st.builds(Port, static=st.none() | st.integers(1, 65535), to=st.none() | st.integers(-1, 65535))


@given(st.sampled_from(["host", "bridge", "none"]),
       st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), PORT, max_size=4),
       st.integers(0, 50))  # fmt: skip
def test_every_reader_of_a_port_sees_one_pair_of_numbers(
    mode: str, block: dict[str, Port], idx: int
) -> None:
    network = Network(mode=mode, port=block)
    alloc = f"web/g/{idx}"
    got = ports.allocated(network, alloc)
    env = ports.env(got, "127.0.0.1")
    for label, p in got.items():
        assert 1 <= p.value <= 65535 and p.value == (block[label].static or p.value)
        assert p.inside == (p.to or p.value) and (p.to == 0 or p.to == block[label].to)
        assert env[f"NOMAD_HOST_PORT_{label}"] == str(ports.service_port(got, label, False))
        assert env[f"NOMAD_PORT_{label}"] == str(ports.service_port(got, label, True))
        assert got == ports.allocated(network, alloc)  # stable


def port_job(mode: str, block: str, address_mode: str = "auto") -> str:
    return job(
        extra_group=f'network {{\n mode = "{mode}"\n port "http" {{\n {block}\n }}\n}}',
        extra_task=f'service {{\n name = "api"\n port = "http"\n'
        f' address_mode = "{address_mode}"\n}}',
    )


@pytest.mark.parametrize(("mode", "block", "shape"), CASES)
def test_service_port_env_and_published_mapping_agree(
    h: Harness, mode: str, block: str, shape: tuple[bool, int]
) -> None:
    h.write("web.hcl", port_job(mode, block))
    h.step()
    [config] = h.fake.started
    env = config.env
    [mapping] = config.ports
    assert str(mapping.host_port) == env["NOMAD_HOST_PORT_http"]
    assert str(mapping.task_port or mapping.host_port) == env["NOMAD_PORT_http"]
    with h.store.engine.connect() as c:
        [(address, port)] = c.exec_driver_sql("SELECT address, port FROM services").all()
    if mode == "bridge":  # auto: the namespace's address and the port inside it
        assert (address, str(port)) == (h.fake.alloc_address("web/g/0"), env["NOMAD_PORT_http"])
    else:
        assert (address, str(port)) == ("127.0.0.1", env["NOMAD_HOST_PORT_http"])


def test_a_host_address_mode_service_of_a_bridge_group_has_the_host_port(h: Harness) -> None:
    h.write("web.hcl", port_job("bridge", "to = 8080", address_mode="host"))
    h.step()
    [config] = h.fake.started
    with h.store.engine.connect() as c:
        [(address, port)] = c.exec_driver_sql("SELECT address, port FROM services").all()
    assert (address, str(port)) == ("127.0.0.1", config.env["NOMAD_HOST_PORT_http"])
    assert port != 8080


def test_a_custom_address_is_registered_with_the_host_port(h: Harness) -> None:
    """Nomad's GetAddress: a custom address with a port label gets the mapping's host value;
    routing from it to the group is the user's."""
    h.write("web.hcl", port_job("bridge", "to = 8080").replace(
        'address_mode = "auto"', 'address_mode = "auto"\n address = "10.1.2.3"'))
    h.step()
    [config] = h.fake.started
    with h.store.engine.connect() as c:
        [(address, port)] = c.exec_driver_sql("SELECT address, port FROM services").all()
    assert (address, str(port)) == ("10.1.2.3", config.env["NOMAD_HOST_PORT_http"])
