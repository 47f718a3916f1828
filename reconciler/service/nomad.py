"""reconciler's store rows in Nomad's JSON shapes (the structs of Nomad's `api/` package:
Job, JobListStub, Allocation, AllocationListStub, TaskState, TaskEvent, Node, NodeListStub,
and event stream frames), so Nomad's clients read them unchanged. Pure: rows in, dicts out.

One reconciler *group instance* (JOB/GROUP/INDEX) is one Nomad allocation; its ID is a UUID
derived from that address, so it stays the same across service restarts.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.reschedules import Tracker
from reconciler.spec.units import parse_duration

NAMESPACE, REGION, DATACENTER = "default", "global", "dc1"
_IDS = uuid.UUID("6c0a6f2e-3f0b-4d7e-9a55-2b8f3c1d9e10")
ZERO_TIME = "0001-01-01T00:00:00Z"
Row = Mapping[str, Any]


def alloc_id(job: str, group: str, idx: int) -> str:
    return str(uuid.uuid5(_IDS, f"alloc:{job}/{group}/{idx}"))


def node_id(name: str) -> str:
    return str(uuid.uuid5(_IDS, f"node:{name}"))


def ns(seconds: float | None) -> int:
    """Nomad's int64 nanoseconds (times and durations)."""
    return round((seconds or 0.0) * 1e9)


def rfc3339(seconds: float | None) -> str:
    """Nomad's time.Time in JSON; zero time when unset."""
    if not seconds:
        return ZERO_TIME
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- the job: reconciler's model (canonical JSON) -> Nomad's api.Job ----

# HCL name -> Nomad's JSON name where it is not the plain CamelCase of the HCL name.
_NAMES = {
    "group": "TaskGroups", "task": "Tasks", "restart": "RestartPolicy",
    "reschedule": "ReschedulePolicy",
    "constraint": "Constraints", "template": "Templates", "logs": "LogConfig",
    "network": "Networks", "env": "Env", "meta": "Meta", "id": "ID",
    "cpu": "CPU", "memory": "MemoryMB", "memory_max": "MemoryMaxMB", "secrets": "SecretsMB",
    "max_file_size": "MaxFileSizeMB", "data": "EmbeddedTmpl", "source": "SourcePath",
    "destination": "DestPath", "env_template": "Envvars", "left_delimiter": "LeftDelim",
    "right_delimiter": "RightDelim", "error_on_missing_key": "ErrMissingKey",
    "uid": "Uid", "gid": "Gid", "attribute": "LTarget", "value": "RTarget",
    "operator": "Operand", "host_network": "HostNetwork",
}  # fmt: skip
# Fields that hold a duration: Nomad's JSON has int64 nanoseconds.
_DURATIONS = {
    "min_healthy_time", "healthy_deadline", "progress_deadline", "stagger", "interval",
    "delay", "kill_timeout", "shutdown_delay", "splay", "min", "max", "max_delay",
}  # fmt: skip
# Blocks that stay maps with their own keys (driver config, env, meta).
_OPAQUE = {"config", "env", "meta"}


def camel(name: str) -> str:
    return _NAMES.get(name) or "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def _value(key: str, val: Any) -> Any:
    if key in _DURATIONS and isinstance(val, str):
        return ns(parse_duration(val))
    if key in _DURATIONS and isinstance(val, int | float) and not isinstance(val, bool):
        return ns(val)
    if key in _OPAQUE:
        return val
    if isinstance(val, dict):
        return {camel(k): _value(k, v) for k, v in val.items()}
    if isinstance(val, list):
        return [_value(key, v) for v in val]
    return val


def _named(items: Mapping[str, Any], convert: Any) -> list[dict[str, Any]]:
    return [{"Name": name, **convert(body)} for name, body in items.items()]


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """Nomad's names for a volume or a volume mount: plain CamelCase (its Source and
    Destination are not a template's SourcePath and DestPath)."""
    return {"".join(p[:1].upper() + p[1:] for p in k.split("_")): v for k, v in body.items()}


def _task(body: Mapping[str, Any]) -> dict[str, Any]:
    out = {camel(k): _value(k, v) for k, v in body.items()
           if k not in ("template", "volume_mount")}  # fmt: skip
    out["VolumeMounts"] = [_plain(m) for m in body.get("volume_mount") or []] or None
    if "template" in body:
        out["Templates"] = [
            {camel(k): _value(k, v) for k, v in t.items() if k != "env"} | {"Envvars": t.get("env", False)}
            for t in body["template"]
        ]  # fmt: skip
    return out


