"""What a list can ask of an entity's columns: their filter operators, whether they sort, and order terms.

Derived from the manifest once per build, so the request parser, the OpenAPI document and the compiler all read the
same answer. ``id`` and the timestamps are columns too: the server owns them, and the entity's ``filters`` key opens
operators on them.
"""

import re
from dataclasses import dataclass
from typing import Final

from flux_dao.manifest.spec import VERSION, EntitySpec, FieldType, ItemType, Operator

__all__ = (
    "LIST_OPERATORS",
    "RANGE_OPERATORS",
    "ColumnInfo",
    "OrderTerm",
    "columns",
    "default_order",
    "list_order",
    "operator_problem",
    "parse_order",
    "with_tie_breaker",
)

RANGE_OPERATORS: Final = frozenset({"gt", "gte", "lt", "lte"})
LIST_OPERATORS: Final = frozenset({"in", "contains"})
"""Operators that take several values (comma-separated, or the parameter repeated)."""
_RANGE_TYPES: Final = frozenset({"integer", "float", "datetime", "string"})
_UNSORTABLE: Final = frozenset({"json", "list"})
_ORDER: Final = re.compile(
    r"^(?P<field>[a-z][a-z0-9_]*)(?:\s+(?P<dir>asc|desc))?(?:\s+nulls\s+(?P<nulls>first|last))?$"
)


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One column as queries see it."""

    name: str
    type: FieldType
    nullable: bool
    operators: tuple[Operator, ...]
    sortable: bool
    values: tuple[str, ...] | None = None
    """An enum's values."""
    items: ItemType | None = None
    """A list's element type."""


@dataclass(frozen=True, slots=True)
class OrderTerm:
    """One term of an ORDER BY. Nulls sort last unless the manifest's default order says ``nulls first``."""

    field: str
    descending: bool = False
    nulls_first: bool = False


def columns(entity: EntitySpec) -> dict[str, ColumnInfo]:
    """Every column of ``entity`` in response order: ``id``, the fields, the timestamps, ``version``."""
    found = {"id": ColumnInfo("id", "uuid", False, entity.filters.get("id", ()), True)}
    for name, spec in entity.fields.items():
        sortable = spec.sort if spec.sort is not None else spec.type not in _UNSORTABLE
        found[name] = ColumnInfo(name, spec.type, spec.nullable, spec.operators, sortable, spec.values, spec.items)
    for stamp in entity.timestamps:
        found[stamp] = ColumnInfo(stamp, "datetime", False, entity.filters.get(stamp, ()), True)
    found[VERSION] = ColumnInfo(VERSION, "integer", False, entity.filters.get(VERSION, ()), True)
    return found


def operator_problem(column: ColumnInfo, operator: Operator) -> str | None:
    """Why ``operator`` cannot filter ``column``, or None."""
    kind = column.type
    if operator in RANGE_OPERATORS and kind not in _RANGE_TYPES:
        return f"'{operator}' compares numbers, datetimes and strings, not a {kind}"
    if operator == "contains" and kind != "list":
        return "'contains' applies to list fields only"
    if operator in {"icontains", "startswith"} and kind != "string":
        return f"'{operator}' applies to string fields only"
    if operator == "isnull" and not column.nullable:
        return "'isnull' applies to nullable fields only (this one is never null)"
    if operator in {"eq", "ne", "in"} and kind in _UNSORTABLE:
        return f"'{operator}' cannot compare a {kind} field"
    return None


def parse_order(term: str) -> OrderTerm:
    """Parse a manifest ``order_by`` term: ``field [asc|desc] [nulls first|last]``."""
    match = _ORDER.match(term.strip().lower())
    if match is None:
        msg = f"order term {term!r} is not 'field [asc|desc] [nulls first|last]'"
        raise ValueError(msg)
    return OrderTerm(match["field"], match["dir"] == "desc", match["nulls"] == "first")


def default_order(entity: EntitySpec) -> tuple[OrderTerm, ...]:
    """The manifest's ``order_by`` (default ``created_at desc``, or ``id`` without it) with ``id`` last."""
    terms = tuple(parse_order(term) for term in entity.order_by)
    if not terms:
        terms = (OrderTerm("created_at", descending=True),) if "created_at" in entity.timestamps else ()
    return with_tie_breaker(terms)


def list_order(entity: EntitySpec) -> tuple[OrderTerm, ...]:
    """The list route's default order: its own ``list.order_by``, else the resource's (:func:`default_order`)."""
    if not entity.listing.order_by:
        return default_order(entity)
    return with_tie_breaker(tuple(parse_order(term) for term in entity.listing.order_by))


def with_tie_breaker(terms: tuple[OrderTerm, ...]) -> tuple[OrderTerm, ...]:
    """``terms`` ending with ``id`` (in the first term's direction), so every order is total and a cursor exact.

    Terms after an ``id`` already given are dropped: ``id`` is unique, so they could never order anything.
    """
    for index, term in enumerate(terms):
        if term.field == "id":
            return terms[: index + 1]
    return (*terms, OrderTerm("id", descending=bool(terms) and terms[0].descending))
