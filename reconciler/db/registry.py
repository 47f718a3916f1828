"""The local service registry and check status, in plain SQL: registrations are kept in step
with running tasks, check transitions (not every probe) become history."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.db.engine import among
from reconciler.db.hot import HotPaths
from reconciler.db.snapshot import CheckRecord

OWNER = ("job_id", "group_name", "idx", "task")


@dataclass(frozen=True)
class ServiceEntry:
    job: str
    group: str
    idx: int
    task: str  # "" for a group service
    name: str
    tags: tuple[str, ...]
    address: str
    port: int
    port_label: str
    alloc_id: str
    provider: str

    def key(self) -> tuple[Any, ...]:
        return (self.job, self.group, self.idx, self.task, self.name, self.port_label)


@dataclass(frozen=True)
class CheckEntry:
    job: str
    group: str
    idx: int
    task: str
    service: str
    name: str
    type: str
    on_update: str
    identity: str  # a new identity (task restarted, new version) starts pending

    def key(self) -> tuple[Any, ...]:
        return (self.job, self.group, self.idx, self.task, self.service, self.name)


@dataclass(frozen=True)
class Transition:
    check: CheckEntry
    previous: str
    status: str
    output: str
    at: float
    instance_id: int | None = None


def _in(column: str, jobs: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    if jobs is None:
        return "", ()
    where, args = among(jobs)
    return f" WHERE {column}{where}", args


class Registry(HotPaths):
    def sync_registry(
        self, jobs: Collection[str] | None, services: Sequence[ServiceEntry],
        checks: Sequence[CheckEntry], now: float,
    ) -> None:  # fmt: skip
        """Make the registry of `jobs` (all when None) hold exactly these entries."""
        where, args = _in("job_id", jobs)
        with self._tx() as db:
            have = {
                tuple(r[1:]): r[0]
                for r in db.execute(
                    "SELECT id, job_id, group_name, idx, task, name, port_label, address, port,"
                    f" tags, alloc_id, provider FROM services{where}", args,
                )
            }  # fmt: skip
            want = {
                (*s.key(), s.address, s.port, json.dumps(list(s.tags)), s.alloc_id, s.provider): s
                for s in services
            }
            gone = [(rid,) for k, rid in have.items() if k not in want]
            db.executemany("DELETE FROM services WHERE id = ?", gone)
            db.executemany(
                "INSERT INTO services (job_id, group_name, idx, task, name, port_label, address,"
                " port, tags, alloc_id, provider, registered_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(*k, now) for k in want if k not in have],
            )
            rows = {
                tuple(r[1:7]): (r[0], r[7])
                for r in db.execute(
                    "SELECT id, job_id, group_name, idx, task, service, name, identity"
                    f" FROM checks{where}", args,
                )
            }  # fmt: skip
            wanted = {c.key(): c for c in checks}
            db.executemany(
                "DELETE FROM checks WHERE id = ?",
                [(rid,) for k, (rid, _) in rows.items() if k not in wanted],
            )
            for k, c in wanted.items():
                if (old := rows.get(k)) is not None and old[1] == c.identity:
                    continue
                if old is not None:
                    db.execute("DELETE FROM checks WHERE id = ?", (old[0],))
                db.execute(
                    "INSERT INTO checks (job_id, group_name, idx, task, service, name, type,"
                    " status, output, since, on_update, identity, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,'pending','',?,?,?,?)",
                    (*k, c.type, now, c.on_update, c.identity, now),
                )

    def registered(self, provider: str) -> list[ServiceEntry]:
        """Every registered instance of a provider, in a stable order."""
        with self._connection() as raw:
            rows = raw.execute(
                "SELECT job_id, group_name, idx, task, name, tags, address, port, port_label,"
                " alloc_id, provider FROM services WHERE provider = ?"
                " ORDER BY job_id, group_name, idx, task, name, port_label", (provider,),
            ).fetchall()  # fmt: skip
        return [ServiceEntry(j, g, i, t, n, tuple(json.loads(tags)), a, p, label, aid, prov)
                for j, g, i, t, n, tags, a, p, label, aid, prov in rows]  # fmt: skip

    def record_transitions(self, transitions: Sequence[Transition]) -> None:
        """A check changed status: its row moves on and history gets a line (only while the
        check is still registered with the same identity)."""
        with self._tx() as db:
            for t in transitions:
                c = t.check
                cur = db.execute(
                    "UPDATE checks SET status = ?, output = ?, since = ?, updated_at = ?"
                    " WHERE job_id = ? AND group_name = ? AND idx = ? AND task = ? AND service = ?"
                    " AND name = ? AND identity = ?",
                    (t.status, t.output, t.at, t.at, *c.key(), c.identity),
                )
                if cur.rowcount:
                    db.execute(
                        "INSERT INTO check_events (at, job_id, group_name, idx, task, service,"
                        " check_name, previous, status, output, instance_id)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (t.at, *c.key(), t.previous, t.status, t.output, t.instance_id),
                    )


def read_checks(db: Any, jobs: Collection[str] | None) -> dict[str, tuple[CheckRecord, ...]]:
    """Current check status by group instance (job/group/idx), for the planner."""
    where, args = _in("job_id", jobs)
    out: dict[str, list[CheckRecord]] = {}
    for job, group, idx, task, service, name, status, since, on_update, identity in db.execute(
        "SELECT job_id, group_name, idx, task, service, name, status, since, on_update, identity"
        f" FROM checks{where}", args,
    ):  # fmt: skip
        out.setdefault(f"{job}/{group}/{idx}", []).append(
            CheckRecord(task, service, name, status, since, on_update, identity)
        )
    return {k: tuple(v) for k, v in out.items()}
