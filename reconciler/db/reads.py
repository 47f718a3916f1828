"""Read-only questions the HTTP API and the dashboard ask: plain rows out, no ORM objects.

Each function is one read transaction on a read-only store; the service's writer is never
blocked by them (WAL)."""

from __future__ import annotations

from typing import Any

from reconciler.db.store import Store

Row = dict[str, Any]


def _rows(store: Store, sql: str, **params: Any) -> list[Row]:
    return store.rows(sql, **params)


def jobs(store: Store, job: str | None = None) -> list[Row]:
    """Jobs with their applied and attempted versions (numbered from 0 per job, as Nomad's)."""
    return _rows(
        store,
        """
        SELECT j.id, j.status, j.reason, j.paused, j.source_file, j.created_at, j.updated_at,
               j.attempted_at, a.id AS applied_vid, a.canonical AS applied_canonical,
               a.digest AS applied, a.git_commit AS applied_commit, a.first_seen AS applied_at,
               t.id AS attempted_vid, t.canonical AS attempted_canonical, t.digest AS attempted,
               t.state AS attempted_state,
               (SELECT count(*) FROM job_versions v WHERE v.job_id = j.id
                  AND v.id < coalesce(a.id, t.id)) AS version
        FROM jobs j LEFT JOIN job_versions a ON a.id = j.applied_version_id
                    LEFT JOIN job_versions t ON t.id = j.attempted_version_id
        WHERE j.status != 'removed' AND (:job IS NULL OR j.id = :job) ORDER BY j.id""",
        job=job,
    )


def versions(store: Store, job: str) -> list[Row]:
    """Every version of a job's file the service has seen, oldest first."""
    return _rows(
        store,
        """
        SELECT id, digest, canonical, source_file, git_commit, first_seen, state, error
        FROM job_versions WHERE job_id = :job ORDER BY id""",
        job=job,
    )


def slots(store: Store, job: str | None = None) -> list[Row]:
    """Task slots with their current (or last) run."""
    return _rows(
        store,
        """
        SELECT s.job_id, s.group_name, s.idx, s.task, s.state, s.reason, s.restarts,
               s.next_start_at, s.updated_at, s.stop_intent, s.version_id, s.reschedule,
               i.id AS instance_id, i.pid, i.started_at, i.finished_at, i.exit_code,
               i.signal, i.oom_killed, i.outcome,
               (SELECT min(x.started_at) FROM task_instances x WHERE x.job_id = s.job_id
                  AND x.group_name = s.group_name AND x.idx = s.idx AND x.task = s.task)
                  AS first_started,
               (SELECT max(x.finished_at) FROM task_instances x WHERE x.job_id = s.job_id
                  AND x.group_name = s.group_name AND x.idx = s.idx AND x.task = s.task)
                  AS last_finished,
               (SELECT count(*) FROM task_instances x WHERE x.job_id = s.job_id
                  AND x.group_name = s.group_name AND x.idx = s.idx AND x.task = s.task) AS runs
        FROM task_slots s LEFT JOIN task_instances i ON i.id = s.instance_id
        WHERE (:job IS NULL OR s.job_id = :job)
        ORDER BY s.job_id, s.group_name, s.idx, s.task""",
        job=job,
    )


def task_events(
    store: Store, job: str | None = None, after: int = 0, limit: int = 500,
    newest: bool = False,
) -> list[Row]:  # fmt: skip
    """Events with an id above `after`, oldest first (or the newest `limit`, still in order)."""
    rows = _rows(
        store,
        f"""
        SELECT id, at, job_id, group_name, idx, task, instance_id, type, message
        FROM task_events WHERE id > :after AND (:job IS NULL OR job_id = :job)
        ORDER BY id {"DESC" if newest else "ASC"} LIMIT :limit""",
        job=job,
        after=after,
        limit=limit,
    )
    return rows[::-1] if newest else rows


def last_event_id(store: Store) -> int:
    rows = _rows(store, "SELECT coalesce(max(id), 0) AS n FROM task_events")
    return int(rows[0]["n"])


def runs(
    store: Store, job: str | None = None, since: float | None = None, limit: int = 200
) -> list[Row]:
    return _rows(
        store,
        """
        SELECT id, job_id, group_name, idx, task, pid, started_at, finished_at, exit_code,
               signal, oom_killed, outcome, error
        FROM task_instances
        WHERE (:job IS NULL OR job_id = :job) AND (:since IS NULL OR started_at >= :since)
        ORDER BY id DESC LIMIT :limit""",
        job=job,
        since=since,
        limit=limit,
    )


def activity(store: Store, since: float, bucket: float) -> list[Row]:
    """Starts, exits and restarts per time bucket since `since`: the dashboard's chart."""
    return _rows(
        store,
        """
        SELECT CAST((at - :since) / :bucket AS INTEGER) AS slot,
               sum(type = 'Started') AS starts, sum(type = 'Terminated') AS exits,
               sum(type = 'Restarting') AS restarts
        FROM task_events WHERE at >= :since GROUP BY slot ORDER BY slot""",
        since=since,
        bucket=bucket,
    )


def spec_errors(store: Store) -> list[Row]:
    return _rows(
        store,
        """
        SELECT file, line, col, path, message, severity, first_seen FROM spec_errors
        WHERE cleared_at IS NULL ORDER BY file, line""",
    )
