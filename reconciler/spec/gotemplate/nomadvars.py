"""nomadVar, nomadVarExists, nomadVarList, nomadVarListSafe (consul-template
dependency/nomad_var*.go) over a local variable source, with Nomad's workload identity: a task
reads and lists exactly nomad/jobs, nomad/jobs/JOB, .../GROUP and .../TASK (nomad/acl)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.spec.gotemplate.funcs import Func, FuncError
from reconciler.spec.gotemplate.gofmt import GoValue

# (namespace, path, create_index, modify_index, create_time, modify_time)
MetaTuple = tuple[str, str, int, int, int, int]
NAMESPACE = "default"


class VariableSource(Protocol):
    def get(self, path: str) -> tuple[Mapping[str, str], MetaTuple] | None: ...

    def list(self, prefix: str) -> list[MetaTuple]: ...


@dataclass(frozen=True)
class Workload:
    job: str
    group: str
    task: str

    def readable(self) -> tuple[str, ...]:
        base = f"nomad/jobs/{self.job}"
        return ("nomad/jobs", base, f"{base}/{self.group}", f"{base}/{self.group}/{self.task}")

    def refusal(self, path: str) -> str:
        paths = self.readable()
        return (
            f"the task {self.job}/{self.group}/{self.task} may read only "
            + ", ".join(paths[:-1]) + f" and {paths[-1]} (Nomad's workload identity; Nomad "
            "would wait for access forever)"
        )  # fmt: skip


def _fields(obj: GoValue, names: Mapping[str, Any], name: str) -> Any:
    if name in names:
        return names[name]
    raise KeyError(name)


class VarMeta(GoValue):
    go_type = "NomadVarMeta"

    def __init__(self, meta: MetaTuple) -> None:
        ns, path, ci, mi, ct, mt = meta
        self.values: dict[str, Any] = {"Namespace": ns, "Path": path, "CreateIndex": ci,
                                       "ModifyIndex": mi, "CreateTime": ct, "ModifyTime": mt}  # fmt: skip

    def go_field(self, name: str) -> Any:
        return _fields(self, self.values, name)

    def go_string(self) -> str:
        v = self.values
        return f"{{{v['Namespace']} {v['Path']} {v['CreateIndex']} {v['ModifyIndex']} " \
               f"{v['CreateTime']} {v['ModifyTime']}}}"  # fmt: skip


class VarItem(GoValue):
    """Prints as its value; `.Key` and `.Value` as in consul-template."""

    go_type = "NomadVarItem"

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value

    def go_field(self, name: str) -> Any:
        return _fields(self, {"Key": self.key, "Value": self.value}, name)

    def go_string(self) -> str:
        return self.value


class VarItems(dict[str, VarItem], GoValue):
    """A map of items (`.name`, `range $k, $v`) with consul-template's methods."""

    go_type = "NomadVarItems"

    def __init__(self, items: Mapping[str, str], meta: MetaTuple) -> None:
        super().__init__({k: VarItem(k, v) for k, v in items.items()})
        self.meta = meta

    def go_method(self, name: str) -> Func | None:
        keys = sorted(self)
        methods: dict[str, Callable[[], Any]] = {
            "Keys": lambda: keys,
            "Values": lambda: [self[k] for k in keys],
            "Tuples": lambda: [_Tuple(k, self[k].value) for k in keys],
            "Metadata": lambda: VarMeta(self.meta),
            "Parent": lambda: VarMeta(self.meta),
            "ItemsMap": lambda: {k: self[k].value for k in keys},
        }
        fn = methods.get(name)
        return Func(fn, ()) if fn is not None else None


class _Tuple(GoValue):
    go_type = "KV"

    def __init__(self, k: str, v: str) -> None:
        self.k, self.v = k, v

    def go_field(self, name: str) -> Any:
        return _fields(self, {"K": self.k, "V": self.v}, name)

    def go_string(self) -> str:
        return f"{{{self.k} {self.v}}}"


def split_path(arg: str) -> tuple[str, str]:
    path, _, ns = arg.partition("@")
    return path.strip().strip("/"), ns or NAMESPACE


def check_path(arg: str, workload: Workload) -> str | None:
    """Why this task can never read the variable at `arg`, or None."""
    path, ns = split_path(arg)
    if ns != NAMESPACE:
        return f'nomadVar "{arg}": reconciler has only the "{NAMESPACE}" namespace'
    if path not in workload.readable():
        return f'nomadVar "{arg}": {workload.refusal(path)}'
    return None


def functions(source: VariableSource | None, workload: Workload | None) -> dict[str, Func]:
    def access(arg: str) -> str:
        if source is None or workload is None:
            raise FuncError("Nomad Variables are not available here")
        if why := check_path(arg, workload):
            raise FuncError(why)
        return split_path(arg)[0]

    def readable_metas(prefix: str) -> list[MetaTuple]:
        if source is None or workload is None:
            raise FuncError("Nomad Variables are not available here")
        prefix, ns = split_path(prefix)
        if ns != NAMESPACE:
            return []
        allowed = set(workload.readable())
        return [m for m in source.list(prefix) if m[1] in allowed]

    def var(arg: str) -> VarItems:
        path = access(arg)
        assert source is not None
        found = source.get(path)
        if found is None:
            raise FuncError(
                f"no variable at {path} (Nomad waits for it: put it with "
                f"`reconciler var put {path} KEY=VALUE`)"
            )
        return VarItems(*found)

    def exists(arg: str) -> bool:
        try:
            path = access(arg)
        except FuncError:
            return False
        assert source is not None
        return source.get(path) is not None

    def var_list(*prefix: str) -> list[VarMeta]:
        if len(prefix) > 1:
            raise FuncError(f"nomadVarList: wrong number of arguments, expected 0 or 1, "
                            f"but got {len(prefix)}")  # fmt: skip
        return [VarMeta(m) for m in readable_metas(prefix[0] if prefix else "")]

    def var_list_safe(*prefix: str) -> list[VarMeta]:
        found = var_list(*prefix)
        if not found:
            raise FuncError("no variables to list yet (Nomad waits while the list is empty)")
        return found

    return {
        "nomadVar": Func(var, ("string",)),
        "nomadVarExists": Func(exists, ("string",)),
        "nomadVarList": Func(var_list, (), "string"),
        "nomadVarListSafe": Func(var_list_safe, (), "string"),
    }
