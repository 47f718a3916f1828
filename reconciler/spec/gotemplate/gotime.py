"""Go's time.Format reference layouts ("2006-01-02T15:04:05Z07:00") for UTC times."""

from __future__ import annotations

import datetime as dt

_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]  # fmt: skip


def _fraction(t: dt.datetime, digits: int, trim: bool, sep: str) -> str:
    frac = f"{t.microsecond:06d}000"[:digits]
    if trim:
        frac = frac.rstrip("0")
        return sep + frac if frac else ""
    return sep + frac


def format_time(t: dt.datetime, layout: str) -> str:
    """time.Time.Format for a UTC time (zone name "UTC", offset zero)."""
    out: list[str] = []
    i = 0
    h12 = t.hour % 12 or 12
    table: list[tuple[str, str]] = [
        ("January", _MONTHS[t.month - 1]), ("Jan", _MONTHS[t.month - 1][:3]),
        ("Monday", _DAYS[t.weekday()]), ("Mon", _DAYS[t.weekday()][:3]),
        ("MST", "UTC"), ("2006", f"{t.year:04d}"), ("2", str(t.day)),
        ("01", f"{t.month:02d}"), ("02", f"{t.day:02d}"), ("03", f"{h12:02d}"),
        ("04", f"{t.minute:02d}"), ("05", f"{t.second:02d}"), ("06", f"{t.year % 100:02d}"),
        ("002", f"{t.timetuple().tm_yday:03d}"), ("__2", f"{t.timetuple().tm_yday:>3d}"),
        ("_2", f"{t.day:>2d}"), ("15", f"{t.hour:02d}"), ("1", str(t.month)),
        ("3", str(h12)), ("4", str(t.minute)), ("5", str(t.second)),
        ("PM", "PM" if t.hour >= 12 else "AM"), ("pm", "pm" if t.hour >= 12 else "am"),
        ("Z07:00:00", "Z"), ("Z070000", "Z"), ("Z07:00", "Z"), ("Z0700", "Z"), ("Z07", "Z"),
        ("-07:00:00", "+00:00:00"), ("-070000", "+000000"), ("-07:00", "+00:00"),
        ("-0700", "+0000"), ("-07", "+00"),
    ]  # fmt: skip
    table.sort(key=lambda kv: -len(kv[0]))
    while i < len(layout):
        c = layout[i]
        if c in ".," and i + 1 < len(layout) and layout[i + 1] in "09":
            j = i + 1
            while j < len(layout) and layout[j] == layout[i + 1]:
                j += 1
            if j >= len(layout) or not layout[j].isdigit():
                out.append(_fraction(t, j - i - 1, layout[i + 1] == "9", c))
                i = j
                continue
        for token, value in table:
            if layout.startswith(token, i) and not _inside_word(layout, i, token):
                out.append(value)
                i += len(token)
                break
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _inside_word(layout: str, i: int, token: str) -> bool:
    # Go reads "Jan"/"Mon" only when not followed by a lower-case letter ("Month" is text)
    if token in ("Jan", "Mon", "MST") or token in ("January", "Monday"):
        end = i + len(token)
        return end < len(layout) and layout[end].islower() and token in ("Jan", "Mon")
    return False
