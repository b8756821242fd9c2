"""Each resource's query parameters, from the manifest: its filters by wire name, its columns, its embeds.

Built once per app; the request parser, the OpenAPI parameters and the embeds' own filters all read these tables.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flux_dao.http.query_values import boolean, converter
from flux_dao.manifest.columns import LIST_OPERATORS, ColumnInfo, OrderTerm, columns, list_order
from flux_dao.manifest.relations import Embed
from flux_dao.manifest.spec import EntitySpec, Operator

__all__ = ("FilterParameter", "ResourceQuery", "build_resource_queries")


@dataclass(frozen=True, slots=True)
class FilterParameter:
    """One filter parameter, e.g. ``status__in``: its column, operator and value converter."""

    name: str
    field: str
    operator: Operator
    convert: Callable[[str], Any]

    @property
    def many(self) -> bool:
        """Takes several values (comma-separated, or the parameter repeated)."""
        return self.operator in LIST_OPERATORS


@dataclass(frozen=True)
class ResourceQuery:
    """What the query language offers on one resource: its filters, sortable columns and embeds."""

    entity: EntitySpec
    columns: dict[str, ColumnInfo]
    filters: dict[str, FilterParameter]
    embeds: Mapping[str, Embed]
    default_order: tuple[OrderTerm, ...]
    registry: Mapping[str, "ResourceQuery"] = field(repr=False)
    """Every resource's query by entity name: embeds are parsed with their target's parameters."""

    @property
    def sortable(self) -> list[str]:
        """The columns ``sort`` takes."""
        return [name for name, column in self.columns.items() if column.sortable]

    def embed_target(self, name: str) -> "ResourceQuery":
        """The query of the resource embed ``name`` brings in."""
        return self.registry[self.embeds[name].target]


def build_resource_queries(
    entities: Iterable[EntitySpec], embeds: Mapping[str, Mapping[str, Embed]]
) -> dict[str, ResourceQuery]:
    """One ``ResourceQuery`` per entity, sharing the registry embeds look their targets up in."""
    registry: dict[str, ResourceQuery] = {}
    for entity in entities:
        info = columns(entity)
        filters = {}
        for column in info.values():
            for operator in column.operators:
                name = column.name if operator == "eq" else f"{column.name}__{operator}"
                convert = boolean if operator == "isnull" else converter(column, item=operator == "contains")
                filters[name] = FilterParameter(name, column.name, operator, convert)
        registry[entity.name] = ResourceQuery(
            entity, info, filters, embeds.get(entity.name, {}), list_order(entity), registry
        )
    return registry
