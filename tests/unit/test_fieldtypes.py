"""One duration means one thing in every block: a task's restart, a service's check_restart and
a check's interval read the same values the same way (Nomad: jobspec2 decodeDuration for all)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from reconciler.spec.artifact import Artifact
from reconciler.spec.models import Restart, Task
from reconciler.spec.services import Check, CheckRestart

VALUES: list[Any] = ["10s", "1h30m", "250ms", "0s", 0, 0.0, 5, 2.5, True, "ten", ["1s"]]


def outcome(model: type[BaseModel], field: str, value: Any, **given: Any) -> object:
    try:
        return getattr(model.model_validate({**given, field: value}), field)
    except ValidationError as e:
        return f"refused: {e.errors()[0]['msg']}"


@pytest.mark.parametrize("value", VALUES)
def test_a_duration_reads_the_same_in_a_task_and_a_service(value: Any) -> None:
    task = outcome(Restart, "delay", value)
    assert outcome(CheckRestart, "grace", value) == task
    if isinstance(task, float) and task >= 1:  # a check's interval is at least a second
        assert outcome(Check, "interval", value, type="tcp", timeout="1s") == task


def test_a_bare_zero_is_no_time_and_a_check_interval_of_zero_is_too_short() -> None:
    assert CheckRestart.model_validate({"grace": 0}).grace == 0.0
    why = outcome(Check, "interval", 0, type="tcp", timeout="1s")
    assert why == 'refused: must be at least "1s"'


@pytest.mark.parametrize("value", [1, 2.5, True, "x", None])
def test_scalars_are_strings_alike_in_env_and_artifact_headers(value: Any) -> None:
    env = outcome(Task, "env", {"K": value}, driver="exec", config={"command": "/bin/true"})
    headers = outcome(Artifact, "headers", {"K": value}, source="https://x/y")
    assert env == headers
