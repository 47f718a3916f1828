"""A pydantic validation error at a location in a job file -> a message a person can act on."""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from reconciler.spec.models import JobFile
from reconciler.spec.normalize import IGNORED


def message(err: Any, loc: tuple[Any, ...]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        ignored = IGNORED.get(_kind_at(loc[:-1]), {})
        close = difflib.get_close_matches(str(loc[-1]), sorted(set(known) | set(ignored)), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        return f'unknown field "{loc[-1]}"{hint}'
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"').replace('"", ', "")
        return f"must be {expected}"
    simple = {
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "bool_type": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a block or map",
        "model_type": "must be a block",
        "float_type": "must be a number",
    }
    if kind in simple:
        msg = simple[kind]
        if isinstance(err.get("input"), str) and "${" in err["input"]:
            msg += f" (got {err['input'][:60]!r}: a runtime reference cannot be used here)"
        return msg
    if kind in ("greater_than_equal", "less_than_equal", "too_short", "too_long"):
        if kind == "too_short" and loc and loc[-1] in ("group", "task"):
            return f"needs at least one {loc[-1]} block"
        if kind == "too_long" and loc == ("job",):
            return "a file holds exactly one job"
        return str(err["msg"]).replace("Input should be", "must be")
    return str(err["msg"]).removeprefix("Value error, ")


_LABELLED_KEYS = {"job", "group", "task", "port"}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = JobFile
    i = 0
    while model is not None and i < len(loc):
        info = model.model_fields.get(str(loc[i]))
        if info is None:
            return None
        ann = info.annotation
        i += 1
        while get_origin(ann) in (dict, list) or (get_origin(ann) is not None and get_args(ann)):
            args = [a for a in get_args(ann) if a is not type(None)]
            if get_origin(ann) in (dict, list):
                ann = args[-1]
                i += 1
            else:
                ann = args[0]
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _kind_at(loc: tuple[Any, ...]) -> str:
    names = [x for x in loc if isinstance(x, str)]
    for i in range(len(names) - 1, -1, -1):
        if names[i] in _LABELLED_KEYS and i == len(names) - 2:
            return names[i]
        if names[i] in ("network", "resources", "template", "artifact"):
            return names[i]
    return ""
