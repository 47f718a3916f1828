"""Keeps the service registry and the check scheduler in step with what runs: a task's
services are registered while it runs (a group's while any of its tasks runs) and removed
when it stops. Derived from the observed state after every pass, written only on change."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.apply import handle_of
from reconciler.apply.rescheduling import RESCHEDULING
from reconciler.db.registry import CheckEntry, ServiceEntry
from reconciler.db.snapshot import Observed, SlotKey, SlotRecord
from reconciler.db.store import Store
from reconciler.executor.base import Executor
from reconciler.plan import canary, health
from reconciler.service import nomad
from reconciler.service.checks import CheckSpec, Key, Scheduler
from reconciler.service.probes import Target
from reconciler.spec import interpolate
from reconciler.spec import ports as port_spec
from reconciler.spec.load import JobSpec
from reconciler.spec.models import Group, Job
from reconciler.spec.services import Service, effective_checks, service_name
from reconciler.spec.template import Registration
from reconciler.taskconfig import alloc_id, task_env

LOOPBACK = "127.0.0.1"


# Stops and exits after which the slot starts again at once or after its restart delay.
_AGAIN = frozenset({"restart", "template", "check"})


def _running(s: SlotRecord) -> bool:
    return s.state == "running" and s.instance is not None


def _restarting(s: SlotRecord) -> bool:
    """A task between two runs of the same group instance: stopped to start again, or
    waiting out its restart policy's delay (a pending slot that ran and was not replaced). An
    instance that failed for good and waits to be rescheduled is not: Nomad's failed
    allocation has deregistered its services, its replacement registers its own."""
    if s.state == "stopping":
        return s.stop_intent in _AGAIN
    return (s.state == "pending" and s.reason not in ("", "update")
            and not s.reason.startswith(RESCHEDULING))  # fmt: skip


@dataclass
class Registrar:
    store: Store
    executor: Executor
    attributes: Mapping[str, str]
    scheduler: Scheduler
    clock: Callable[[], float]
    _last: dict[str, tuple[object, ...]] = field(default_factory=dict)
    _models: dict[str, Job] = field(default_factory=dict)
    # job -> (what its registrations are made of, the registrations built from it)
    _built: dict[str, tuple[tuple[object, ...], tuple[list[ServiceEntry], dict[Key, CheckSpec]]]] = (
        field(default_factory=dict))  # fmt: skip
    _synced: bool = False

    def sync(self, observed: Observed, specs: Mapping[str, JobSpec],
             scope: Collection[str] | None) -> bool:  # fmt: skip
        """Register and deregister; True when the registry changed."""
        by_job: dict[str, list[SlotRecord]] = {}
        for s in observed.slots.values():
            by_job.setdefault(s.key.job, []).append(s)
        jobs = set(by_job) | set(self._last) if scope is None else set(scope)
        changed: dict[str, tuple[object, ...]] = {}  # job -> what is now registered
        services: list[ServiceEntry] = []
        checks: dict[Key, CheckSpec] = {}
        every: list[tuple[list[ServiceEntry], dict[Key, CheckSpec]]] = []
        if scope is None:  # forget what was built for jobs gone
            for gone in self._built.keys() - jobs:
                del self._built[gone]
        for job_id in sorted(jobs):
            svc, chk = self._build(job_id, by_job.get(job_id, []), observed, specs)
            every.append((svc, chk))
            fingerprint: tuple[object, ...] = (
                tuple(svc), tuple(sorted(chk.values(), key=lambda c: c.entry.key())),
            )  # fmt: skip
            if self._last.get(job_id, ((), ())) == fingerprint:
                continue
            changed[job_id] = fingerprint
            services += svc
            checks.update(chk)
        everything = scope is None and not self._synced
        if not changed and not everything:
            return False
        # The first full pass also drops what an earlier run left for jobs gone since.
        which = None if everything else list(changed)
        if everything:
            services, checks = [], {}
            for svc, chk in every:
                services += svc
                checks.update(chk)
        self.store.sync_registry(which, services, [c.entry for c in checks.values()],
                                 self.clock())  # fmt: skip
        self.scheduler.update(which, checks)
        self._synced = True
        for job_id, fingerprint in changed.items():  # remembered once written
            if fingerprint != ((), ()):
                self._last[job_id] = fingerprint
            else:
                self._last.pop(job_id, None)
        return True

    def _build(self, job_id: str, slots: list[SlotRecord], observed: Observed,
               specs: Mapping[str, JobSpec]) -> tuple[list[ServiceEntry], dict[Key, CheckSpec]]:  # fmt: skip
        """A job's services and checks, built again only when what they are made of changed:
        its running instances, its file's version and its applied version."""
        spec, rec = specs.get(job_id), observed.jobs.get(job_id)
        inputs: tuple[object, ...] = (
            spec.digest if spec else None, rec.applied_digest if rec else None,
            rec is not None and rec.promoted,
            tuple((s.key, s.version_digest, s.instance, s.core_ids, s.ports) for s in slots
                  if _running(s) or _restarting(s)),
        )  # fmt: skip
        built = self._built.get(job_id)
        if built is not None and built[0] == inputs:
            return built[1]
        out = self._desired(job_id, slots, observed, specs)
        self._built[job_id] = (inputs, out)
        return out

    def _job(self, job_id: str, digest: str, observed: Observed,
             specs: Mapping[str, JobSpec]) -> Job | None:  # fmt: skip
        spec = specs.get(job_id)
        if spec is not None and (spec.digest == digest or not digest):
            return spec.job
        if digest in self._models:
            return self._models[digest]
        rec = observed.jobs.get(job_id)
        if rec is not None and rec.applied_digest == digest and rec.applied_canonical:
            if len(self._models) > 1000:
                self._models.clear()
            job = self._models[digest] = Job.model_validate_json(rec.applied_canonical)
            return job
        return spec.job if spec is not None else None

    def _desired(self, job_id: str, slots: list[SlotRecord], observed: Observed,
                 specs: Mapping[str, JobSpec]) -> tuple[list[ServiceEntry], dict[Key, CheckSpec]]:  # fmt: skip
        services: list[ServiceEntry] = []
        checks: dict[Key, CheckSpec] = {}
        spec = specs.get(job_id)
        deploy = canary.deployment(spec, observed.jobs.get(job_id)) if spec is not None else None
        # A group's services are registered for its instance's life, through its tasks'
        # restarts (Nomad's group service hook); a task's only while the task runs.
        allocs: dict[tuple[str, int], list[SlotRecord]] = {}
        for s in slots:
            if _running(s) or _restarting(s):
                allocs.setdefault((s.key.group, s.key.idx), []).append(s)
        for (gname, idx), members in sorted(allocs.items()):
            running = [s for s in members if _running(s)]
            version = (running or members)[0].version_digest
            job = self._job(job_id, version, observed, specs)
            if job is None or gname not in job.group:
                continue
            group = job.group[gname]
            by_task = {s.key.task: s for s in members}
            # an unpromoted canary is registered with its services' canary_tags (Nomad's)
            unpromoted = (deploy is not None and not deploy.promoted and spec is not None
                          and version == spec.digest and deploy.is_canary(members[0].key))  # fmt: skip
            for s in running:
                job_s = self._job(job_id, s.version_digest, observed, specs) or job
                g = job_s.group.get(gname)
                task = g.task.get(s.key.task) if g else None
                for svc in task.service if task else ():
                    self._add(job_id, job_s, gname, idx, s.key.task, svc, by_task, s,
                              services, checks, canary=unpromoted)  # fmt: skip
            for svc in group.service:
                self._add(job_id, job, gname, idx, "", svc, by_task, None, services, checks,
                          version=version, canary=unpromoted)  # fmt: skip
        return services, checks

    def _add(
        self, job_id: str, job: Job, gname: str, idx: int, tname: str, svc: Service,
        by_task: Mapping[str, SlotRecord], owner: SlotRecord | None,
        services: list[ServiceEntry], checks: dict[Key, CheckSpec], version: str = "",
        canary: bool = False,
    ) -> None:  # fmt: skip
        group = job.group[gname]
        env_task = tname or svc.task or next(iter(group.task))
        key = SlotKey(job_id, gname, idx, env_task)
        slot = by_task.get(env_task)
        recorded = slot.ports if slot else next((m.ports for m in by_task.values() if m.ports), ())
        values = _values(job_id, job, key, self.attributes, slot.core_ids if slot else (), recorded)
        name = service_name(svc, job_id, gname, tname)
        host, port = self._endpoint(group, key, svc.port, svc.address_mode, svc.address, values,
                                    recorded)  # fmt: skip
        tags = tuple(_resolve(t, values) for t in (svc.canary_tags if canary and svc.canary_tags
                                                   else svc.tags))  # fmt: skip
        services.append(ServiceEntry(job_id, gname, idx, tname, name, tags, host, port, svc.port,
                                     alloc_id(key), svc.provider))  # fmt: skip
        for ec in effective_checks(svc, name):
            c = ec.check
            of = hashlib.sha256(c.model_dump_json().encode()).hexdigest()[:8]
            if owner and owner.instance:
                run = f"i{owner.instance.id}"
            else:  # a group's check: its version, and its tasks' runs (check_restart re-arms)
                runs = sorted(str(m.instance.id) for m in by_task.values() if m.instance)
                run = f"v{version[:16]}:{'.'.join(runs)}"
            identity = f"{run}:{of}"  # a new run or a changed check starts pending
            entry = CheckEntry(job_id, gname, idx, tname, name, ec.name, c.type, ec.on_update,
                               identity)  # fmt: skip
            restart = (owner.key,) if owner else tuple(s.key for s in by_task.values())
            target, handle, argv = None, None, tuple[str, ...]()
            if c.type == "script":
                runner = owner or by_task.get(c.task or svc.task)
                if runner is None or runner.instance is None:
                    continue  # its task is not running: nothing to run the script in
                handle = handle_of(runner.key, runner.instance)
                argv = tuple(_resolve(a, values) for a in (c.command, *c.args))
            else:
                mode = c.address_mode or svc.address_mode
                chost, cport = self._endpoint(group, key, c.port or svc.port, mode,
                                              svc.address, values, recorded)  # fmt: skip
                target = Target(
                    c.type, chost, cport, _resolve(c.path, values), c.method,
                    tuple((k, _resolve(v, values)) for k, vs in sorted(c.header.items())
                          for v in vs),
                    _resolve(c.body, values), c.protocol, c.tls_skip_verify,
                    warn_429=svc.provider == "consul",
                )  # fmt: skip
            checks[entry.key()] = CheckSpec(
                entry, c.interval, c.timeout,
                health.Thresholds(c.success_before_passing, c.failures_before_critical,
                                  c.failures_before_warning),
                target, handle, argv, ec.restart_limit, ec.restart_grace, ec.ignore_warnings,
                restart, owner.instance.id if owner and owner.instance else None,
            )  # fmt: skip

    def _endpoint(self, group: Group, key: SlotKey, port: str, mode: str, address: str,
                  values: Mapping[str, str],
                  recorded: port_spec.Recorded = ()) -> tuple[str, int]:  # fmt: skip
        """auto: a bridge group's namespace address and the port inside it; a host group's
        loopback and host port; a custom `address` and the host port (Nomad: the routing
        from it to the group is the user's). host: loopback and the host port. alloc: the
        namespace's address and port."""
        ports = port_spec.allocated(group.network, key.alloc, recorded)
        if mode == "auto" and (custom := _resolve(address, values)):
            return custom, port_spec.service_port(ports, port, namespace=False)
        namespace = port_spec.in_namespace(mode, group.network.mode)
        number = port_spec.service_port(ports, port, namespace)
        return (self.executor.alloc_address(key.alloc) if namespace else LOOPBACK), number


