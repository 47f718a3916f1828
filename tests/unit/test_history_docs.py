"""Every SQL query in docs/history.md runs against a real store with real history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.conftest import Harness, job

DOC = Path(__file__).parents[2] / "docs" / "history.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


def test_the_doc_has_a_dozen_questions() -> None:
    assert len(QUERIES) >= 12


@pytest.mark.parametrize("sql", QUERIES, ids=[f"q{i}" for i in range(len(QUERIES))])
def test_query_runs(h: Harness, sql: str) -> None:
    h.write(
        "web.hcl",
        job(
            env='FAKE_RUN_FOR = "1"\n FAKE_EXIT_CODE = "1"', extra_group='restart { delay = "1s" }'
        ),
    )
    h.write("bad.hcl", "job {")
    h.step()
    h.step(1)
    h.step(2)
    h.fake.finish("web/g/0/t", 137, 9, oom=True)
    h.step()
    with h.store.engine.connect() as c:
        rows = c.exec_driver_sql(sql).all()
    if "oom_killed = 1" in sql:
        assert rows
    if "FROM v_restarts" in sql or "HAVING count(*) > 1" in sql:
        assert rows
