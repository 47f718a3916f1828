"""What templates read besides the job files, as the loop follows it: Nomad Variables and the
service registry (nomadService). A change plans the jobs whose templates read it, at once or,
for templates with `wait`, once their wait is over (service/quiescence). Part of the Service
(loop.py), kept in its own file so that the loop stays readable."""

from __future__ import annotations

import dataclasses
import queue
from collections.abc import Callable
from typing import Any

from reconciler.apply import Applier
from reconciler.db.store import Store
from reconciler.db.variables import VariableStore
from reconciler.plan import Host
from reconciler.service import quiescence
from reconciler.service.recovery import Recovery
from reconciler.service.registry import TemplateServices
from reconciler.spec.gotemplate import nomadservices
from reconciler.spec.template import reads_variables


class TemplateInputs:
    host: Host
    applier: Applier
    variables: VariableStore
    recovery: Recovery
    clock: Callable[[], float]
    queue: queue.Queue[tuple[str, Any]]
    _touched: set[str]
    _dirty: bool
    _full: bool
    _deadline_of: dict[str, list[float]]

    def _init_inputs(self, store: Store) -> None:
        self.template_services = TemplateServices(store, self.host.attributes)
        self._services_read = False
        self.quiescence = quiescence.Quiescence()  # templates' `wait` holding changes back

    def _read_inputs(self) -> None:
        """After a scan: the variables' versions; the registry, the first time."""
        self._read_variables()
        if not self._services_read:
            self._read_services()

    def _read_variables(self) -> None:
        """Nomad Variables' versions (no secrets): a change plans every job again."""
        try:
            versions = self.variables.versions()
        except Exception as e:  # an unreadable store must not stop the pass
            self.recovery.log_once("reading variable versions", e)
            return
        if versions != self.host.variables:
            before = self.host
            self.host = dataclasses.replace(self.host, variables=versions)
            self._dirty = self._full = True
            self._hold_by_wait(before, quiescence.variable_readers(self.applier.specs),
                               reads_variables)  # fmt: skip

    def _read_services(self) -> None:
        """The registrations templates see (nomadService): when they change, the jobs whose
        templates read a changed name are planned again, so re-rendered per change_mode."""
        self.template_services.changed()
        try:
            now = nomadservices.fingerprints(self.template_services.registrations())
        except Exception as e:  # an unreadable store must not stop the pass
            self.recovery.log_once("reading the service registry", e)
            return
        self._services_read = True
        before = self.host
        if now == before.services:
            return
        self.host = dataclasses.replace(self.host, services=now)
        changed = {k for k in before.services.keys() | now.keys()
                   if before.services.get(k) != now.get(k)}  # fmt: skip
        readers = quiescence.service_readers(self.applier.specs, changed)
        at_once = self._hold_by_wait(before, readers, quiescence.reads_any_service)
        if at_once:
            self._touched |= at_once
            self._dirty = True
            self.queue.put(("services", None))  # a pass follows, as after an exit

    def _hold_by_wait(self, before: Host, jobs: set[str],
                      reads: Callable[[Any], bool]) -> set[str]:  # fmt: skip
        """Jobs whose templates set `wait` keep what they rendered until it is over; the
        others are returned, to be planned now."""
        at_once = quiescence.render_now(self.quiescence, jobs, self.applier.specs, reads,
                                        (before.variables, before.services), self.clock())  # fmt: skip
        self.host = dataclasses.replace(self.host, held=self.quiescence.seen())
        self._note_waits()
        return at_once

    def _release_waits(self, now: float) -> None:
        """Jobs whose wait is over are planned with current data."""
        if released := self.quiescence.release(now):
            self.host = dataclasses.replace(self.host, held=self.quiescence.seen())
            self._touched |= released
            self._dirty = True

    def _note_waits(self) -> None:
        """When held jobs are due (kept with the loop's other deadlines)."""
        for job, t in self.quiescence.fire_times().items():
            self._deadline_of.setdefault(job, []).append(t)
