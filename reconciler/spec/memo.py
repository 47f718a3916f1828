"""Values derived from a (frozen) job model, remembered per model object: the loader hands the
same object back until its file changes, so a pass over unchanged jobs derives nothing again.
Keyed by the object's identity (models are large to hash) and the other arguments' values;
the object itself is kept beside the value, so a recycled id never answers for another."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def per_job(limit: int, at: int = 0) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Memoise a function whose positional argument `at` is the job model; at most `limit`
    entries (then all are forgotten at once: the next pass fills what is still used)."""

    def wrap(f: Callable[P, T]) -> Callable[P, T]:
        cache: dict[tuple[object, ...], tuple[object, T]] = {}

        @functools.wraps(f)
        def memoised(*args: P.args, **kwargs: P.kwargs) -> T:
            if kwargs:
                return f(*args, **kwargs)
            job = args[at]
            key = (id(job), *args[:at], *args[at + 1 :])
            hit = cache.get(key)
            if hit is not None and hit[0] is job:
                return hit[1]
            if len(cache) >= limit:
                cache.clear()
            value = f(*args, **kwargs)
            cache[key] = (job, value)
            return value

        return memoised

    return wrap
