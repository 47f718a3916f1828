"""spec.memo.per_job: values derived from a job model are remembered per model object (and
the other arguments' values), never answered for another object."""

from __future__ import annotations

from reconciler.plan import admission, digest, health
from reconciler.spec import memo, template
from reconciler.spec.load import parse_text
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


def test_the_job_model_memos_answer_as_the_functions_do() -> None:
    text = job("web", extra_group='network {\n port "http" { static = 23400 }\n}',
               extra_task='service {\n port = "http"\n'
                          ' check {\n type = "tcp"\n interval = "2s"\n timeout = "1s"\n}\n}')  # fmt: skip
    [first] = [s.job for s in parse_text(text, "web.hcl").jobs]
    [again] = [s.job for s in parse_text(text, "web.hcl").jobs]  # equal content, another object
    assert first is not again
    assert digest.task_digest(first, "g", "t") == digest.task_digest(again, "g", "t")
    assert admission.of_job(first) == admission.of_job(again)
    assert template.job_reads_services(first) == template.job_reads_services(again) == frozenset()
    web = health.expected("web", first, "g", "t")
    assert web == [("t", "web-g-t", 'service: "web-g-t" check', "require_healthy")]
    # the job id is part of what is remembered: the default service name is made of it
    assert health.expected("other", first, "g", "t")[0][1] == "other-g-t"
