"""Values derived from a (frozen) job model, remembered per model object: the loader hands the
same object back until its file changes, so a pass over unchanged jobs derives nothing again.
Keyed by the object's identity (models are large to hash) and the other arguments' values.
Nothing here keeps a model alive: when a model goes (its file changed or was removed), a weak
reference's callback forgets every value derived from it, before its id can be reused."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class _Cache:
    """One memoised function's values: model id -> the value (no other arguments), or a dict
    of the other arguments' values -> the value."""

    __slots__ = ("by_job", "entries", "limit")

    def __init__(self, limit: int) -> None:
        self.by_job: dict[int, Any] = {}
        self.entries = 0
        self.limit = limit


_CACHES: list[_Cache] = []
_MISSING = object()
# model id -> the weak reference whose callback forgets it (one per model, for every cache)
_WATCHED: dict[int, weakref.KeyedRef[int, object]] = {}


def _gone(ref: weakref.KeyedRef[int, object]) -> None:
    """A model was freed (on whichever thread dropped it): forget what was derived from it."""
    key = ref.key
    if _WATCHED.get(key) is ref:
        del _WATCHED[key]
    for c in _CACHES:
        held = c.by_job.pop(key, _MISSING)
        if held is not _MISSING:
            c.entries -= len(held) if type(held) is _Values else 1


class _Values(dict[tuple[object, ...], Any]):
    """The values of one model under several other arguments (a type of its own, so a value
    that is itself a dict is never taken for one)."""

    __slots__ = ()


def _watch(job: object) -> bool:
    """Whether `job` is watched (its values may be kept); False for an object that takes no
    weak reference: its values are then derived every time."""
    key = id(job)
    ref = _WATCHED.get(key)
    if ref is not None and ref() is job:
        return True
    try:
        _WATCHED[key] = weakref.KeyedRef(job, _gone, key)
    except TypeError:
        return False
    return True


def per_job(limit: int, at: int = 0) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Memoise a function whose positional argument `at` is the job model; at most `limit`
    entries (then all are forgotten at once: the next pass fills what is still used)."""

    def wrap(f: Callable[P, T]) -> Callable[P, T]:
        cache = _Cache(limit)
        _CACHES.append(cache)
        by_job = cache.by_job

        @functools.wraps(f)
        def memoised(*args: P.args, **kwargs: P.kwargs) -> T:
            if kwargs:
                return f(*args, **kwargs)
            job = args[at]
            rest = (*args[:at], *args[at + 1 :])
            held = by_job.get(id(job), _MISSING)
            if held is not _MISSING:
                if not rest:
                    return held  # type: ignore[no-any-return]
                if (hit := held.get(rest, _MISSING)) is not _MISSING:
                    return hit  # type: ignore[no-any-return]
            value = f(*args, **kwargs)
            if not _watch(job):
                return value
            if cache.entries >= cache.limit:
                by_job.clear()
                cache.entries = 0
                held = _MISSING
            if not rest:
                by_job[id(job)] = value
                cache.entries += 1
            else:
                if held is _MISSING:
                    held = by_job[id(job)] = _Values()
                held[rest] = value
                cache.entries += 1
            return value

        return memoised

    return wrap

