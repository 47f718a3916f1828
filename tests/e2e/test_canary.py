"""A canary deployment on real tasks: the canary runs the new version beside the old
instances until `reconciler promote` finishes the update."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.service import ServiceProc
from tests.e2e.test_service import job, write

UPDATE = 'update {\n canary = 1\n min_healthy_time = "1s"\n healthy_deadline = "1m"\n}'


def web(v: str) -> str:
    return job("web", count=2, extra=f'env {{ V = "{v}" }}', update=UPDATE)


def versions(svc: ServiceProc) -> dict[str, str]:
    """Each running instance's V, read from its process's environment."""
    out = {}
    for key, pid in svc.pids("web").items():
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        out[key] = next((e[2:].decode() for e in env if e.startswith(b"V=")), "")
    return out


def status(svc: ServiceProc) -> tuple[str, str]:
    rows = svc.query("SELECT status, reason FROM jobs WHERE id = 'web'")
    return (rows[0][0], rows[0][1]) if rows else ("", "")


def test_a_canary_runs_beside_the_old_instances_until_promoted(svc: ServiceProc) -> None:
    svc.start()
    write(svc, "web.hcl", web("1"))
    svc.wait(lambda: status(svc)[0] == "ready" and len(svc.pids("web")) == 2, 60)
    old = svc.pids("web")
    write(svc, "web.hcl", web("2"))
    beside = {"web/g/0/t": "1", "web/g/1/t": "1", "web/g/2/t": "2"}
    svc.wait(lambda: versions(svc) == beside, 60, "the canary beside the old instances")
    svc.wait(lambda: "waiting for promotion (1/1 canaries healthy)" in status(svc)[1], 60)
    assert {k: p for k, p in svc.pids("web").items() if k in old} == old
    assert "waiting for promotion" in svc.cli("status", "web").stdout
    assert "canaries" in svc.cli("promote", "web").stdout
    done = {"web/g/0/t": "2", "web/g/1/t": "2"}
    svc.wait(lambda: versions(svc) == done and "web/g/2/t" not in svc.states("web")
             and status(svc)[0] == "ready", 90, "the update after promotion")  # fmt: skip
