"""JSON request bodies decoded with their real types: a value of the wrong JSON type is a 422, never coerced.

Litestar converts a decoded body into the handler's ``data`` type in msgspec's lax mode, the mode made for query
strings: ``"5"`` passes as the integer 5, ``"true"`` and ``1`` as booleans, ``"NaN"`` as a float and any number as a
datetime (seconds since 1970, so ``{"scheduled_at": 12345}`` would store 1970-01-01T03:25:45Z). A JSON body carries
real types, and the OpenAPI document promises them, so the write handlers take the body from here instead: the bytes
Litestar has already read (and validated in lax mode) are decoded once more, strictly, into the same struct.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.params import Body

__all__ = ("StrictBody", "json_body", "strict_body")

StrictBody = Callable[[Request[Any, Any, Any]], Awaitable[Any]]


def strict_body(struct_type: Any) -> StrictBody:
    """A reader of the request body as ``struct_type`` under msgspec's strict rules.

    One lax conversion is kept: a float with no fractional part (``5.0``) is the integer it names, as JSON Schema's
    ``integer`` says. Errors leave as Litestar's own body validation errors do (``key`` ``data``, ``source``
    ``body``), so the problem names the field exactly as it would for any other invalid value.
    """
    integers = _integer_fields(struct_type)

    async def read(request: Request[Any, Any, Any]) -> Any:
        raw = await request.json()  # decoded (and cached) by Litestar already
        if integers and isinstance(raw, dict):
            raw = _whole_floats_as_ints(raw, integers)
        try:
            return msgspec.convert(raw, struct_type, strict=True)
        except msgspec.ValidationError as exc:
            message = str(exc)
            raise ValidationException(
                detail=message, extra=[{"message": message, "key": "data", "source": "body"}]
            ) from None

    return read


def _integer_fields(struct_type: Any) -> frozenset[str]:
    """The fields of ``struct_type`` that take an integer (alone or in a union with null)."""

    def takes_int(info: msgspec.inspect.Type) -> bool:
        if isinstance(info, msgspec.inspect.Metadata):
            return takes_int(info.type)
        if isinstance(info, msgspec.inspect.UnionType):
            return any(takes_int(t) for t in info.types)
        return isinstance(info, msgspec.inspect.IntType)

    fields = msgspec.inspect.type_info(struct_type).fields  # type: ignore[attr-defined]
    return frozenset(f.encode_name for f in fields if takes_int(f.type))


def _whole_floats_as_ints(raw: dict[str, Any], integers: frozenset[str]) -> dict[str, Any]:
    whole = {
        name: int(value)
        for name in integers
        if type(value := raw.get(name)) is float and value.is_integer()  # inf and NaN are not
    }
    return {**raw, **whole} if whole else raw


def json_body(struct_type: Any) -> Any:
    """The ``data`` annotation of a handler taking ``struct_type`` as its JSON body.

    A struct that refuses unknown fields is documented with ``additionalProperties: false``, so the OpenAPI document
    says what the service does: an unknown key is a 422 naming it (generated clients and fuzzers then know too).
    """
    closed = bool(struct_type.__struct_config__.forbid_unknown_fields)
    extra = {"additionalProperties": False} if closed else None
    return Annotated[struct_type, Body(media_type=RequestEncodingType.JSON, schema_extra=extra)]
