"""The OpenAPI parameters of the read routes, from the same tables the parser reads: they cannot disagree.

The handlers of these routes declare no query parameters to Litestar (the parser reads the query string), so each
gets an operation class that adds these to what Litestar documents.
"""

from collections.abc import Iterable
from typing import Final

from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Parameter, Reference, Schema

from flux_dao.http.openapi import CONSISTENCY_TOKEN, FluxOperation
from flux_dao.http.query_tables import ResourceQuery
from flux_dao.http.request import (
    DEFAULT_INCLUDE_LIMIT,
    DEFAULT_LIMIT,
    MAX_IN_VALUES,
    MAX_INCLUDE_DEPTH,
    MAX_INCLUDE_LIMIT,
    MAX_LIMIT,
    MAX_SKIP,
    QueryParser,
)
from flux_dao.manifest.columns import ColumnInfo
from flux_dao.manifest.names import enum_name
from flux_dao.manifest.spec import Operator
from flux_dao.schema.typemap import INT32_MAX, INT32_MIN

__all__ = ("parameters", "query_operation")

_OPERATOR_WORDS: Final[dict[Operator, str]] = {
    "eq": "equals this",
    "ne": "is not this (rows where it is null count as not equal)",
    "in": "is one of these (comma-separated, or the parameter repeated; at most 100)",
    "gt": "is greater than this",
    "gte": "is at least this",
    "lt": "is less than this",
    "lte": "is at most this",
    "isnull": "is null (`true`) or is not (`false`)",
    "contains": "holds every one of these (comma-separated, or the parameter repeated)",
    "icontains": "contains this, ignoring case (`%` and `_` are literal)",
    "startswith": "starts with this, case-sensitive (`%` and `_` are literal)",
}


def _value_schema(resource: ResourceQuery, column: ColumnInfo, item: bool = False) -> Schema | Reference:
    kind = (column.items or "string") if item else column.type
    if kind == "enum":
        return Reference(ref=f"#/components/schemas/{enum_name(resource.entity, column.name)}")
    schemas = {
        "string": Schema(type=OpenAPIType.STRING),
        "integer": Schema(type=OpenAPIType.INTEGER, minimum=INT32_MIN, maximum=INT32_MAX),
        "float": Schema(type=OpenAPIType.NUMBER),
        "boolean": Schema(type=OpenAPIType.BOOLEAN),
        "datetime": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
        "uuid": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID),
    }
    return schemas[kind]


def _filter_documents(
    resource: ResourceQuery, prefix: str = "", own: Iterable[str] = (), required: Iterable[str] = ()
) -> list[Parameter]:
    """The filters of ``resource``, or with a prefix those of an embed.

    ``own`` names filters left out: a time range's scope (its handler documents it), or the embed's own reference
    (every embedded row already matches it).
    """
    found = []
    for parameter in resource.filters.values():
        if parameter.name in own or parameter.field in own:
            continue
        column = resource.columns[parameter.field]
        if parameter.operator == "isnull":
            schema: Schema | Reference = Schema(type=OpenAPIType.BOOLEAN)
        elif parameter.many:
            item = _value_schema(resource, column, item=parameter.operator == "contains")
            schema = Schema(type=OpenAPIType.ARRAY, items=item, max_items=MAX_IN_VALUES)
        else:
            schema = _value_schema(resource, column)
        where = f" of the embedded {resource.entity.name}" if prefix else ""
        words = _OPERATOR_WORDS[parameter.operator]
        description = f"Only rows{where} whose `{column.name}` {words}."
        needed = parameter.name in required
        if needed:
            description += " Required: the list answers one at a time."
        explode = True if parameter.many else None
        found.append(_parameter(prefix + parameter.name, schema, description, explode=explode, required=needed))
    return found


_SORT: Final = (
    "Order of the rows: fields, comma-separated; `-` sorts descending. Nulls sort last either way; `id` breaks ties. "
    "Default: the list's own order. Sortable: {sortable}."
)


