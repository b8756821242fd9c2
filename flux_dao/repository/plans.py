"""Plans: validated request parameters as frozen values, between HTTP and SQL.

A plan says what to read; ``compiler`` says how. Plans hold field names that the generator took from the manifest,
never user-chosen identifiers, and values that are always bound as parameters.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = ("BulkUpdatePlan", "GroupedCountPlan", "ListPlan", "TimeRangePlan")


@dataclass(frozen=True, slots=True)
class ListPlan:
    """One page of a filtered list."""

    filters: tuple[tuple[str, Any], ...] = ()
    """(field, value) equality filters, in manifest order."""
    offset: int = 0
    limit: int = 100
    count: bool = True
    """Whether to also run the COUNT of the filtered rows."""

    @property
    def filter_fields(self) -> tuple[str, ...]:
        """The filtered field names: the cache key of the compiled statement."""
        return tuple(name for name, _ in self.filters)


@dataclass(frozen=True, slots=True)
class TimeRangePlan:
    """Rows of one scope with start <= field <= end."""

    query: str
    scope: tuple[tuple[str, Any], ...]
    start: datetime
    end: datetime


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
