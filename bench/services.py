"""What nomadService costs, in CPU time (time.process_time, so a loaded machine does not blur
it): rendering a template that lists a service of N instances; noticing a registry change
(digests of N registrations, and which of J jobs read the changed name); and the planner's
per-task digest part, for J jobs whose templates read a service and J that read none.

    .venv/bin/python -m bench.services [N] [J]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from reconciler.plan.digest import services_part
from reconciler.service.quiescence import service_readers
from reconciler.spec.gotemplate import Host, Registration, render
from reconciler.spec.gotemplate.nomadservices import fingerprints
from reconciler.spec.load import parse_text

READS = '{{ range nomadService "api" }}{{ .Address }}:{{ .Port }}\n{{ end }}'
JOB = """job "j%d" {
  group "g" {
    task "t" {
      driver = "exec"
      config { command = "/bin/app" }
      template {
        data = %s
        destination = "local/x"
      }
    }
  }
}
"""


class Source:
    def __init__(self, n: int) -> None:
        self.regs = [Registration(f"_nomad-task-a{i}-t-api-http", "api", "n", "127.0.0.1",
                                  20000 + i, "dc1", ("v1",), f"j{i}", f"a{i}")  # fmt: skip
                     for i in range(n)]  # fmt: skip

    def registrations(self) -> list[Registration]:
        return self.regs


def cpu_ms(fn: Callable[[], object], runs: int) -> float:
    t = time.process_time()
    for _ in range(runs):
        fn()
    return (time.process_time() - t) / runs * 1000


def main(n: int = 100, jobs: int = 1000) -> None:
    src = Source(n)
    host = Host(services=src)
    print(f"render, {n} instances: {cpu_ms(lambda: render(READS, host), 200):.3f} ms")
    print(f"registry digests, {n} registrations: "
          f"{cpu_ms(lambda: fingerprints(src.regs), 200):.3f} ms")  # fmt: skip
    import json

    specs = {}
    for i in range(jobs):
        text = READS if i % 2 == 0 else "static"
        [spec] = parse_text(JOB % (i, json.dumps(text)), f"jobs/j{i}.hcl").jobs
        specs[spec.id] = spec
    print(f"readers among {jobs} jobs: "
          f"{cpu_ms(lambda: service_readers(specs, {'api'}), 20):.3f} ms")  # fmt: skip
    fp = fingerprints(src.regs)
    reading = [s.job for k, s in specs.items() if int(k[1:]) % 2 == 0]
    plain = [s.job for k, s in specs.items() if int(k[1:]) % 2 == 1]
    for name, js in (("reading", reading), ("not reading", plain)):
        ms = cpu_ms(lambda js=js: [services_part(j, "g", "t", fp) for j in js], 20)  # type: ignore[misc]
        print(f"digest part, {len(js)} tasks {name} a service: {ms:.3f} ms per pass")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