def parameters(parser: QueryParser) -> list[Parameter]:
    """The OpenAPI parameters of the route ``parser`` reads (besides its own, which its handler documents)."""
    resource = parser.resource
    found: list[Parameter] = []
    if parser.filtering:
        found += _filter_documents(resource, own=parser.own, required=parser.required)
    if parser.listing and not parser.paged:
        found += [
            _list_parameter("sort", _SORT.format(sortable=_names(resource.sortable))),
            _parameter(
                "skip", Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=MAX_SKIP), "Rows to skip, default 0."
            ),
            _parameter(
                "limit",
                Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_LIMIT),
                f"Most rows to answer (1..{MAX_LIMIT}); default: every matching row.",
            ),
        ]
    elif parser.listing:
        found += [
            _list_parameter("sort", _SORT.format(sortable=_names(resource.sortable))),
            _parameter(
                "skip",  # no documented default: a generated client would send it, and a cursor refuses it
                Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=MAX_SKIP),
                "Rows to skip, default 0 (offset paging; not with `cursor`).",
            ),
            _integer_parameter("limit", 1, MAX_LIMIT, DEFAULT_LIMIT, f"Page size (1..{MAX_LIMIT})."),
            _parameter(
                "count",
                Schema(type=OpenAPIType.BOOLEAN, default=True),
                "Count the matching rows into `total`; `false` skips the COUNT query and answers `total: null` "
                "(faster on large results).",
            ),
            _parameter(
                "cursor",
                Schema(type=OpenAPIType.STRING),
                "The `next_cursor` of the previous page: the page after it, for the same filters and sort (keyset "
                "paging: no row twice, none skipped, however deep). Not with `skip`.",
            ),
        ]
    embeds = ", ".join(f"`{name}` ({e.target}{', a list' if e.many else ''})" for name, e in resource.embeds.items())
    found += [
        _list_parameter(
            "fields",
            f"Return only these keys of each row (comma-separated; `id` always, embeds too): "
            f"{_names(resource.columns)}. The rows then carry fewer keys than the schema lists.",
        ),
        _list_parameter(
            "include",
            f"Embed related rows (comma-separated): {embeds}. Nest with dots, up to {MAX_INCLUDE_DEPTH} levels "
            "(`goals.tasks`). Filter a to-many embed with its resource's filters prefixed by its path "
            "(`tasks.status__in=pending`), which also embeds it.",
        ),
        _integer_parameter(
            "include_limit",
            1,
            MAX_INCLUDE_LIMIT,
            DEFAULT_INCLUDE_LIMIT,
            "Most rows each to-many embed holds per parent, in the embedded resource's default order.",
        ),
    ]
    for name, embed in resource.embeds.items():  # every read route takes its to-many embeds' filters
        if embed.many:
            found += _filter_documents(resource.embed_target(name), prefix=f"{name}.", own=(embed.via,))
    return found


def query_operation(parser: QueryParser) -> type[FluxOperation]:
    """The operation class documenting the query parameters ``parser`` reads (its handler declares none of them)."""
    extra = (*parameters(parser), CONSISTENCY_TOKEN)
    return type("FluxQueryOperation", (FluxOperation,), {"extra_parameters": extra})


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _parameter(
    name: str, schema: Schema | Reference, description: str, *, explode: bool | None = None, required: bool = False
) -> Parameter:
    return Parameter(
        name=name, param_in="query", required=required, schema=schema, description=description, explode=explode
    )


def _list_parameter(name: str, description: str) -> Parameter:
    """A comma-separated list of names (the parameter may also repeat)."""
    schema = Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING))
    return _parameter(name, schema, description, explode=False)


def _integer_parameter(name: str, low: int, high: int, default: int, description: str) -> Parameter:
    return _parameter(name, Schema(type=OpenAPIType.INTEGER, minimum=low, maximum=high, default=default), description)