def _group(body: Mapping[str, Any]) -> dict[str, Any]:
    out = {camel(k): _value(k, v) for k, v in body.items()
           if k not in ("task", "network", "volume")}  # fmt: skip
    out["Volumes"] = {a: {"Name": a, **_plain(v)} for a, v in (body.get("volume") or {}).items()}
    if "network" in body:
        net = body["network"] or {}
        ports = [
            {"Label": label, "Value": p.get("static") or 0, "To": p.get("to") or 0,
             "HostNetwork": p.get("host_network", "default")}
            for label, p in (net.get("port") or {}).items()
        ]  # fmt: skip
        dns = net.get("dns")
        out["Networks"] = [{
            "Mode": net.get("mode", "host"), "Hostname": net.get("hostname", ""),
            "DNS": _plain(dns) if dns else None,
            "ReservedPorts": [p for p in ports if p["Value"]],
            "DynamicPorts": [p for p in ports if not p["Value"]],
        }]  # fmt: skip
    out["Tasks"] = _named(body.get("task", {}), _task)
    return out


def job(job_id: str, model: Mapping[str, Any], row: Row | None, version: int) -> dict[str, Any]:
    """A Nomad api.Job from a job's canonical model dict and its store row."""
    body = {camel(k): _value(k, v) for k, v in model.items() if k != "group"}
    if "ReschedulePolicy" in body:  # a group's ReschedulePolicy is the job's Reschedule
        body["Reschedule"] = body.pop("ReschedulePolicy")
    status, description = job_status(row)
    return {
        "Region": REGION, "Namespace": NAMESPACE, "ID": job_id, "Name": job_id,
        "Type": model.get("type", "service"), "Priority": 50, "AllAtOnce": False,
        "Datacenters": ["*"], "NodePool": "default", "Constraints": [], "Affinities": None,
        "Spreads": None, "Update": None, "Periodic": None, "ParameterizedJob": None,
        "Meta": {}, **body,
        "TaskGroups": _named(model.get("group", {}), _group),
        "Stop": bool(row and row["paused"]), "ParentID": "", "Dispatched": False,
        "Status": status, "StatusDescription": description,
        "Stable": bool(row and row.get("applied") and row["applied"] == row.get("attempted")),
        "Version": version, "SubmitTime": ns(row.get("applied_at") if row else None),
        "CreateIndex": 0, "ModifyIndex": 0, "JobModifyIndex": 0,
        "reconciler": _job_extra(row),
    }  # fmt: skip


def _job_extra(row: Row | None) -> dict[str, Any]:
    """What Nomad has no field for: the file, reconciler's own status word and why."""
    if row is None:
        return {}
    return {"Status": row["status"], "Reason": row["reason"], "File": row["source_file"],
            "Commit": row.get("applied_commit")}  # fmt: skip


def model_of(canonical: str | None) -> dict[str, Any]:
    return json.loads(canonical) if canonical else {}


def job_status(row: Row | None) -> tuple[str, str]:
    """Nomad's job Status (pending / running / dead) and reconciler's word as the description."""
    if row is None:
        return "pending", ""
    word = {"ready": "running", "reconciling": "running", "failed": "dead",
            "blocked": "pending", "stopped": "dead", "removed": "dead"}.get(row["status"], "pending")  # fmt: skip
    if row["paused"]:
        word = "dead"
    return word, (row["status"] + (f": {row['reason']}" if row["reason"] else ""))


def job_stub(row: Row, slots: Iterable[Row]) -> dict[str, Any]:
    model = model_of(row.get("applied_canonical") or row.get("attempted_canonical"))
    status, description = job_status(row)
    return {
        "ID": row["id"], "ParentID": "", "Name": row["id"], "Namespace": NAMESPACE,
        "Datacenters": ["*"], "Type": model.get("type", "service"), "Priority": 50,
        "Periodic": False, "ParameterizedJob": False, "Stop": bool(row["paused"]),
        "Status": status, "StatusDescription": description,
        "JobSummary": summary(row["id"], slots), "CreateIndex": 0, "ModifyIndex": 0,
        "JobModifyIndex": 0, "SubmitTime": ns(row.get("applied_at") or row["created_at"]),
        "Meta": model.get("meta") or None,
    }  # fmt: skip


