"""Shared parts of job models (spec/sharing.py): a shared job dumps, digests and compares as
before, whichever way it was built (parsed, or read back from its canonical JSON), and equal
parts of different jobs are one object."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec.desired import JobSpec, canonical_json
from reconciler.spec.load import is_job_file, parse_text
from reconciler.spec.models import Job
from reconciler.spec.sharing import Sharing

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
JOBS = sorted(
    p for p in Path(__file__).parents[2].joinpath("jobs").glob("*.hcl") if is_job_file(p.name)
)

words = st.sampled_from(["a", "b", "web", "0644", "", "1", "true", "x y", "ü"])
durations = st.sampled_from(['"5s"', '"15s"', '"1m30s"', '"30m"', "0"])


@st.composite
def job_file(draw: st.DrawFn) -> str:
    """A job file whose fields are drawn from small pools, so that two files share parts."""
    env = draw(st.dictionaries(st.sampled_from(["A", "B", "PORT"]), words, max_size=2))
    env_block = "".join(f"        {k} = {json.dumps(v)}\n" for k, v in env.items())
    args = json.dumps(draw(st.lists(words, max_size=3)))
    restart = draw(st.one_of(st.none(), st.tuples(st.integers(0, 3), durations)))
    restart_block = (
        f"      restart {{\n        attempts = {restart[0]}\n        delay = {restart[1]}\n      }}\n"
        if restart
        else ""
    )
    cpu, memory = draw(st.sampled_from([100, 2, 500])), draw(st.sampled_from([300, 16, 64]))
    logs = draw(st.sampled_from(["", "      logs {\n        max_files = 1\n      }\n"]))
    tasks = draw(st.lists(st.sampled_from(["t", "u", "v"]), min_size=1, max_size=2, unique=True))
    body = "".join(
        f'    task "{t}" {{\n      driver = "exec"\n'
        f'      config {{\n        command = "/bin/sleep"\n        args = {args}\n      }}\n'
        f"      env {{\n{env_block}      }}\n{restart_block}{logs}"
        f"      resources {{\n        cpu = {cpu}\n        memory = {memory}\n      }}\n    }}\n"
        for t in tasks
    )
    count = draw(st.integers(0, 2))
    return f'job "j" {{\n  group "g" {{\n    count = {count}\n{body}  }}\n}}\n'


def dumps(job: Job) -> tuple[str, str]:
    return canonical_json(job), repr(job)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(job_file(), min_size=1, max_size=4))
def test_shared_jobs_dump_and_compare_as_before(texts: list[str]) -> None:
    sharing = Sharing()
    specs = [s for text in texts for s in parse_text(text, "jobs/j.hcl").jobs]
    assert specs, texts
    shared = []
    for spec in specs:
        before = dumps(spec.job)
        again = Job.model_validate_json(spec.canonical)
        again_before = dumps(again)
        one, two = sharing.share(spec.job), sharing.share(again)
        assert dumps(one) == before and dumps(two) == again_before == dumps(again)
        assert canonical_json(one) == spec.canonical == canonical_json(again)
        assert again == spec.job == one == two
        shared.append(one)
    for a, x in zip(specs, shared, strict=True):  # one object held: equal jobs only
        assert all(s.canonical == a.canonical for s, y in zip(specs, shared, strict=True) if y is x)
    first, last = shared[0], shared[-1]
    for a, b in [(first, last), (sharing.share(Job.model_validate_json(specs[0].canonical)), first)]:
        ta, tb = a.group["g"].task, b.group["g"].task
        for name in ta.keys() & tb.keys():
            if ta[name].resources == tb[name].resources and (
                ta[name].resources.model_fields_set == tb[name].resources.model_fields_set
            ):
                assert ta[name].resources is tb[name].resources


def test_every_example_job_keeps_its_digest_when_shared() -> None:
    sharing = Sharing()
    for path in JOBS:
        for spec in parse_text(path.read_text(), f"jobs/{path.name}").jobs:
            twice = [sharing.share(spec.job), sharing.share(Job.model_validate_json(spec.canonical))]
            for job in twice:
                assert canonical_json(job) == spec.canonical
            assert twice[0] == twice[1]


def test_equal_parts_of_different_jobs_are_one_object() -> None:
    sharing = Sharing()
    text = 'job "{n}" {{ group "g" {{ task "t" {{\n driver = "exec"\n' \
           ' config {{ command = "/bin/{n}" }}\n env {{ NAME = "{n}" }}\n}} }} }}'  # fmt: skip
    a, b = (parse_text(text.format(n=n), f"jobs/{n}.hcl").jobs[0].job for n in ("a", "b"))
    a, b = sharing.share(a), sharing.share(b)
    ta, tb = a.group["g"].task["t"], b.group["g"].task["t"]
    assert ta.resources is tb.resources and ta.logs is tb.logs and ta.template is tb.template
    assert ta.config is not tb.config and ta.env is not tb.env  # they differ
    assert a.group["g"].network is b.group["g"].network
    assert a is not b and a.group["g"] is not b.group["g"]  # they hold tasks that differ


def test_jobs_equal_but_for_their_names_are_one_model() -> None:
    """1,000 jobs from one template: one Job model (the name is the file's, not the model's)."""
    sharing = Sharing()
    text = 'job "{n}" {{ group "g" {{ task "t" {{\n driver = "exec"\n' \
           ' config {{ command = "/bin/sleep" }}\n}} }} }}'  # fmt: skip
    specs = [parse_text(text.format(n=n), f"jobs/{n}.hcl").jobs[0] for n in ("a", "b")]
    a, b = (sharing.share(s.job) for s in specs)
    assert a is b and canonical_json(a) == specs[0].canonical == specs[1].canonical
    c = sharing.share(parse_text(text.format(n="c").replace("sleep", "true"), "c.hcl").jobs[0].job)
    assert c is not a and c.group["g"].task["t"].resources is a.group["g"].task["t"].resources


def test_the_table_is_emptied_past_its_limit_without_changing_jobs() -> None:
    sharing = Sharing(limit=5)
    path = JOBS[0]
    spec = parse_text(path.read_text(), f"jobs/{path.name}").jobs[0]
    for _ in range(3):
        job = sharing.share(Job.model_validate_json(spec.canonical))
        assert canonical_json(job) == spec.canonical
    assert len(sharing) < 100


def test_a_job_spec_holds_its_canonical_json_deflated_and_gives_it_back() -> None:
    for path in JOBS:
        for spec in parse_text(path.read_text(), f"jobs/{path.name}").jobs:
            again = JobSpec(spec.id, Job.model_validate_json(spec.canonical), spec.file,
                            spec.digest, spec.canonical)  # fmt: skip
            assert again.canonical == spec.canonical == canonical_json(spec.job)
            assert again == spec and len(spec.packed) < len(spec.canonical) / 2


def test_a_job_spec_is_replaced_as_a_dataclass() -> None:
    spec = parse_text(JOBS[0].read_text(), f"jobs/{JOBS[0].name}").jobs[0]
    other = dataclasses.replace(spec, id="other")
    assert other.id == "other" and other.canonical == spec.canonical and other.job is spec.job


def test_parts_no_job_holds_leave_the_table() -> None:
    """A job removed (its model dropped) does not keep its parts in the table: a prune drops
    them, and what live jobs hold stays shared."""
    table = Sharing()
    text = 'job "j" {\n  group "g" {\n    task "t" {\n      driver = "exec"\n' \
           '      config {\n        command = "/bin/sleep"\n      }\n' \
           '      env {\n        WHO = "%s"\n      }\n    }\n  }\n}\n'  # fmt: skip
    # models of their own (a parse's are in the service's table already)
    [kept] = [Job.model_validate_json(s.canonical) for s in parse_text(text % "kept", "a.hcl").jobs]
    [gone] = [Job.model_validate_json(s.canonical) for s in parse_text(text % "gone", "b.hcl").jobs]
    kept, gone = table.share(kept), table.share(gone)
    before = len(table)
    del gone
    assert table.prune() > 0 and len(table) < before
    [again] = [Job.model_validate_json(s.canonical) for s in parse_text(text % "kept", "c.hcl").jobs]
    again = table.share(again)
    assert again is kept  # still held
    assert canonical_json(again) == canonical_json(kept)
