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
    "sqlalchemy",  # the service reads and writes with sqlite3; a migration runs in a child
    "alembic",
    "typer",  # `reconciler run` starts through reconciler.entry and argparse
    "click",
    "rich",
    "prometheus_client",  # only with --metrics-addr
    "cryptography",  # only when a job uses variables
    "croniter",  # only when a periodic job exists
    "pyroute2",  # only when a group uses bridge networking
    "urllib3",  # only for an http artifact
    "psutil",  # only for a template's sockaddr
    "yaml",  # only for yamldecode/yamlencode/toYAML
    "tarfile",  # only for an artifact (archives, git); zipfile comes with pydantic's plugins
)

# One real pass of the service (fake executor, a real store, a plain job file), then the
# heavy packages that are loaded.
RUN_PATH = """
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
import reconciler.entry, reconciler.service.start  # what `reconciler run` imports
from reconciler.db.store import Store
from reconciler.executor.base import NodeConfig
from reconciler.executor.fake import FakeExecutor
import reconciler.executor.linux.executor, reconciler.service.process, reconciler.service.control
import reconciler.metrics
if sys.argv[2] == "http":
    import reconciler.service.listener
from reconciler.service.loop import Service
reconciler.service.start.parser().parse_args(["--jobs", str(root / "jobs")])
(root / "jobs").mkdir(exist_ok=True)
(root / "jobs" / "web.hcl").write_text('''job "web" {
  group "g" {
    task "t" {
      driver = "exec"
      config { command = "/bin/sleep" }
    }
  }
}''')
store = Store(root / "state.db", migrate_apart=True)  # a new store: migrated by a child
service = Service(root / "jobs", store, FakeExecutor(lambda: 1e9),
                  NodeConfig(), clock=lambda: 1e9, watch=False)
service.reconcile()
from reconciler.executor.linux import fingerprint
fingerprint.probe(None, NodeConfig(), root)  # the real executor's start-up attributes
assert service.store.observed().slots, "the pass started nothing"
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


# Loaded only with --http-addr (the HTTP API); the control socket is served without them.
ONLY_FOR_THE_HTTP_API = (
    "http",  # http.server, http.client
    "ssl",  # http.client's; an https check imports it when it probes
    "html",
    "mimetypes",
)


def loaded_on_the_run_path(tmp_path: Path, http: bool = True) -> set[str]:
    out = subprocess.run([sys.executable, "-c", RUN_PATH, str(tmp_path), "http" if http else ""],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return set(json.loads(out.splitlines()[-1]))


def test_the_run_path_does_not_load_what_it_does_not_use(tmp_path: Path) -> None:
    loaded = loaded_on_the_run_path(tmp_path)
    assert "reconciler" in loaded and "pydantic" in loaded  # the probe did run the service
    assert sorted(loaded & set(NOT_ON_THE_RUN_PATH)) == []


def test_without_the_http_api_the_service_loads_no_http_server_nor_ssl(tmp_path: Path) -> None:
    loaded = loaded_on_the_run_path(tmp_path, http=False)
    assert "reconciler" in loaded and "socketserver" in loaded  # the control socket's server
    assert sorted(loaded & set(ONLY_FOR_THE_HTTP_API)) == []
    assert set(ONLY_FOR_THE_HTTP_API) - {"html", "mimetypes"} <= loaded_on_the_run_path(tmp_path)


def test_a_restarted_service_with_unchanged_files_does_not_load_the_parser(tmp_path: Path) -> None:
    """The first start reads the job file on the fast path (spec/hclfast.py), the second finds
    it in the parse cache: lark and python-hcl2 (~12 MB) stay out of the service either way."""
    first = loaded_on_the_run_path(tmp_path)
    assert "reconciler" in first and not first & {"lark", "hcl2"}
    again = loaded_on_the_run_path(tmp_path)
    assert "reconciler" in again and not again & {"lark", "hcl2"}


def test_metrics_render_with_their_names_and_values() -> None:
    from prometheus_client import generate_latest

    from reconciler import metrics

    class Exit:
        successful, oom_killed = False, True

    before = generate_latest(_registry(metrics)).decode()
    metrics.exited(Exit())
    metrics.pass_done(0.02, {})
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


def test_run_takes_the_same_options_as_the_clis_run() -> None:
    """`reconciler run` parses its options with argparse (reconciler.service.start); the
    CLI's `run` (typer: `--help`, the app) must offer the same ones with the same defaults."""
    import typer.main

    from reconciler.cli import app
    from reconciler.service import start

    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    typer_options = {p.opts[0]: p.default for p in command.params}
    argparse_options = {
        a.option_strings[0]: a.default for a in start.parser()._actions if a.option_strings
    }
    assert {o: str(d) for o, d in argparse_options.items()} == {
        o: str(d) for o, d in typer_options.items()
    }


def test_run_refuses_a_bad_option_and_a_bad_log_format(tmp_path: Path) -> None:
    from reconciler.service import start

    p = subprocess.run([sys.executable, "-c", "from reconciler.entry import main; main()",
                        "run", "--no-such-option"], capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2 and "--no-such-option" in p.stderr
    assert start.main(["--log-format", "xml", "--data-dir", str(tmp_path)]) == start.USAGE


def test_core_mhz_reads_what_psutil_reads(tmp_path: Path) -> None:
    from reconciler.executor.linux.fingerprint import _core_mhz

    cpu, info = tmp_path / "cpu", tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu MHz\t\t: 2596.120\nprocessor\t: 1\ncpu MHz\t\t: 2400.0\n")
    assert _core_mhz(cpu, info) == 2498  # no cpufreq: the mean current MHz
    for n, top in enumerate((3000000, 3400000)):
        d = cpu / "cpufreq" / f"policy{n}"
        d.mkdir(parents=True)
        (d / "scaling_max_freq").write_text(f"{top}\n")
    assert _core_mhz(cpu, info) == 3200  # cpufreq's maximum, as psutil.cpu_freq().max
    assert _core_mhz(tmp_path / "none", tmp_path / "none") == 1000
