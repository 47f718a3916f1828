"""The running service's resident set: what its run path must not load (docs/operations.md,
"Memory"), and the metrics it renders without prometheus_client until a scrape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Packages the service loads only when something needs them (import cost measured in
# docs/operations.md): a module that imports one of these at its top and is on the run path
# puts it back into every service's memory.
NOT_ON_THE_RUN_PATH = (
    "prometheus_client",  # only with --metrics-addr
    "cryptography",  # only when a job uses variables
    "croniter",  # only when a periodic job exists
    "pyroute2",  # only when a group uses bridge networking
    "urllib3",  # only for an http artifact
    "psutil",  # only for a template's sockaddr
    "yaml",  # only for yamldecode/yamlencode/toYAML
)

# One real pass of the service (fake executor, a real store, a plain job file), then the
# heavy packages that are loaded.
RUN_PATH = """
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.executor.fake import FakeExecutor
import reconciler.executor.linux.executor, reconciler.service.process, reconciler.service.control
import reconciler.metrics, reconciler.service.listener
from reconciler.service.loop import Service
(root / "jobs").mkdir()
(root / "jobs" / "web.hcl").write_text('''job "web" {
  group "g" {
    task "t" {
      driver = "exec"
      config { command = "/bin/sleep" }
    }
  }
}''')
service = Service(root / "jobs", Store(root / "state.db"), FakeExecutor(lambda: 1e9),
                  NodeConfig(), clock=lambda: 1e9, watch=False)
service.reconcile()
assert service.store.observed().slots, "the pass started nothing"
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded_on_the_run_path(tmp_path: Path) -> set[str]:
    out = subprocess.run([sys.executable, "-c", RUN_PATH, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return set(json.loads(out.splitlines()[-1]))


def test_the_run_path_does_not_load_what_it_does_not_use(tmp_path: Path) -> None:
    loaded = loaded_on_the_run_path(tmp_path)
    assert "reconciler" in loaded and "pydantic" in loaded  # the probe did run the service
    assert sorted(loaded & set(NOT_ON_THE_RUN_PATH)) == []


def test_metrics_render_with_their_names_and_values() -> None:
    from prometheus_client import generate_latest

    from reconciler import metrics

    class Exit:
        successful, oom_killed = False, True

    before = generate_latest(_registry(metrics)).decode()
    metrics.exited(Exit())
    metrics.pass_done(0.02, [])
    metrics.degraded("disk full", True)
    text = generate_latest(_registry(metrics)).decode()
    metrics.degraded("disk full", False)

    def value(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    for name in ('reconciler_task_exits_total{outcome="failure"}', "reconciler_oom_kills_total",
                 "reconciler_reconcile_seconds_count"):  # fmt: skip
        assert value(text, name) == value(before, name) + 1
    assert value(text, 'reconciler_reconcile_seconds_bucket{le="0.025"}') >= 1
    assert value(text, 'reconciler_degraded{cause="disk full"}') == 1
    assert "# TYPE reconciler_task_restarts_total counter" in text
    assert "# TYPE reconciler_tasks gauge" in text


def _registry(metrics: object) -> object:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(metrics._Collector())  # type: ignore[attr-defined]
    return registry
