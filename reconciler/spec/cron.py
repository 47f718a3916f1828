"""Cron expressions with Nomad's meaning (hashicorp/cronexpr), evaluated by croniter.

cronexpr reads 5 fields as `min hour dom month dow`, 6 as the same plus a *year* at the end,
and 7 as `sec min hour dom month dow year` (a 6-field expression is not "seconds first" as in
other cron dialects). Fields past the 7th are ignored, as cronexpr does. Each is rewritten to
croniter's 7-field, seconds-first form. Across DST changes the next time is cronexpr's: a wall
time the change skips has no launch that day, one it repeats has two. Pure apart from reading
the time zone database.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALIASES = {
    "@yearly": "0 0 0 1 1 * *",
    "@annually": "0 0 0 1 1 * *",
    "@monthly": "0 0 0 1 * * *",
    "@weekly": "0 0 0 * * 0 *",
    "@daily": "0 0 0 * * * *",
    "@midnight": "0 0 0 * * * *",
    "@hourly": "0 0 * * * * *",
}
# croniter's own extensions (hashed "H", random "R") mean something else to cronexpr
_NOT_CRONEXPR = re.compile(r"(^|[\s,/(])[HR]($|[\s,/(])")


class CronError(ValueError):
    pass


@lru_cache(maxsize=4096)
def normalize(expr: str) -> str:
    """Nomad's expression -> croniter's 7 fields; CronError says why it is not one."""
    text = expr.strip()
    if text.startswith("@"):
        if text not in ALIASES:
            raise CronError(f"unknown alias {text} (one of {', '.join(sorted(ALIASES))})")
        return ALIASES[text]
    fields = text.split()
    if len(fields) < 5:
        raise CronError("missing field(s): 5 (minute first), 6 (year last) or 7 (second first)")
    if len(fields) == 5:
        fields = ["0", *fields, "*"]
    elif len(fields) == 6:
        fields = ["0", *fields]
    fields = fields[:7]
    out = " ".join(fields)
    if _NOT_CRONEXPR.search(out):
        raise CronError('"H" and "R" are not cron syntax Nomad knows')
    from croniter import croniter  # only where a periodic job exists (~4.6 MB resident)

    try:
        croniter(out, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True)
    except Exception as e:  # croniter raises several unrelated types
        raise CronError(str(e).replace("[", "").replace("]", "")) from None
    return out


def zone(name: str) -> tzinfo | None:
    """Nomad's `time_zone`: "" is UTC, "Local" the machine's own zone (None here)."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"Invalid time zone \"{name}\"") from None


def next_after(exprs: tuple[str, ...], tz_name: str, after: float) -> float | None:
    """The earliest time strictly after `after` that any expression matches, or None."""
    tz = zone(tz_name)
    start = datetime.fromtimestamp(after, tz) if tz is not None else (
        datetime.fromtimestamp(after).astimezone()
    )  # fmt: skip
    from croniter import croniter

    best: float | None = None
    for expr in exprs:
        try:
            it = croniter(normalize(expr), start, second_at_beginning=True)
            t = float(it.get_next(float))
            for _ in range(50):  # each skipped wall time costs one step; a day has few
                if _on_the_clock(it.expanded, t, tz):
                    break
                t = float(it.get_next(float))
            else:
                continue
        except Exception:  # invalid (reported by validation) or no match left (a past year)
            continue
        if t > after and (best is None or t < best):
            best = t
    return best


def _on_the_clock(expanded: list[list[int | str]], t: float, tz: tzinfo | None) -> bool:
    """Whether `t` is a launch cronexpr (so Nomad) would make. croniter moves a time that a
    DST change skips (02:30 on a spring-forward night) to the first time after the gap;
    cronexpr skips it: that day has no launch. It skips the whole hour the change shortens,
    also its part that exists (Lord Howe's 02:30-02:59 on its 30-minute change). A time the
    fall-back repeats runs twice in both."""
    local = datetime.fromtimestamp(t, tz).replace(tzinfo=None)  # wall clock (tz None: local)
    minute, hour, second = expanded[0], expanded[1], expanded[5]
    if not all(f[0] == "*" or v in f for f, v in ((hour, local.hour), (minute, local.minute),
                                                   (second, local.second))):  # fmt: skip
        return False
    top = local.replace(minute=0, second=0, microsecond=0)  # does this hour begin on the clock?
    there = top.replace(tzinfo=tz).timestamp() if tz is not None else top.timestamp()
    return datetime.fromtimestamp(there, tz).replace(tzinfo=None) == top
