"""A scripted executor for the unit tier, in the spirit of Nomad's mock driver.

A task's env scripts it: FAKE_RUN_FOR (seconds, default forever), FAKE_EXIT_CODE (default 0),
FAKE_START_ERROR (a permanent start error), FAKE_TEMP_ERROR (a temporary one),
FAKE_IGNORE_SIGNAL (only the kill after kill_timeout ends it). Time is the caller's clock.
Artifact downloads stay in flight until `complete_fetches`; a source containing "fail" fails.
"""

from __future__ import annotations

import signal as signals
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reconciler.executor.base import (
    ArtifactError,
    ExecResult,
    ExecutorUnavailable,
    ExitResult,
    FetchState,
    Fingerprint,
    StartError,
    TaskConfig,
    TaskHandle,
    TaskStats,
)


@dataclass
class FakeTask:
    config: TaskConfig
    handle: TaskHandle
    ends_at: float | None
    exit_code: int
    signal: int = 0
    signals: list[str] = field(default_factory=list)
    alive: bool = True


class FakeExecutor:
    fds_per_task = 2
    background_starts = False  # a test sets it to have bulk starts run on the applier's thread

    def __init__(self, clock: Callable[[], float], boot_id: str = "fake-boot") -> None:
        self.clock = clock
        self.boot_id = boot_id
        self.tasks: dict[str, FakeTask] = {}
        self.started: list[TaskConfig] = []
        self.released: list[str] = []
        self.rendered: list[TaskConfig] = []  # re-renders that changed a file
        self.files: dict[str, dict[str, str]] = {}  # task id -> template destination -> text
        self.render_error = ""  # set: render_templates refuses, as for a tampered destination
        self.survivors: set[str] = set()  # handle ids that `recover` finds alive
        self.primes = 0
        self._next_pid = 1000
        self.fetches: dict[str, tuple[TaskConfig, Callable[[str], None]]] = {}  # in flight
        self.fetched: dict[str, set[str]] = {}  # task id -> artifact keys its dirs hold
        self.fetch_errors: dict[str, str] = {}  # raised once by the next fetch_artifacts
        self.downloads: list[str] = []  # task ids, one per download begun
        self._exits: list[tuple[TaskHandle, ExitResult]] = []
        self._exited = threading.Event()  # lets a waiting poll_exits return at once

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(True, "fake", {"attr.kernel.name": "linux", "driver.exec": "true"})

    def prime(self) -> None:
        self.primes += 1

    def start(self, config: TaskConfig) -> TaskHandle:
        env = config.env
        if msg := env.get("FAKE_START_ERROR"):
            raise StartError(msg)
        if msg := env.get("FAKE_TEMP_ERROR"):
            raise ExecutorUnavailable(msg)
        self._next_pid += 2
        now = self.clock()
        handle = TaskHandle(config.id, self._next_pid + 1, self._next_pid, self._next_pid,
                            self.boot_id, f"fake/{config.id}", f"/fake/{config.id}", now)  # fmt: skip
        run_for = env.get("FAKE_RUN_FOR")
        ends = now + float(run_for) if run_for else None
        self.tasks[config.id] = FakeTask(config, handle, ends, int(env.get("FAKE_EXIT_CODE", "0")))
        self.started.append(config)
        self.files[config.id] = {t.destination: t.text for t in config.templates}
        return handle

    def start_all(self, configs: Sequence[TaskConfig]) -> list[TaskHandle | Exception]:
        out: list[TaskHandle | Exception] = []
        for c in configs:
            try:
                out.append(self.start(c))
            except Exception as e:
                out.append(e)
        return out

    def recover(self, handle: TaskHandle) -> bool:
        if handle.id in self.survivors and handle.boot_id == self.boot_id:
            t = self.tasks.get(handle.id)
            if t is None or t.handle.pid != handle.pid:
                cfg = TaskConfig(
                    id=handle.id, alloc_id=handle.id.rpartition("/")[0], command="fake"
                )
                self.tasks[handle.id] = FakeTask(cfg, handle, None, 0)
            return True
        return False

    def finish(self, task_id: str, exit_code: int = 0, signal: int = 0, oom: bool = False) -> None:
        t = self.tasks[task_id]
        if t.alive:
            t.alive = False
            self._exits.append((t.handle, ExitResult(exit_code, signal, oom, "", self.clock())))
            self._exited.set()

    def poll_exits(self, timeout: float) -> list[tuple[TaskHandle, ExitResult]]:
        # Waits as the real executor does, in short naps: a test's clock may jump meanwhile.
        # (Returning at once made the waiter thread spin, starving the loop of the GIL.)
        if not self._exits and timeout > 0:
            self._exited.wait(min(timeout, 0.01))
        self._exited.clear()
        now = self.clock()
        for t in list(self.tasks.values()):
            if t.alive and t.ends_at is not None and t.ends_at <= now:
                self.finish(t.config.id, t.exit_code, t.signal)
        out, self._exits = self._exits, []
        return out

    def wait(self, handle: TaskHandle, timeout: float | None = None) -> ExitResult | None:
        for h, r in self.poll_exits(0):
            if h.id == handle.id:
                return r
        return None

    def stop(self, handle: TaskHandle, signal: str, timeout: float, delay: float = 0.0) -> None:
        t = self.tasks.get(handle.id)
        if t is None or not t.alive:
            return
        t.signals.append(signal)
        if "FAKE_IGNORE_SIGNAL" in t.config.env and timeout > 0:
            t.ends_at, t.exit_code, t.signal = self.clock() + delay + timeout, 137, 9
        else:
            num = int(signals.Signals[signal if signal.startswith("SIG") else "SIG" + signal])
            t.ends_at, t.exit_code, t.signal = self.clock() + delay, 128 + num, num

    def destroy(self, handle: TaskHandle, force: bool = False) -> None:
        t = self.tasks.get(handle.id)
        if t is not None and force and t.alive and t.handle.pid == handle.pid:
            self.finish(handle.id, 137, 9)
            handle = t.handle
        if t is not None and t.handle == handle and not t.alive:
            del self.tasks[handle.id]

    def render_templates(self, config: TaskConfig, handle: TaskHandle) -> frozenset[str]:
        if self.render_error:
            raise StartError(self.render_error)
        files = self.files.setdefault(config.id, {})
        changed = frozenset(t.destination for t in config.templates
                            if files.get(t.destination) != t.text)  # fmt: skip
        files.update((t.destination, t.text) for t in config.templates)
        if changed:
            self.rendered.append(config)
        return changed

    def fetch_artifacts(self, config: TaskConfig, done: Callable[[str], None]) -> FetchState:
        if config.id in self.fetches:
            return "fetching"
        if err := self.fetch_errors.pop(config.id, None):
            raise ArtifactError(err)
        have = self.fetched.get(config.id, set())
        if all(a.key in have for a in config.artifacts):
            return "ready"
        self.fetches[config.id] = (config, done)
        self.downloads.append(config.id)
        return "started"

    def complete_fetches(self) -> list[str]:
        """End every download in flight, calling back as a download thread would."""
        ended = list(self.fetches)
        for tid in ended:
            config, done = self.fetches.pop(tid)
            bad = [a.source for a in config.artifacts if "fail" in a.source]
            if bad:
                self.fetch_errors[tid] = (
                    f'failed to download artifact "{bad[0]}": bad response code: 404'
                )
            else:
                self.fetched.setdefault(tid, set()).update(a.key for a in config.artifacts)
            done(tid)
        return ended

    def release(self, alloc_id: str) -> None:
        self.released.append(alloc_id)
        for d in (self.fetches, self.fetched):
            for tid in [t for t in d if t.startswith(alloc_id + "/")]:
                del d[tid]

    def alloc_address(self, alloc_id: str) -> str:
        return "10.99.0." + str(sum(alloc_id.encode()) % 250 + 2)

    def inspect(self, handle: TaskHandle) -> Literal["running", "exited", "unknown"]:
        t = self.tasks.get(handle.id)
        return "unknown" if t is None else ("running" if t.alive else "exited")

    def stats(self, handle: TaskHandle) -> TaskStats:
        return TaskStats(0.0, 0.0, 1 << 20, 0, 0, 1 << 20, 1, 0, 0.0)

    def signal(self, handle: TaskHandle, signal: str) -> None:
        t = self.tasks.get(handle.id)
        if t is None or not t.alive:
            raise ProcessLookupError(handle.id)
        t.signals.append(signal)

    def exec(self, handle: TaskHandle, cmd: list[str], timeout: float) -> ExecResult:
        return ExecResult(0, ("fake: " + " ".join(cmd)).encode())

    def alive(self) -> list[str]:
        return sorted(k for k, t in self.tasks.items() if t.alive)
