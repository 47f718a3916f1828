"""The job files' desired state and the children (periodic launches, dispatches) are merged
into one map once, not at every step of a pass: again only when the files or the children
changed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from reconciler.service import children as children_module
from tests.unit.conftest import Harness, job

PARAM = job("w", typ="batch", extra_job=(
    'parameterized {\n payload = "optional"\n meta_optional = ["who"]\n }'
), env='FAKE_RUN_FOR = "100"')  # fmt: skip


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []

    def counting(obj: Any, **changes: Any) -> Any:
        made.append(1)
        return replace(obj, **changes)

    monkeypatch.setattr(children_module, "replace", counting)
    return made


def test_a_pass_with_children_merges_once_per_change(h: Harness, copies: list[int]) -> None:
    h.write("w.hcl", PARAM)
    h.step()
    reply = h.service.request("dispatch", job="w", meta={"who": "a"})
    h.step()
    child = reply.result(1)["child"]
    assert h.states(child) == {f"{child}/g/0/t": "running"}
    copies.clear()
    h.service.reconcile()  # a full pass: nothing changed, so the last merge serves it all
    assert copies == []
    kids, files = h.service.children, h.service.desired
    assert files is not None
    merged = kids.merged(files)
    assert merged is kids.merged(merged) and set(merged.jobs) == {"w", child}
    kids.add(replace(kids.specs[child], id="w/other"))
    again = kids.merged(files)
    assert copies == [1] and set(again.jobs) == {"w", child, "w/other"}
    kids.drop(("w/other",))
    assert set(kids.merged(files).jobs) == {"w", child} and copies == [1, 1]
