"""Reads scoped to a list of jobs: a long list is one JSON parameter, so every length of it is
the same prepared statement (SQLite keeps ~50 kB for a statement spelled out for 500 values,
and each connection keeps its last 128), and it reads the rows a spelled-out list read."""

from __future__ import annotations

import sqlite3

from reconciler.db.engine import SPELLED_OUT, among
from tests.unit.conftest import Harness, job

NAMES = ["a", "it's", "naïve", "x\"y", "", "%", "a,b", *(f"j{i}" for i in range(600))]


def test_a_long_list_reads_what_a_spelled_out_one_reads() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO jobs VALUES (?)", [(n,) for n in NAMES])
    for n in (0, SPELLED_OUT - 1, SPELLED_OUT, 40, 499):
        wanted = [*NAMES[:n], "absent"]
        where, args = among(wanted)
        got = {r[0] for r in db.execute(f"SELECT id FROM jobs WHERE id{where}", args)}
        assert got == set(NAMES[:n])
        assert ("json_each" in where) == (len(wanted) > SPELLED_OUT)


def test_every_length_of_a_long_list_is_one_statement() -> None:
    texts = {among([f"j{i}" for i in range(n)])[0] for n in range(SPELLED_OUT + 1, 501)}
    assert len(texts) == 1


def test_a_pass_scoped_to_many_jobs_reads_them_as_an_unscoped_read_does(h: Harness) -> None:
    for i in range(SPELLED_OUT + 4):
        h.write(f"j{i}.hcl", job(f"j{i}"))
    h.step()
    everything = h.store.observed()
    scope = {f"j{i}" for i in range(SPELLED_OUT + 2)}
    scoped = h.store.observed(jobs=scope)
    assert set(scoped.jobs) == scope
    assert {k: v for k, v in everything.slots.items() if k.job in scope} == scoped.slots
    assert {k: v for k, v in everything.jobs.items() if k in scope} == scoped.jobs
