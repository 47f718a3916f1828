"""The service's threads carry their names into the kernel (PR_SET_NAME through python-prctl),
so `top -H`, `ps -L` and /proc/PID/task/*/comm tell the loop, the exit waiter, the control
socket and the HTTP listener apart."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import prctl


def name_this_thread(name: str) -> None:
    """Name the calling OS thread (the kernel keeps 15 bytes)."""
    prctl.set_name(f"rc-{name}"[:15])


def start(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """A daemon thread whose OS thread is named too."""

    def run() -> None:
        name_this_thread(name)
        target(*args)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t