@dataclass
class TemplateServices:
    """The registry as templates read it (nomadService): the registrations of services with
    provider "nomad" (a "consul" service is Consul's in Nomad, out of nomadService's sight),
    read from the store once per change, in Nomad's ServiceRegistration shape."""

    store: Store
    attributes: Mapping[str, str]
    _cache: tuple[Registration, ...] | None = None

    def changed(self) -> None:
        self._cache = None

    def registrations(self) -> Sequence[Registration]:
        if self._cache is None:
            name = self.attributes.get("node.unique.name") or self.attributes.get(
                "attr.unique.hostname", ""
            )
            node, dc = nomad.node_id(name), self.attributes.get("node.datacenter", "dc1")
            self._cache = tuple(
                Registration(service_id(e), e.name, node, e.address, e.port, dc, e.tags, e.job,
                             e.alloc_id)  # fmt: skip
                for e in self.store.registered("nomad")
            )
        return self._cache


def service_id(e: ServiceEntry) -> str:
    """Nomad's MakeAllocServiceID: _nomad-task-ALLOC-(TASK|group-GROUP)-NAME-PORTLABEL."""
    owner = e.task or f"group-{e.group}"
    return f"_nomad-task-{e.alloc_id}-{owner}-{e.name}-{e.port_label}"


def _values(job_id: str, job: Job, key: SlotKey, attrs: Mapping[str, str],
            cores: tuple[int, ...], ports: port_spec.Recorded = ()) -> dict[str, str]:  # fmt: skip
    """What `${...}` in a service sees: the values task_config gave the task (an unknown
    reference is left as written rather than refused: the task runs already)."""
    return task_env(JobSpec(job_id, job, "", "", ""), key, attrs, cores, _resolve, ports)[1]


def _resolve(text: str, values: Mapping[str, str]) -> str:
    if "${" not in text:
        return text
    try:
        return interpolate.resolve(text, values)
    except KeyError:
        return text