def summary(job_id: str, slots: Iterable[Row]) -> dict[str, Any]:
    groups: dict[str, dict[str, int]] = {}
    for alloc in allocs_of(slots).values():
        g = groups.setdefault(alloc[0]["group_name"], {
            "Queued": 0, "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0, "Lost": 0,
            "Unknown": 0})  # fmt: skip
        status = client_status(alloc)
        g[{"pending": "Starting", "running": "Running", "complete": "Complete",
           "failed": "Failed", "lost": "Lost"}[status]] += 1  # fmt: skip
    return {"JobID": job_id, "Namespace": NAMESPACE, "Summary": groups, "Children": None,
            "CreateIndex": 0, "ModifyIndex": 0}  # fmt: skip


# ---- allocations ----


def allocs_of(slots: Iterable[Row]) -> dict[tuple[str, str, int], list[Row]]:
    """Task slot rows grouped by group instance (one Nomad allocation each)."""
    out: dict[tuple[str, str, int], list[Row]] = {}
    for s in slots:
        out.setdefault((s["job_id"], s["group_name"], s["idx"]), []).append(s)
    return out


def task_state_word(state: str) -> str:
    return {"running": "running", "stopping": "running", "pending": "pending"}.get(state, "dead")


def client_status(tasks: list[Row]) -> str:
    states = [t["state"] for t in tasks]
    if any(s in ("running", "stopping") for s in states):
        return "running"
    if any(s == "failed" for s in states):
        return "failed"
    if states and all(s in ("complete", "dead") for s in states):
        return "complete"
    return "pending"


def task_event(e: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Type": e["type"], "Time": ns(e["at"]), "DisplayMessage": e["message"],
        "Details": {}, "Message": e["message"], "FailsTask": e["type"] == "Not Restarting",
        "ExitCode": 0, "Signal": 0, "RestartReason": "", "KillReason": "",
    }  # fmt: skip
    if m := re.match(r"exit code (-?\d+)(?:, signal (\d+))?", e["message"]):
        out["ExitCode"], out["Signal"] = int(m[1]), int(m[2] or 0)
        out["Details"] = {"exit_code": m[1], "signal": m[2] or "0"}
    if e["type"] == "Restarting":
        out["RestartReason"] = e["message"]
    return out


def task_state(slot: Row, events: Iterable[Row]) -> dict[str, Any]:
    word = task_state_word(slot["state"])
    return {
        "State": word, "Failed": slot["state"] == "failed", "Restarts": slot["restarts"] or 0,
        "LastRestart": rfc3339(slot["started_at"] if (slot["runs"] or 0) > 1 else None),
        "StartedAt": rfc3339(slot["started_at"] or slot.get("first_started")),
        "FinishedAt": rfc3339(slot.get("last_finished") if word == "dead" else None),
        "Events": [task_event(e) for e in events],
    }  # fmt: skip


def allocation(
    tasks: list[Row], events: Iterable[Row], node: Mapping[str, str], job_body: Any = None,
    version: int = 0, job_type: str = "service",
) -> dict[str, Any]:  # fmt: skip
    """A Nomad api.Allocation (with `job_body`) or AllocationListStub (without) of one group
    instance's task slots."""
    first = tasks[0]
    job_id, group, idx = first["job_id"], first["group_name"], first["idx"]
    by_task: dict[str, list[Row]] = {}
    for e in events:
        by_task.setdefault(e["task"], []).append(e)
    stopping = all(t["stop_intent"] in ("remove", "pause") for t in tasks) and any(
        t["stop_intent"] for t in tasks
    )
    created = min((t["first_started"] or t["updated_at"]) for t in tasks)
    modified = max(t["updated_at"] for t in tasks)
    status = client_status(tasks)
    out: dict[str, Any] = {
        "ID": alloc_id(job_id, group, idx), "EvalID": "", "Name": f"{job_id}.{group}[{idx}]",
        "Namespace": NAMESPACE, "NodeID": node["ID"], "NodeName": node["Name"],
        "JobID": job_id, "JobType": job_type, "JobVersion": version, "TaskGroup": group,
        "DesiredStatus": "stop" if stopping else "run", "DesiredDescription": "",
        "ClientStatus": status,
        "ClientDescription": "; ".join(f"{t['task']}: {t['reason']}" for t in tasks if t["reason"]),
        "TaskStates": {t["task"]: task_state(t, by_task.get(t["task"], [])) for t in tasks},
        "DeploymentStatus": None, "FollowupEvalID": "", "NextAllocation": "",
        "RescheduleTracker": _tracker(tasks, node["ID"], alloc_id(job_id, group, idx)),
        "PreemptedAllocations": None, "PreemptedByAllocation": "",
        "CreateIndex": 0, "ModifyIndex": 0, "CreateTime": ns(created), "ModifyTime": ns(modified),
        "reconciler": {"Address": f"{job_id}/{group}/{idx}"},
    }  # fmt: skip
    if job_body is not None:
        out["Job"] = job_body
        out["AllocModifyIndex"] = 0
        out["DesiredTransition"] = {}
        out["Metrics"] = None
        out["Resources"] = None
        out["AllocatedResources"] = None
    return out


