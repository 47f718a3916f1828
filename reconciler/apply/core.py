"""The applier's state and what its steps share: the running tasks it knows, the effective
spec of each job, and how a slot's kill settings and restart policy are looked up."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from reconciler.db.snapshot import InstanceRecord, JobRecord, Observed, SlotKey, SlotRecord
from reconciler.db.store import Store
from reconciler.executor.base import Executor, NodeConfig, TaskConfig, TaskHandle
from reconciler.lifecycle import phase
from reconciler.plan import Action
from reconciler.spec.load import JobSpec
from reconciler.spec.models import RUNS_TO_COMPLETION, EffectiveRestart, Job, effective_restart
from reconciler.spec.template import ServiceSource, VariableSource


@dataclass
class Running:
    instance_id: int
    key: SlotKey
    handle: TaskHandle


@dataclass
class Bulk:
    """Starts running in the background: what they are for, and their results to come."""

    ready: list[tuple[Action, TaskConfig]]
    observed: Observed
    results: Future[list[TaskHandle | Exception]]


def handle_of(key: SlotKey, inst: InstanceRecord) -> TaskHandle:
    return TaskHandle(
        id=str(key), pid=inst.pid, shim_pid=inst.shim_pid, shim_start_ticks=inst.shim_start_ticks,
        boot_id=inst.boot_id, cgroup=inst.cgroup, task_dir=inst.task_dir,
        started_at=inst.started_at,
    )  # fmt: skip


@dataclass
class Core:
    store: Store
    executor: Executor
    node: NodeConfig
    attributes: Mapping[str, str]
    clock: Callable[[], float]
    jitter: Callable[[], float] = random.random
    on_change: Callable[[str], None] = lambda _line: None
    # a child job was launched or dispatched / children were garbage-collected
    on_launch: Callable[[JobSpec], None] = lambda _spec: None
    on_collect: Callable[[tuple[str, ...]], None] = lambda _ids: None
    running: dict[str, Running] = field(default_factory=dict)  # by task handle id
    specs: dict[str, JobSpec] = field(default_factory=dict)  # effective spec per job
    variables: VariableSource | None = None  # Nomad Variables for templates
    services: ServiceSource | None = None  # the service registry for templates
    on_fetched: Callable[[str], None] = lambda _task_id: None  # called from a download thread
    fetching: dict[str, SlotKey] = field(default_factory=dict)  # by task id: downloads running
    on_started: Callable[[], None] = lambda: None  # starts in the background ended (their thread)
    bulks: list[Bulk] = field(default_factory=list)  # starts running in the background
    # running siblings of a group instance being rescheduled, as now written: an exit read
    # with an older snapshot still finds them stopping for it
    rescheduled: dict[SlotKey, SlotRecord] = field(default_factory=dict)
    _background: ThreadPoolExecutor | None = None  # the thread they run on

    @property
    def live(self) -> frozenset[int]:
        return frozenset(r.instance_id for r in self.running.values())

    # ---- a whole plan ----
    def _kill_settings(self, key: SlotKey, observed: Observed) -> tuple[str, float, float]:
        job = self._job_model(key.job, observed.jobs.get(key.job))
        if job is None or key.group not in job.group or key.task not in job.group[key.group].task:
            return "SIGINT", 5.0, 0.0
        task = job.group[key.group].task[key.task]
        delay = task.shutdown_delay or job.group[key.group].shutdown_delay
        return task.kill_signal or "SIGINT", task.kill_timeout, delay

    def _job_model(self, job_id: str, record: JobRecord | None) -> Job | None:
        if job_id in self.specs:
            return self.specs[job_id].job
        if record and record.applied_canonical:
            return Job.model_validate_json(record.applied_canonical)
        return None

    def _policy(self, key: SlotKey) -> tuple[EffectiveRestart, bool] | None:
        spec = self.specs.get(key.job)
        if spec is None or key.group not in spec.job.group:
            return None
        group = spec.job.group[key.group]
        task = group.task.get(key.task)
        if task is None:
            return None
        ph = phase(task)
        on_success = (spec.job.type not in RUNS_TO_COMPLETION and ph in ("main", "sidecar")) or (
            ph == "poststart" and task.lifecycle is not None and task.lifecycle.sidecar
        )
        return effective_restart(spec.job, group, task), on_success

    def _release_empty_allocs(self, keys: tuple[SlotKey, ...], observed: Observed) -> None:
        gone = {k.alloc for k in keys}
        for slot in observed.slots.values():
            if slot.key.alloc in gone and slot.key not in keys:
                gone.discard(slot.key.alloc)
        for alloc in gone:
            self.executor.release(alloc)

    # ---- exits ----
