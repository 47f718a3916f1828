"""Job model -> the executor's plain TaskConfig, with Nomad's runtime environment. Pure."""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from reconciler.db.snapshot import SlotKey
from reconciler.db.variables import VariableStore
from reconciler.executor.base import (
    Artifact,
    DnsConfig,
    NodeConfig,
    PortMap,
    TaskConfig,
    Template,
    VolumeBind,
)
from reconciler.executor.netinfo import host_addresses
from reconciler.plan.admission import core_list
from reconciler.spec import artifact as artifact_spec
from reconciler.spec import interpolate
from reconciler.spec import ports as port_spec
from reconciler.spec.load import JobSpec
from reconciler.spec.models import Volume
from reconciler.spec.template import Iface, ServiceSource, VariableSource, Workload, render

_NOT_IN_META_NAME = re.compile(r"[^A-Za-z0-9_.]")


def alloc_id(key: SlotKey) -> str:
    """A stable UUID per group instance, so NOMAD_ALLOC_ID survives restarts of the service."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler:{key.alloc}"))


def cpu_limit(cores: tuple[int, ...], cpu: int, attrs: Mapping[str, str]) -> int:
    """MHz: a task with reserved cores gets their bandwidth (Nomad: the cores' MHz summed),
    any other its `cpu`."""
    if not cores:
        return cpu
    try:
        per_core = int(attrs["attr.cpu.totalcompute"]) // int(attrs["attr.cpu.numcores"])
    except (KeyError, ValueError, ZeroDivisionError):
        return cpu
    return per_core * len(cores)


def runtime_env(
    spec: JobSpec, key: SlotKey, attrs: Mapping[str, str], cores: tuple[int, ...] = (),
    ports: port_spec.Recorded = (),
) -> dict[str, str]:
    """`cores`: the core ids the planner chose for the task (empty without admission);
    `ports`: the host ports it chose for the group instance (empty: spec/ports.py allocated's
    fallback)."""
    job = spec.job
    group = job.group[key.group]
    task = group.task[key.task]
    res = task.resources
    aid = alloc_id(key)
    env = {
        "NOMAD_ALLOC_DIR": "/alloc", "NOMAD_TASK_DIR": "/local", "NOMAD_SECRETS_DIR": "/secrets",
        "NOMAD_JOB_ID": spec.id, "NOMAD_JOB_NAME": spec.id,
        "NOMAD_JOB_PARENT_ID": spec.id.rpartition("/")[0],  # a child: PARENT/periodic-<t>
        "NOMAD_GROUP_NAME": key.group, "NOMAD_TASK_NAME": key.task,
        "NOMAD_ALLOC_INDEX": str(key.idx), "NOMAD_ALLOC_ID": aid, "NOMAD_SHORT_ALLOC_ID": aid[:8],
        "NOMAD_ALLOC_NAME": f"{spec.id}.{key.group}[{key.idx}]",
        "NOMAD_DC": attrs.get("node.datacenter", "dc1"), "NOMAD_REGION": "global",
        "NOMAD_NAMESPACE": "default", "NOMAD_CPU_LIMIT": str(cpu_limit(cores, res.cpu, attrs)),
        "NOMAD_MEMORY_LIMIT": str(res.memory + res.secrets_mb),
        # Nomad's cpuset notation ("0,5-7"); " " (an empty cpuset as Nomad writes it) when
        # the task reserves no cores, as Nomad sets it (taskenv/env.go)
        "NOMAD_CPU_CORES": core_list(cores) or " ",
    }  # fmt: skip
    if res.memory_max > 0:
        env["NOMAD_MEMORY_MAX_LIMIT"] = str(res.memory_max + res.secrets_mb)
    for meta in (job.meta, group.meta, task.meta):
        for meta_key, v in meta.items():
            name = _NOT_IN_META_NAME.sub("_", meta_key)  # Nomad: "a-b" -> NOMAD_META_a_b
            env[f"NOMAD_META_{name}"] = v
            env[f"NOMAD_META_{name.upper()}"] = v
    env.update(port_spec.env(port_spec.allocated(group.network, key.alloc, ports), "127.0.0.1"))
    return env


def task_env(
    spec: JobSpec,
    key: SlotKey,
    attrs: Mapping[str, str],
    cores: tuple[int, ...] = (),
    resolve: Callable[[str, Mapping[str, str]], str] = interpolate.resolve,
    ports: port_spec.Recorded = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """(the task's environment, the values its `${...}` see): Nomad's runtime variables, then
    the task's `env` in order, each entry seeing the node's attributes and the entries before
    it. `resolve` raises KeyError for an unknown reference unless the caller passes a lenient
    one."""
    env = runtime_env(spec, key, attrs, cores, ports)
    values = {**attrs, **env}
    for k, v in spec.job.group[key.group].task[key.task].env.items():
        env[k] = values[k] = resolve(v, values)
    return env, values


def _interfaces() -> list[Iface]:
    return [Iface(a.interface, a.address, a.up, a.default_route) for a in host_addresses()]


class _Variables:
    """The variable store as templates see it (plain tuples; spec/ knows no db/)."""

    def __init__(self, store: VariableStore) -> None:
        self.store = store

    def get(
        self, path: str
    ) -> tuple[Mapping[str, str], tuple[str, str, int, int, int, int]] | None:
        var = self.store.get(path)
        return None if var is None else (var.items, dataclasses.astuple(var.meta))

    def list(self, prefix: str) -> list[tuple[str, str, int, int, int, int]]:
        return [dataclasses.astuple(m) for m in self.store.list(prefix)]


def variable_source(store: VariableStore) -> VariableSource:
    return _Variables(store)


def with_options(source: str, options: Mapping[str, str]) -> str:
    """Nomad hands `options` to go-getter as the source URL's query parameters."""
    if not options:
        return source
    forced, rest = artifact_spec.forced_getter(source)
    parts = urlsplit(rest)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(options)
    url = urlunsplit(parts._replace(query=urlencode(sorted(query.items()))))
    return f"{forced}::{url}" if forced else url


def fetchable(source: str, destination: str, mode: Literal["any", "file", "dir"] = "any",
              headers: tuple[tuple[str, str], ...] = (), chown: bool = False,
              insecure: bool = False, key: str = "") -> Artifact:  # fmt: skip
    """An interpolated artifact with its source read once, by spec/artifact.py, for the
    executor (which reads no source itself)."""
    src = artifact_spec.parse_source(source)
    checksum, problem = None, ""
    if src.checksum:
        try:
            checksum = artifact_spec.parse_checksum(src.checksum)
        except ValueError as e:
            problem = str(e)
    return Artifact(source, destination, mode, headers, chown, insecure, key, src.getter,
                    src.url, checksum, src.archive, src.filename, src.path, problem)  # fmt: skip


def artifacts(
    items: list[artifact_spec.Artifact], values: Mapping[str, str]
) -> tuple[Artifact, ...]:
    """Interpolated artifacts; what only the values can tell (a checksum or destination made of
    `${...}`) is checked by the executor when it fetches, as Nomad's artifact hook does."""
    out: list[Artifact] = []
    for a in items:
        options = {k: interpolate.resolve(v, values) for k, v in a.options.items()}
        source = with_options(interpolate.resolve(a.source, values), options)
        dest = interpolate.resolve(a.destination, values)
        if not dest:
            name = posixpath.basename(artifact_spec.parse_source(source).path)
            dest = f"local/{name}" if a.mode == "file" and name else "local/"
        headers = tuple(sorted((k, interpolate.resolve(v, values)) for k, v in a.headers.items()))
        key = artifact_spec.digest((source, dest, a.mode, repr(headers), str(a.chown)))
        out.append(fetchable(source, dest, a.mode, headers, a.chown, a.insecure, key))
    return tuple(out)


def task_config(
    spec: JobSpec,
    key: SlotKey,
    node: NodeConfig,
    attrs: Mapping[str, str],
    variables: VariableSource | None = None,
    services: ServiceSource | None = None,
    *,
    cores: tuple[int, ...] = (),
    ports: port_spec.Recorded = (),
) -> TaskConfig:
    """Raises KeyError naming a `${...}` reference with no value (never an empty string), or
    TemplateError when a template fails to render. `cores`: the ids the task reserves;
    `ports`: its group instance's host ports, as the planner chose them."""
    job = spec.job
    group = job.group[key.group]
    task = group.task[key.task]
    env, values = task_env(spec, key, attrs, cores, ports=ports)
    cfg = task.config
    templates = tuple(
        Template(
            destination=interpolate.resolve(t.destination, values),
            text=render(
                t,
                t.data or "",
                env,
                interfaces=_interfaces,
                variables=variables,
                workload=Workload(spec.id, key.group, key.task),
                services=services,
            ),
            perms=int(t.perms, 8),
            env=t.env,
        )
        for t in task.template
    )
    volumes = tuple(
        _volume(group.volume[m.volume], key.idx, m.read_only,
                interpolate.resolve(m.destination, values), node)
        for m in task.volume_mount
    )  # fmt: skip
    dns = group.network.dns
    dns_config = None if dns is None else DnsConfig(
        *(tuple(interpolate.resolve(v, values) for v in vals)
          for vals in (dns.servers, dns.searches, dns.options))
    )  # fmt: skip
    mapped = tuple(
        PortMap(p.label, p.value, p.to)
        for p in port_spec.allocated(group.network, key.alloc, ports).values()
    )
    return TaskConfig(
        id=str(key), alloc_id=key.alloc,
        command=interpolate.resolve(cfg.command, values),
        args=tuple(interpolate.resolve(a, values) for a in cfg.args),
        env=env, user=task.user or "nobody",
        work_dir=interpolate.resolve(cfg.work_dir, values),
        pid_mode=cfg.pid_mode or node.default_pid_mode,
        ipc_mode=cfg.ipc_mode or node.default_ipc_mode,
        net_mode=group.network.mode, ports=mapped,
        cap_add=tuple(cfg.cap_add), cap_drop=tuple(cfg.cap_drop),
        # Nomad allocates the secrets tmpfs as memory: its pages are the task cgroup's
        memory_mb=task.resources.memory + task.resources.secrets_mb,
        memory_max_mb=task.resources.memory_max + task.resources.secrets_mb
        if task.resources.memory_max > 0 else task.resources.memory_max,
        secrets_mb=task.resources.secrets or 1,
        cpu_shares=cpu_limit(cores, task.resources.cpu, attrs), cores=task.resources.cores,
        core_ids=cores, pids_max=node.pids_max,
        log_max_files=task.logs.max_files, log_max_file_mb=task.logs.max_file_size,
        logs_disabled=task.logs.disabled or task.logs.enabled is False,
        templates=templates, volumes=volumes, dns=dns_config,
        raw_exec=task.driver == "raw_exec",
        hostname=f"{key.task}-{key.idx}", artifacts=artifacts(task.artifact, values),
    )  # fmt: skip


def host_volume_name(volume: Volume, idx: int) -> str:
    """The node's host volume a group volume uses: `per_alloc` adds the instance index."""
    return f"{volume.source}[{idx}]" if volume.per_alloc else volume.source


def _volume(volume: Volume, idx: int, mount_ro: bool, dest: str, node: NodeConfig) -> VolumeBind:
    name = host_volume_name(volume, idx)
    if name not in node.host_volumes:  # the planner blocks such a job; a race with a reload
        raise KeyError(f"host volume {name}")
    path, host_ro = node.host_volumes[name]
    return VolumeBind(path, os.path.normpath("/" + dest.lstrip("/")), host_ro or volume.read_only or mount_ro)
