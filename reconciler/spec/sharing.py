"""Equal parts of job models held once.

A thousand jobs mostly repeat the same sub-models (a task's `resources`, `logs`, `network`, the
empty `env`, `meta`, `template` ... every model gets its own copy of each default), the same
strings and the same durations. `share(job)` walks a new job model bottom-up and puts in place
of each part an equal one already held, so the service keeps one of each. Values are replaced
by values of the same type that compare equal (and models with the same fields set), so the
job dumps, digests and plans exactly as before; nothing is re-validated.

A Job, Group or Task is held once too when another job's is equal: 1,000 jobs from one
template (only their names differ, and a name is not part of the model) are one Job model,
and a job that differs in one task's env still shares its other tasks. The table is a cache:
it is emptied when it grows past LIMIT entries, which loses sharing, never meaning.
Parts no job holds any more (their files removed or changed) leave it when it has doubled
since it was last pruned, so a directory whose jobs come and go does not keep their parts.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TypeVar

from pydantic import BaseModel

LIMIT = 100_000
PRUNE_FROM = 5_000  # the table is pruned when it has doubled since, and not below this

M = TypeVar("M", bound=BaseModel)


class Sharing:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        # hash of (type, identities of the parts) -> the one held; a collision shares nothing
        self._held: dict[int, Any] = {}
        self._numbers: dict[tuple[type, Any], Any] = {}
        self._sets: dict[frozenset[str], set[str]] = {}
        self._pruned_at = PRUNE_FROM  # the table's size after the last prune

    def __len__(self) -> int:
        return len(self._held) + len(self._numbers) + len(self._sets)

    def share(self, model: M) -> M:
        with self._lock:
            if len(self) > self.limit:
                self._held.clear()
                self._numbers.clear()
                self._sets.clear()
            elif len(self) > 2 * self._pruned_at:
                self.prune()
            value, _ = self._value(model)
            return value  # type: ignore[no-any-return]

    def prune(self) -> int:
        """Drop the parts only this table holds (and parts held only by those); returns how
        many went. O(table size) a round, a few rounds (parts nest a few deep)."""
        dropped = 0
        while True:
            gone = 0
            tables: tuple[dict[Any, Any], ...] = (self._held, self._numbers, self._sets)
            for table in tables:
                # held by nothing else: one reference from the table, one as the argument
                idle = [k for k in list(table) if sys.getrefcount(table[k]) <= 2]
                for k in idle:
                    del table[k]
                gone += len(idle)
            dropped += gone
            if not gone:
                break
        self._pruned_at = max(PRUNE_FROM, len(self))
        return dropped

    def _value(self, v: Any) -> tuple[Any, bool]:
        """(the value to hold, whether it may be shared)."""
        t = type(v)
        if t is str:
            return sys.intern(v), True
        if v is None or t is bool:
            return v, True
        if t is int or t is float:
            if v != v:  # NaN: equal to nothing, not even itself
                return v, False
            return self._numbers.setdefault((t, v), v), True
        if t is list:
            shareable = True
            for i, item in enumerate(v):
                held, ok = self._value(item)
                if held is not item:
                    v[i] = held
                shareable = shareable and ok
            return (self._held_one(v, _parts(v)), True) if shareable else (v, False)
        if t is dict:
            shareable = True
            out = {}  # a new dict: its keys become the held strings too
            for k, item in v.items():
                held, ok = self._value(item)
                shareable = shareable and ok and type(k) is str
                out[sys.intern(k) if type(k) is str else k] = held
            if not shareable:
                return out, False
            return self._held_one(out, _parts(out)), True
        if isinstance(v, BaseModel):
            return self._model(v)
        return v, False

    def _model(self, m: BaseModel) -> tuple[BaseModel, bool]:
        if m.__pydantic_extra__ or m.__pydantic_private__:
            return m, False
        fields = m.__dict__
        shareable = True
        for name, item in fields.items():
            held, ok = self._value(item)
            if held is not item:
                fields[name] = held  # an equal value of the same type
            shareable = shareable and ok
        given = m.__pydantic_fields_set__
        held_set = self._sets.setdefault(frozenset(given), given)
        if held_set is not given:
            object.__setattr__(m, "__pydantic_fields_set__", held_set)
        if not shareable:
            return m, False
        return self._held_one(m, _parts(m)), True

    def _held_one(self, v: Any, parts: tuple[int, ...]) -> Any:
        """The held value of v's type whose parts are these very objects, else v (now held)."""
        h = hash((type(v), parts))
        other = self._held.get(h)
        if other is None:
            self._held[h] = v
            return v
        if type(other) is type(v) and _parts(other) == parts:
            return other
        return v  # a collision: keep v as it is


def _parts(v: Any) -> tuple[int, ...]:
    if type(v) is list:
        return tuple(map(id, v))
    if type(v) is dict:
        return (*map(id, v), *map(id, v.values()))
    return (id(v.__pydantic_fields_set__), *map(id, v.__dict__.values()))


_SHARING = Sharing()


def prune() -> int:
    """Drop what no job holds any more (jobs left): see Sharing.prune."""
    with _SHARING._lock:
        return _SHARING.prune()


def share(model: M) -> M:
    """`model`, or an equal one already held (same type, same fields set), with its parts
    replaced by equal ones already held (changed in place: only equal values of the same type
    are put in)."""
    return _SHARING.share(model)
