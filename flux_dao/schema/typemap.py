"""The one table that maps a manifest type to its Python, SQL and validation forms.

``python_type`` is what msgspec validates requests against (and what OpenAPI documents); ``sql_type`` is the column
type, chosen to behave the same on PostgreSQL and SQLite.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy.dialects import postgresql

from flux_dao.manifest.spec import FieldSpec
from flux_dao.types import JsonObject

__all__ = ("INT32_MAX", "INT32_MIN", "JSON_TYPE", "TypeInfo", "annotated_type", "lookup")

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

JSON_TYPE: Final = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
"""JSONB on PostgreSQL, JSON text on SQLite (advanced-alchemy's JsonB breaks on SQLAlchemy 2.1); None is SQL NULL."""


@dataclass(frozen=True)
class TypeInfo:
    """How one manifest type is represented."""

    python_type: Callable[[FieldSpec, type[enum.StrEnum] | None], Any]
    sql_type: Callable[[FieldSpec], Any]


def _string_sql(spec: FieldSpec) -> Any:
    return sa.String(spec.max_length) if spec.max_length else sa.Text()


def _enum_sql(spec: FieldSpec) -> Any:
    return sa.Text()  # the CHECK constraint holds the allowed values; no length to migrate when one is added


_ITEM_TYPES: Final[dict[str, type]] = {"string": str, "uuid": UUID}


def _list_type(spec: FieldSpec) -> Any:
    item = _ITEM_TYPES[spec.items or "string"]
    return list[item]  # type: ignore[valid-type]


_TYPES: Final[dict[str, TypeInfo]] = {
    "string": TypeInfo(lambda s, e: str, _string_sql),
    "integer": TypeInfo(lambda s, e: int, lambda s: sa.Integer()),
    "float": TypeInfo(lambda s, e: float, lambda s: sa.Double()),
    "boolean": TypeInfo(lambda s, e: bool, lambda s: sa.Boolean()),
    "datetime": TypeInfo(lambda s, e: datetime, lambda s: DateTimeUTC(timezone=True)),
    "uuid": TypeInfo(lambda s, e: UUID, lambda s: GUID()),
    "json": TypeInfo(lambda s, e: JsonObject, lambda s: JSON_TYPE),
    "enum": TypeInfo(lambda s, e: e, _enum_sql),
    "list": TypeInfo(lambda s, e: _list_type(s), lambda s: JSON_TYPE),
}


def lookup(spec: FieldSpec) -> TypeInfo:
    """The representation of ``spec.type``."""
    return _TYPES[spec.type]


_SCHEMA_KEYS: Final = {"ge": "minimum", "le": "maximum", "min_length": "min_length", "max_length": "max_length"}


def annotated_type(spec: FieldSpec, enum_type: type[enum.StrEnum] | None) -> Any:
    """The request-side type: the Python type wrapped in the field's msgspec constraints.

    Integers are bounded to 32 bits even when the manifest sets no limit, so an out-of-range number is a 422 naming
    the field rather than a database error.
    """
    base = lookup(spec).python_type(spec, enum_type)
    meta: dict[str, Any] = {}
    if spec.type == "string":
        meta.update(min_length=spec.min_length, max_length=spec.max_length)
    elif spec.type in {"integer", "float"}:
        meta.update(ge=spec.ge, le=spec.le)
        if spec.type == "integer":
            meta["ge"] = INT32_MIN if spec.ge is None else int(spec.ge)
            meta["le"] = INT32_MAX if spec.le is None else int(spec.le)
    if spec.description:
        meta["description"] = spec.description
    meta = {k: v for k, v in meta.items() if v is not None}
    # Litestar leaves a bound of 0 out of the OpenAPI document (it tests the value, not its presence): say those
    # explicitly, so `ge: 0.0` documents `minimum: 0` as the service enforces it
    zero_bounds = {_SCHEMA_KEYS[k]: v for k, v in meta.items() if k in _SCHEMA_KEYS and v == 0}
    if zero_bounds:
        meta["extra_json_schema"] = {"extra": zero_bounds}
    return Annotated[base, msgspec.Meta(**meta)] if meta else base
