"""An upgrade of reconciler must not change the digest of a job whose file did not change: every
task of it would restart ("spec changed"), or re-render. These digests are those main gave at
4aff527 (2026-12-02); a field added to a model since must dump as before while it is unset
(`Grown.ADDED_LATER`). A deliberate change of what a digest covers changes these values, and
says so in its commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.plan import task_digest
from reconciler.spec.load import parse_text

GOLDEN = Path(__file__).parent / "golden"
DIGESTS = {
    "plain.hcl": {
        ("g", "t"): "630d2f034b3d1ef5.4f37fdb2ef43b933",
        "job": "52c0d1f1ad541cdd154b5684cd81001e93009b14d48965c924cf4497c7941d36",
    },
    "rich.hcl": {
        ("g", "init"): "9d7b3637b5a5cd6c.4f53cda18c2baa0c",
        ("g", "t"): "03b718432ef22ff9.4f37fdb2ef43b933",
        "job": "272d297a290b4a6e2ee6e58d62dafd8a563cf4d77970a604cf5583be7b0bf7e1",
    },
}


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_an_unchanged_file_keeps_its_digests_across_an_upgrade(name: str) -> None:
    r = parse_text((GOLDEN / name).read_text(), name)
    assert r.ok, r.problems
    spec = r.jobs[0]
    got: dict[object, str] = {"job": spec.digest}
    for g, group in spec.job.group.items():
        for t in group.task:
            got[(g, t)] = task_digest(spec.job, g, t)
    assert got == DIGESTS[name]
