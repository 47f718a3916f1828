"""Nomad's constraint operators evaluated against this node's attributes. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from reconciler.spec import interpolate
from reconciler.spec.models import Constraint, Job


def _resolve(text: str, attrs: Mapping[str, str]) -> str | None:
    """`${attr.kernel.name}` -> its value; None when the attribute is not set on this node."""
    try:
        return interpolate.resolve(text, attrs)
    except KeyError:
        return None


def _version(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text.split("-")[0].split("+")[0])
    return tuple(int(p) for p in parts)


def _version_ok(have: str, spec: str) -> bool:
    v = _version(have)
    for clause in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|!=|~>|=|>|<)?\s*v?([\w.\-+]+)\s*", clause)
        if not m:
            return False
        op, want = m.group(1) or "=", _version(m.group(2))
        width = max(len(v), len(want))
        a, w = v + (0,) * (width - len(v)), want + (0,) * (width - len(want))
        ok = {
            "=": a == w, "!=": a != w, ">": a > w, ">=": a >= w, "<": a < w, "<=": a <= w,
            "~>": a >= w and a[: max(1, len(want) - 1)] == w[: max(1, len(want) - 1)],
        }[op]  # fmt: skip
        if not ok:
            return False
    return True


def satisfied(c: Constraint, attrs: Mapping[str, str]) -> bool:
    left = _resolve(c.attribute, attrs)
    right = _resolve(c.value, attrs)
    op = c.operator
    if op == "is_set":
        return left is not None
    if op == "is_not_set":
        return left is None
    if op in ("distinct_hosts", "distinct_property"):
        return True  # one node: trivially distinct
    if left is None or right is None:
        return False
    if op in ("=", "==", "is"):
        return left == right
    if op in ("!=", "not"):
        return left != right
    if op in ("<", "<=", ">", ">="):
        try:
            a: float | str = float(left)
            b: float | str = float(right)
        except ValueError:
            a, b = left, right
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]  # type: ignore[operator]
    if op == "regexp":
        try:
            return re.search(right, left) is not None
        except re.error:
            return False
    if op in ("version", "semver"):
        return _version_ok(left, right)
    items = {x.strip() for x in left.split(",")}
    wanted = {x.strip() for x in right.split(",")}
    if op in ("set_contains", "set_contains_all"):
        return wanted <= items
    if op == "set_contains_any":
        return bool(wanted & items)
    return False


def _all(job: Job) -> Iterable[Constraint]:
    yield from job.constraint
    for g in job.group.values():
        yield from g.constraint
        for t in g.task.values():
            yield from t.constraint


def unmet(job: Job, attrs: Mapping[str, str]) -> list[str]:
    """Human reasons for each unsatisfied constraint, e.g. `${attr.os.name} = "centos"`."""
    out = []
    for c in _all(job):
        if not satisfied(c, attrs):
            have = _resolve(c.attribute, attrs)
            shown = "unset" if have is None else f'"{have}"'
            out.append(f'constraint {c.attribute} {c.operator} "{c.value}" not met (node: {shown})')
    return out


def missing_volumes(job: Job, volumes: Mapping[str, bool]) -> list[str]:
    """Nomad's placement failure for host volumes the node lacks, or has only read-only where
    the group wants to write (a read-only volume is never downgraded)."""
    out = []
    for gname, group in job.group.items():
        for alias, v in group.volume.items():
            names = ([f"{v.source}[{i}]" for i in range(group.count)] if v.per_alloc
                     else [v.source])  # fmt: skip
            for name in names:
                if name not in volumes:
                    why = f'host volume "{name}" is not on this node'
                elif volumes[name] and not v.read_only:
                    why = f'host volume "{name}" is read-only on this node (set read_only = true)'
                else:
                    continue
                out.append(f'Constraint "missing compatible host volumes": group {gname} '
                           f"volume {alias}: {why}")  # fmt: skip
    return out