def _tracker(tasks: list[Row], node_id: str, alloc: str) -> dict[str, Any] | None:
    """Nomad's RescheduleTracker: the group instance's reschedules (the same instance here)."""
    text = next((t.get("reschedule") for t in tasks if t.get("reschedule")), "")
    events = Tracker.of(text).events if text else ()
    if not events:
        return None
    return {"Events": [{"RescheduleTime": ns(at), "PrevAllocID": alloc, "PrevNodeID": node_id,
                        "Delay": ns(delay)} for at, delay in events]}  # fmt: skip


# ---- the node ----


def node(attributes: Mapping[str, str], healthy: bool, description: str, http_addr: str,
         version: str, stub: bool = False) -> dict[str, Any]:  # fmt: skip
    name = attributes.get("node.unique.name") or attributes.get("attr.unique.hostname", "")
    drivers = {
        d.removeprefix("driver."): {
            "Attributes": {}, "Detected": v == "true", "Healthy": v == "true" and healthy,
            "HealthDescription": "Healthy" if v == "true" and healthy else description,
            "UpdateTime": ZERO_TIME,
        }
        for d, v in attributes.items() if d.startswith("driver.")
    }  # fmt: skip
    cores = int(attributes.get("attr.cpu.numcores", "1") or 1)
    resources = {
        "Cpu": {"CpuShares": cores * 1000, "TotalCpuCores": cores,
                "ReservableCpuCores": list(range(cores))},
        "Memory": {"MemoryMB": int(attributes.get("attr.memory.totalbytes", "0") or 0) >> 20},
        "Disk": {"DiskMB": 0}, "Networks": None, "Devices": None,
        "MinDynamicPort": 20000, "MaxDynamicPort": 32000,
    }  # fmt: skip
    common = {
        "ID": node_id(name), "Datacenter": attributes.get("node.datacenter", DATACENTER),
        "Name": name, "NodeClass": attributes.get("node.class", ""),
        "NodePool": attributes.get("node.pool", "default"), "Drain": False,
        "SchedulingEligibility": "eligible", "Status": "ready" if healthy else "down",
        "StatusDescription": "" if healthy else description, "Drivers": drivers,
        "NodeResources": resources, "CreateIndex": 0, "ModifyIndex": 0, "LastDrain": None,
    }  # fmt: skip
    if stub:
        return {"Address": http_addr.rpartition(":")[0] or "127.0.0.1", **common,
                "Version": version, "Attributes": {"os.name": attributes.get("attr.os.name", "")}}  # fmt: skip
    return {
        **common, "HTTPAddr": http_addr, "TLSEnabled": False,
        "Attributes": {k.removeprefix("attr."): v for k, v in attributes.items() if k.startswith(("attr.", "driver."))},
        "Meta": {k.removeprefix("meta."): v for k, v in attributes.items() if k.startswith("meta.")},
        "Links": {}, "CgroupParent": "", "StatusUpdatedAt": 0, "Events": None,
        "HostVolumes": None, "HostNetworks": None, "CSIControllerPlugins": None,
        "CSINodePlugins": None, "DrainStrategy": None, "ReservedResources": None,
    }  # fmt: skip


# ---- the event stream ----


def event(e: Row, payload: Mapping[str, Any]) -> dict[str, Any]:
    """One task event row as a Nomad stream event: task events are Allocation events, job-level
    ones (no task) Job events."""
    if e["task"]:
        topic, kind = "Allocation", "AllocationUpdated"
        key = alloc_id(e["job_id"], e["group_name"], e["idx"])
    else:
        topic, key = "Job", e["job_id"]
        kind = "JobDeregistered" if e["type"] in ("Job Stopped", "Job Removed") else "JobRegistered"
    return {
        "Topic": topic, "Type": kind, "Key": key, "Namespace": NAMESPACE,
        "FilterKeys": [e["job_id"]], "Index": e["id"], "Payload": dict(payload),
        "reconciler": {"Time": e["at"], "Job": e["job_id"], "Group": e["group_name"],
                       "Index": e["idx"], "Task": e["task"], "Type": e["type"],
                       "Message": e["message"]},
    }  # fmt: skip
