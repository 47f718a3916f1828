"""Read-only questions the CLI asks. Plain rows out, no ORM objects."""

from __future__ import annotations

from typing import Any

from reconciler.db.store import Store


def _rows(store: Store, sql: str, **params: Any) -> list[dict[str, Any]]:
    return store.rows(sql, **params)


def jobs(store: Store) -> list[dict[str, Any]]:
    return _rows(
        store,
        """
        SELECT j.id, j.status, j.reason, j.paused, j.source_file,
               a.digest AS applied, a.git_commit AS applied_commit,
               t.digest AS attempted, t.git_commit AS attempted_commit, t.state AS attempted_state
        FROM jobs j LEFT JOIN job_versions a ON a.id = j.applied_version_id
                    LEFT JOIN job_versions t ON t.id = j.attempted_version_id
        WHERE j.status != 'removed' ORDER BY j.id""",
    )


def slots(store: Store, job: str | None = None) -> list[dict[str, Any]]:
    return _rows(
        store,
        """
        SELECT s.job_id, s.group_name, s.idx, s.task, s.state, s.reason, s.restarts,
               s.next_start_at, i.pid, i.started_at, i.task_dir, i.id AS instance_id,
               (SELECT count(*) FROM task_instances x WHERE x.job_id = s.job_id
                  AND x.group_name = s.group_name AND x.idx = s.idx AND x.task = s.task) AS runs
        FROM task_slots s LEFT JOIN task_instances i ON i.id = s.instance_id
        WHERE (:job IS NULL OR s.job_id = :job)
        ORDER BY s.job_id, s.group_name, s.idx, s.task""",
        job=job,
    )


def spec_errors(store: Store) -> list[dict[str, Any]]:
    return _rows(
        store,
        """
        SELECT file, line, col, path, message, severity FROM spec_errors
        WHERE cleared_at IS NULL ORDER BY file, line""",
    )


def runs(
    store: Store, job: str | None, task: str | None, since: float | None, limit: int
) -> list[dict[str, Any]]:
    return _rows(
        store,
        """
        SELECT id, job_id, group_name, idx, task, pid, started_at, finished_at, exit_code,
               signal, oom_killed, outcome, error
        FROM task_instances
        WHERE (:job IS NULL OR job_id = :job) AND (:task IS NULL OR task = :task)
          AND (:since IS NULL OR started_at >= :since)
        ORDER BY id DESC LIMIT :limit""",
        job=job,
        task=task,
        since=since,
        limit=limit,
    )


def events(
    store: Store, job: str | None, task: str | None, since: float | None, limit: int
) -> list[dict[str, Any]]:
    return _rows(
        store,
        """
        SELECT id, at, job_id, group_name, idx, task, instance_id, type, message
        FROM task_events
        WHERE (:job IS NULL OR job_id = :job) AND (:task IS NULL OR task = :task OR task = '')
          AND (:since IS NULL OR at >= :since)
        ORDER BY id DESC LIMIT :limit""",
        job=job,
        task=task,
        since=since,
        limit=limit,
    )


def services(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Registered service instances with their checks' worst status ("" without checks)."""
    return _rows(
        store,
        """
        SELECT s.name, s.address, s.port, s.port_label, s.tags, s.provider, s.job_id,
               s.group_name, s.idx, s.task, s.alloc_id, s.registered_at,
               (SELECT group_concat(c.name || '=' || c.status, char(10)) FROM checks c
                 WHERE c.job_id = s.job_id AND c.group_name = s.group_name AND c.idx = s.idx
                   AND c.task = s.task AND c.service = s.name) AS checks
        FROM services s WHERE (:name IS NULL OR s.name = :name)
        ORDER BY s.name, s.job_id, s.group_name, s.idx, s.task""",
        name=name,
    )


def checks(store: Store, job: str | None = None) -> list[dict[str, Any]]:
    return _rows(
        store,
        """
        SELECT job_id, group_name, idx, task, service, name, type, status, output, since
        FROM checks WHERE (:job IS NULL OR job_id = :job)
        ORDER BY job_id, group_name, idx, task, service, name""",
        job=job,
    )
