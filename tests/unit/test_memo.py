"""spec.memo.per_job: values derived from a job model are remembered per model object (and
the other arguments' values), never answered for another object."""

from __future__ import annotations

import gc
import weakref

from reconciler.plan import admission, digest, health
from reconciler.spec import memo, template
from reconciler.spec.load import parse_text
from reconciler.spec.models import Job
from tests.unit.conftest import job


class Model:
    """A stand-in for a frozen job model: equal by content, distinct by identity."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_remembered_per_object_and_argument_values() -> None:
    calls: list[tuple[int, str]] = []

    @memo.per_job(limit=3, at=1)
    def derive(prefix: str, m: Model, group: str) -> str:
        calls.append((m.n, group))
        return f"{prefix}{m.n}{group}"

    a, b = Model(1), Model(1)
    assert derive("x", a, "g") == derive("x", a, "".join(["g"])) == "x1g"
    assert calls == [(1, "g")]  # an equal string is the same argument
    assert derive("x", b, "g") == "x1g" and len(calls) == 2  # another object: derived again
    assert derive("y", a, "g") == "y1g" and len(calls) == 3  # another argument: again
    derive("x", a, "h")  # a fourth entry: the full cache is forgotten, then this one kept
    assert derive("x", a, "h") and len(calls) == 4
    derive("x", a, "g")
    assert len(calls) == 5


def test_a_model_dropped_takes_its_values_with_it() -> None:
    """A removed job's model is not kept alive by what was derived from it, and its values
    go with it (a service that saw 1,000 jobs come and go holds none of them)."""

    @memo.per_job(limit=100)
    def whole(m: Model) -> int:
        return m.n

    @memo.per_job(limit=100)
    def part(m: Model, group: str) -> str:
        return f"{m.n}{group}"

    kept, dropped = Model(1), Model(2)
    assert whole(kept) == 1 and whole(dropped) == 2
    assert part(kept, "g") == "1g" and part(dropped, "g") == "2g" and part(dropped, "h") == "2h"
    gone = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert gone() is None  # nothing memo holds keeps it
    caches = [c for c in memo._CACHES if c.by_job and id(kept) in c.by_job]
    assert [len(c.by_job) for c in caches[-2:]] == [1, 1]  # only `kept` is left in each
    assert [c.entries for c in caches[-2:]] == [1, 1]
    assert whole(kept) == 1 and part(kept, "g") == "1g"


def test_an_object_without_weak_references_is_derived_every_time() -> None:
    calls: list[int] = []

    @memo.per_job(limit=100)
    def count(t: tuple[int, ...]) -> int:
        calls.append(1)
        return len(t)

    t = (1, 2)
    assert count(t) == count(t) == 2 and len(calls) == 2


def test_the_job_model_memos_answer_as_the_functions_do() -> None:
    text = job("web", extra_group='network {\n port "http" { static = 23400 }\n}',
               extra_task='service {\n port = "http"\n'
                          ' check {\n type = "tcp"\n interval = "2s"\n timeout = "1s"\n}\n}')  # fmt: skip
    [first] = [s.job for s in parse_text(text, "web.hcl").jobs]
    # equal content, another object (a parse's model is held once for equal jobs)
    [again] = [Job.model_validate_json(s.canonical) for s in parse_text(text, "web.hcl").jobs]
    assert first is not again
    assert digest.task_digest(first, "g", "t") == digest.task_digest(again, "g", "t")
    assert admission.of_job(first) == admission.of_job(again)
    assert template.job_reads_services(first) == template.job_reads_services(again) == frozenset()
    web = health.expected("web", first, "g", "t")
    assert web == [("t", "web-g-t", 'service: "web-g-t" check', "require_healthy")]
    # the job id is part of what is remembered: the default service name is made of it
    assert health.expected("other", first, "g", "t")[0][1] == "other-g-t"
