"""Artifacts through the loop with the fake executor: a download never holds up a pass, its end
wakes the loop, a failure goes through the restart policy, a restart does not fetch again."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import node_config
from reconciler.spec.artifact import (
    Artifact,
    checksum_problem,
    escapes_alloc_dir,
    getter_of,
    parse_source,
)
from reconciler.spec.load import Loader
from reconciler.spec.node import load_node_config
from reconciler.taskconfig import artifacts
from tests.unit.conftest import NO_RESCHEDULE, Harness, job

SHA = "a" * 64


def artifact(source: str = "https://example.com/app.tar.gz", extra: str = "") -> str:
    return f'artifact {{\n source = "{source}"\n {extra}\n}}'


def fetched(h: Harness) -> None:
    """Downloads end on their threads; the loop hears of it through its queue."""
    h.fake.complete_fetches()
    h.step()


def test_start_waits_for_artifacts_without_blocking_the_pass(h: Harness) -> None:
    h.write("web.hcl", job(extra_task=artifact()))
    h.write("api.hcl", job("api"))
    h.step()
    assert h.states() == {"api/g/0/t": "running", "web/g/0/t": "pending"}
    assert h.events("web/g/0/t") == ["Received", "Downloading Artifacts"]
    assert h.fake.started[0].id == "api/g/0/t" and len(h.fake.started) == 1
    h.step(30)  # a recheck while it still downloads: no second download, no second event
    assert h.fake.downloads == ["web/g/0/t"]
    assert h.events("web/g/0/t") == ["Received", "Downloading Artifacts"]
    fetched(h)
    assert h.states()["web/g/0/t"] == "running"
    assert h.events("web/g/0/t")[-2:] == ["Task Setup", "Started"]


def test_failed_download_is_recoverable_and_retried(h: Harness) -> None:
    h.write("web.hcl", job(extra_task=artifact("https://example.com/fail.tgz"),
                           extra_group=NO_RESCHEDULE))  # fmt: skip
    h.step()
    fetched(h)
    assert h.states()["web/g/0/t"] == "pending"
    ev = h.events("web/g/0/t")
    assert ev[-2:] == ["Failed Artifact Download", "Restarting"]
    with h.store.engine.connect() as c:
        msg = c.exec_driver_sql(
            "SELECT message FROM task_events WHERE type = 'Failed Artifact Download'"
        ).scalar_one()
        outcome = c.exec_driver_sql("SELECT outcome FROM task_instances").scalar_one()
    assert msg.startswith('failed to download artifact "https://example.com/fail.tgz"')
    assert outcome == "start_failed"
    h.step(16)  # restart delay: the download begins again
    assert h.fake.downloads == ["web/g/0/t", "web/g/0/t"]
    for _ in range(3):
        fetched(h)
        h.step(16)
    assert h.states()["web/g/0/t"] == "failed"  # service policy: 2 attempts, then fail


def test_restart_does_not_fetch_again_new_alloc_does(h: Harness) -> None:
    h.write("web.hcl", job(extra_task=artifact()))
    h.step()
    fetched(h)
    h.fake.finish("web/g/0/t", exit_code=1)
    h.step()
    h.step(16)
    assert h.states()["web/g/0/t"] == "running" and h.fake.downloads == ["web/g/0/t"]
    h.write("web.hcl", job(extra_task=artifact(), count=2))
    h.step()
    assert h.fake.downloads == ["web/g/0/t", "web/g/1/t"]
    h.remove("web.hcl")
    h.write("other.hcl", job("other"))
    h.step()
    h.step()
    h.write("web.hcl", job(extra_task=artifact()))
    h.step()
    assert h.fake.downloads[-1] == "web/g/0/t" and len(h.fake.downloads) == 3


def test_changed_artifact_is_fetched_again(h: Harness) -> None:
    h.write("web.hcl", job(extra_task=artifact()))
    h.step()
    fetched(h)
    h.write("web.hcl", job(extra_task=artifact("https://example.com/app2.tar.gz")))
    h.step()
    h.step()
    assert h.fake.downloads == ["web/g/0/t", "web/g/0/t"]
    assert h.states()["web/g/0/t"] == "pending"
    fetched(h)
    assert h.states()["web/g/0/t"] == "running"


def test_removed_while_downloading_leaves_no_slot(h: Harness) -> None:
    h.write("web.hcl", job(extra_task=artifact()))
    h.write("api.hcl", job("api"))
    h.step()
    h.remove("web.hcl")
    h.step()
    h.step()
    fetched(h)
    assert h.states() == {"api/g/0/t": "running"}


def test_task_config_carries_interpolated_artifacts(h: Harness) -> None:
    extra = (f'destination = "${{NOMAD_ALLOC_DIR}}/bin"\n options {{ checksum = "sha256:{SHA}" }}'
             '\n headers { X-Job = "${NOMAD_JOB_NAME}" }\n chown = true')  # fmt: skip
    h.write("web.hcl", job(extra_task=artifact(extra=extra)))
    h.step()
    cfg = h.fake.fetches["web/g/0/t"][0]
    (a,) = cfg.artifacts
    assert a.source == f"https://example.com/app.tar.gz?checksum=sha256%3A{SHA}"
    assert a.destination == "/alloc/bin" and a.headers == (("X-Job", "web"),) and a.chown
    assert a.key


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('options { checksum = "sha256:abcd" }', "invalid sha256 checksum: abcd"),
        ('options { checksum = "sha3:ab" }', "unsupported checksum type: sha3"),
        ('options { checksum = "abc" }', 'checksum must be given as "type:value"'),
        ('options { checksum = "" }', "checksum value cannot be empty"),
        ('destination = "../../x"', "destination escapes allocation directory"),
        ('mode = "folder"', 'must be "any", "file" or "dir"'),
    ],
)
def test_bad_artifact_fields_are_refused_with_nomads_words(
    tmp_path: Path, extra: str, error: str
) -> None:
    (tmp_path / "a.hcl").write_text(job(extra_task=artifact(extra=extra)))
    desired = Loader(tmp_path).scan()
    text = "\n".join(str(p) for p in desired.problems)
    assert error in text and "artifact.0" in text and "a.hcl:" in text


def test_s3_source_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "a.hcl").write_text(job(extra_task=artifact("s3::https://bucket/x")))
    text = "\n".join(str(p) for p in Loader(tmp_path).scan().problems)
    assert 'getter "s3" is not supported' in text


def test_spec_helpers() -> None:
    assert getter_of("git::https://x/y") == "git" and getter_of("/etc/passwd") == "file"
    assert getter_of("file:///etc/passwd") == "file" and getter_of("https://x") == "https"
    assert getter_of("github.com/a/b") == "git"
    assert checksum_problem(f"sha256:{SHA}") == "" and checksum_problem("md5:${x}") == ""
    assert not escapes_alloc_dir("../alloc/data") and not escapes_alloc_dir("/local/x")
    assert escapes_alloc_dir("../../etc") and escapes_alloc_dir("../../../x")


def test_sources_split_as_go_getter_reads_them() -> None:
    s = parse_source(f"https://x/app.tgz?checksum=sha256:{'a' * 64}&archive=false&token=1")
    assert (s.getter, s.url, s.archive, s.path) == ("https", "https://x/app.tgz?token=1", "false",
                                                    "/app.tgz")  # fmt: skip
    assert s.checksum == "sha256:" + "a" * 64
    assert parse_source("git::https://x/r.git?ref=v1").getter == "git"
    assert parse_source("git::https://x/r.git?ref=v1").url == "https://x/r.git?ref=v1"
    assert parse_source("github.com/a/b?ref=v2").url == "https://github.com/a/b.git?ref=v2"
    assert parse_source("file:///etc/passwd").getter == "file"
    assert parse_source("/etc/passwd").getter == "file"
    assert parse_source("./x").getter == "file"


SOURCES = ["https://x/a.tgz", "http://x/a", "git::https://x/r.git", "GIT::https://x/r",
           "github.com/a/b", "bitbucket.org/a/b", "git@github.com:a/b.git", "file:///etc/x",
           "/etc/x", "./x", "s3::https://b/x", f"https://x/a?checksum=sha256:{SHA}",
           "https://x/a?checksum=sha256:00", "https://x/a?checksum=crc:00"]  # fmt: skip


@pytest.mark.parametrize("source", SOURCES)
def test_the_fetch_reads_a_source_as_loading_did(source: str) -> None:
    """The executor gets the source as spec/artifact.py read it: the getter the load-time
    check judged, go-getter's parameters split off, a bad checksum as the fetch's error."""
    [a] = artifacts([Artifact.model_construct(source=source)], {})  # s3 included
    assert a.getter == getter_of(source) and a.url == parse_source(source).url
    checksum = parse_source(source).checksum
    assert a.problem == checksum_problem(checksum) if checksum else a.problem == ""
    assert (a.checksum is not None) == (bool(checksum) and not a.problem)


def test_node_artifact_limits(tmp_path: Path) -> None:
    p = tmp_path / "node.hcl"
    p.write_text('client {\n artifact {\n http_read_timeout = "5s"\n http_max_size = "1MB"\n'
                 ' decompression_size_limit = "2MiB"\n decompression_file_count_limit = 10\n}\n}\n')  # fmt: skip
    n = node_config(load_node_config(p))
    assert n.artifact_read_timeout == 5.0 and n.artifact_max_size == 1_000_000
    assert n.artifact_decompression_size_limit == 2 << 20
    assert n.artifact_decompression_file_count_limit == 10
    assert node_config(load_node_config(None)).artifact_max_size == 100_000_000_000
