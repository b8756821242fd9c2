"""Type aliases shared across the layers."""

from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeAlias

import msgspec

__all__ = ("JSON_OBJECT", "JsonObject", "JsonObjectMark", "RequestStruct", "Row", "StructType")

Row: TypeAlias = dict[str, Any]
"""Column name to Python value, as read from or written to one table row."""

StructType: TypeAlias = type[msgspec.Struct]
"""A generated msgspec Struct class (Create, Update, Read, Page, ...)."""


@dataclass(frozen=True)
class JsonObjectMark:
    """``Annotated`` metadata for a free-form JSON object field; msgspec ignores it, the OpenAPI document reads it.

    Every such field is documented as one shared ``JsonObject`` component, so a generated client has one type for
    them all (openapi-python-client would otherwise make a helper model per field and per struct).
    """


JSON_OBJECT: Final = JsonObjectMark()

JsonObject: TypeAlias = Annotated[dict[str, Any], JSON_OBJECT]
"""A free-form JSON object (a manifest ``json`` field)."""


class RequestStruct(msgspec.Struct):
    """Base of the structs only ever read from a request body (Create, Update, query bodies).

    The OpenAPI document treats them as request-only: see ``flux_dao.http.openapi_schemas``.
    """
