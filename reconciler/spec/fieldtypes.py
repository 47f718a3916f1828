"""The field types every block of the job model shares, so that one duration or one scalar
means the same in a task, a service check and an artifact. Pure."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from reconciler.spec.units import format_duration, parse_duration


def _duration(value: Any) -> Any:
    """A Go duration string. Nomad's HCL decoder (jobspec2 decodeDuration) also takes a number
    as nanoseconds; only `0` is kept from that, any other bare number is refused as a
    probable slip (it has no unit)."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise PydanticCustomError("duration", str(e)) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("duration", 'must be a duration string like "15s"')
    if value != 0:
        raise PydanticCustomError(
            "duration", 'must be a duration string like "15s" (a bare number has no unit)'
        )
    return 0.0


def _stringly(value: Any) -> Any:
    """Nomad turns scalar env, meta, option and header values into strings; so do we."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# Written back as Nomad writes it ("1h30m"), so canonical JSON reads back through the same rules.
Duration = Annotated[
    float, BeforeValidator(_duration), PlainSerializer(format_duration, when_used="json")
]
Scalar = Annotated[str, BeforeValidator(_stringly)]
StrMap = dict[str, Scalar]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Grown(Strict):
    """A model that gained fields after a release: left at their default, they dump as before
    they existed, so an upgrade changes no digest (running tasks are neither re-rendered nor
    restarted by it)."""

    ADDED_LATER: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if isinstance(out, dict):
            for name in self.ADDED_LATER:
                if name in out and getattr(self, name) == type(self).model_fields[name].default:
                    del out[name]
        return out
