"""Query-string values -> Python values, by the column's type, with no guessing.

``1`` is not ``true``, a datetime needs ISO 8601 (naive = UTC), an integer must fit the column (32 bits), text may not
hold NUL: a value the database would refuse, or read differently, fails here with a message for the client.
"""

import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from litestar import Request

from flux_dao.errors import FieldError, InvalidInputError
from flux_dao.manifest.columns import ColumnInfo
from flux_dao.schema.typemap import INT32_MAX, INT32_MIN
from flux_dao.store.repository import as_utc

__all__ = ("INTEGER", "boolean", "converter", "refuse_numbers")

INTEGER: Final = re.compile(r"[+-]?[0-9]{1,20}")
"""An integer as written in a URL: matched whole (``fullmatch``), so no trailing newline slips through."""
_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A decimal number as JSON and SQL write it: no underscores, spaces, ``inf`` or ``nan``."""


def _text(raw: str) -> str:
    if "\x00" in raw:
        msg = "must not contain NUL (U+0000) characters"
        raise ValueError(msg)
    return raw


def _integer(raw: str) -> int:
    if not INTEGER.fullmatch(raw):
        msg = "is not an integer"
        raise ValueError(msg)
    value = int(raw)
    if not INT32_MIN <= value <= INT32_MAX:
        msg = f"is out of range ({INT32_MIN}..{INT32_MAX})"
        raise ValueError(msg)
    return value


def _float(raw: str) -> float:
    if not _DECIMAL.fullmatch(raw):
        msg = "is not a number"
        raise ValueError(msg)
    value = float(raw)
    if not math.isfinite(value):
        msg = "must be a finite number"
        raise ValueError(msg)
    return value


def boolean(raw: str) -> bool:
    """``true`` or ``false``, nothing else."""
    if raw in {"true", "false"}:
        return raw == "true"
    msg = "is not `true` or `false`"
    raise ValueError(msg)


def _datetime(name: str) -> Callable[[str], datetime]:
    def convert(raw: str) -> datetime:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            msg = "is not an ISO 8601 datetime (e.g. 2026-01-31T09:00:00Z)"
            raise ValueError(msg) from None
        try:
            return as_utc(value, name)
        except InvalidInputError:
            msg = "is out of range once converted to UTC"
            raise ValueError(msg) from None

    return convert


def refuse_numbers(request: Request[Any, Any, Any], names: Iterable[str]) -> None:
    """A 422 naming each of ``names`` whose raw value is a number: datetimes Litestar converted leniently.

    Litestar converts query values as msgspec does outside strict mode, where a number is a Unix time; a datetime
    in a query is ISO 8601, as in the list filters.
    """
    errors = []
    for name in names:
        raw = request.query_params.get(name)
        try:
            float(raw or "not a number")
        except ValueError:
            continue
        errors.append(FieldError(name, "is not an ISO 8601 datetime (e.g. 2026-01-31T09:00:00Z)"))
    if errors:
        raise InvalidInputError(errors)


def _uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        msg = "is not a UUID"
        raise ValueError(msg) from None


def _enum(values: tuple[str, ...]) -> Callable[[str], str]:
    allowed = frozenset(values)

    def convert(raw: str) -> str:
        if raw not in allowed:
            msg = f"is not one of {', '.join(values)}"
            raise ValueError(msg)
        return raw

    return convert


def converter(column: ColumnInfo, item: bool = False) -> Callable[[str], Any]:
    """The converter of ``column``'s values (of its items, for a list's ``contains``)."""
    kind = (column.items or "string") if item else column.type
    simple: dict[str, Callable[[str], Any]] = {
        "string": _text,
        "integer": _integer,
        "float": _float,
        "boolean": boolean,
        "uuid": _uuid,
    }
    if kind == "enum":
        return _enum(column.values or ())
    if kind == "datetime":
        return _datetime(column.name)
    return simple[kind]
