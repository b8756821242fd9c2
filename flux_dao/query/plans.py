"""Plans: a request's validated parameters as frozen values, between HTTP and SQL.

A plan says what to read; ``compiler`` says how. Plans hold column names the request parser checked against the
manifest, never user-chosen identifiers, and values that are always bound as parameters.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from flux_dao.manifest.columns import OrderTerm
from flux_dao.manifest.spec import Operator

__all__ = (
    "WHOLE_ROWS",
    "BulkUpdatePlan",
    "Condition",
    "EmbedPlan",
    "GroupedCountPlan",
    "ListPlan",
    "ReadPlan",
    "TimeRangePlan",
)


@dataclass(frozen=True, slots=True)
class Condition:
    """One filter: ``field <operator> value``."""

    field: str
    operator: Operator
    value: Any
    """A scalar; a tuple for ``in`` and ``contains``; a bool for ``isnull``."""

    @property
    def shape(self) -> tuple[str, Operator, bool | None]:
        """What the SQL depends on (not the value, but for ``isnull``, spelled in it): part of a cache key."""
        return (self.field, self.operator, self.value if self.operator == "isnull" else None)


@dataclass(frozen=True, slots=True)
class EmbedPlan:
    """Rows related to each row read, under the embed's name; nested embeds below them."""

    name: str
    conditions: tuple[Condition, ...] = ()
    """Filters on the embedded rows (to-many embeds only)."""
    embeds: tuple["EmbedPlan", ...] = ()
    limit: int = 20
    """At most this many rows per parent (to-many embeds only)."""


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What to return of each row: some fields or all (``fields`` None), and embeds."""

    fields: tuple[str, ...] | None = None
    embeds: tuple[EmbedPlan, ...] = ()


WHOLE_ROWS: Final = ReadPlan()
"""Every field, no embeds: what a read returns when the request does not say."""


@dataclass(frozen=True, slots=True)
class ListPlan:
    """One page of a filtered, sorted list."""

    conditions: tuple[Condition, ...] = ()
    order: tuple[OrderTerm, ...] = ()
    """The full order, ending with ``id``; empty means the resource's default order."""
    offset: int = 0
    limit: int = 100
    count: bool = True
    """Whether to also run the COUNT of the filtered rows."""
    after: tuple[Any, ...] | None = None
    """Keyset position (a cursor): the order's values of the last row of the previous page."""
    read: ReadPlan = WHOLE_ROWS

    @property
    def shape(self) -> tuple[Any, ...]:
        """What the SQL depends on: the cache key of the compiled statement."""
        return (tuple(c.shape for c in self.conditions), self.order, self.after is not None)


@dataclass(frozen=True, slots=True)
class TimeRangePlan:
    """Rows of one scope with start <= field <= end, and the list filters that apply on top."""

    query: str
    scope: tuple[tuple[str, Any], ...]
    start: datetime
    end: datetime
    conditions: tuple[Condition, ...] = ()
    read: ReadPlan = WHOLE_ROWS


@dataclass(frozen=True, slots=True)
class GroupedCountPlan:
    """Counts per group of one scope's rows with start <= time_field <= end."""

    query: str
    scope: tuple[tuple[str, Any], ...]
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class BulkUpdatePlan:
    """Set one field to one value on every listed id."""

    query: str
    ids: tuple[UUID, ...]
    value: Any
