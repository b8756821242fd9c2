"""Semantic checks over a decoded manifest.

Each check is a small function that yields problems; ``validate`` collects them all so one run of
``flux-dao check`` reports every mistake, each naming the file, the entity and the field.
"""

import keyword
import re
from collections.abc import Callable, Iterator
from typing import Any, Final

from msgspec import UNSET

from flux_dao.errors import ManifestError
from flux_dao.manifest import names
from flux_dao.manifest.columns import ColumnInfo, columns, operator_problem, parse_order
from flux_dao.manifest.relations import embeds
from flux_dao.manifest.spec import (
    VERSION,
    BulkUpdateQuery,
    EntitySpec,
    FieldSpec,
    GroupedCountQuery,
    Manifest,
    TimeRangeQuery,
)

__all__ = ("RESERVED_FIELDS", "validate")

IDENTIFIER: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PATH_SEGMENT: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
RESERVED_FIELDS: Final = frozenset(
    {"id", "created_at", "updated_at", "version", "registry"}
    | {"skip", "limit", "count", "sort", "cursor", "fields", "include", "include_limit"}
)
"""Names the engine owns (server-set columns, SQLAlchemy metadata attributes, list query parameters)."""
_SCALAR_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "enum": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "json": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
}


def validate(manifest: Manifest) -> None:
    """Raise one :class:`ManifestError` listing every problem found, or return silently."""
    problems = list(_manifest_problems(manifest))
    for entity in manifest.entities:
        where = f"resource '{entity.name}'"
        problems.extend(f"{where}: {p}" for p in _entity_problems(entity))
        problems.extend(f"{where}: {p}" for p in _query_surface_problems(manifest, entity))
        for name, spec in entity.fields.items():
            problems.extend(f"{where}, field '{name}': {p}" for p in _field_problems(manifest, name, spec))
        for name, query in entity.queries.items():
            problems.extend(f"{where}, query '{name}': {p}" for p in _query_problems(entity, name, query))
        for name, group in entity.updates.items():
            problems.extend(f"{where}, updates '{name}': {p}" for p in _update_group_problems(entity, name, group))
        problems.extend(f"{where}, list: {p}" for p in _list_problems(entity))
    if problems:
        lines = "\n".join(f"{manifest.source}: {p}" for p in problems)
        raise ManifestError(lines)


def _manifest_problems(manifest: Manifest) -> Iterator[str]:
    kinds: dict[str, Callable[[EntitySpec], list[str]]] = {
        "name": lambda e: [e.name],
        "path": lambda e: [e.path or ""],
        "OpenAPI component": names.component_names,
        "operationId": names.operation_ids,
    }
    for kind, generate in kinds.items():
        seen: dict[str, str] = {}
        for entity in manifest.entities:
            for value in generate(entity):
                other = seen.get(value)
                if other is not None:
                    owners = f"'{other}' and '{entity.name}'" if other != entity.name else f"'{entity.name}'"
                    yield f"resource(s) {owners} generate the {kind} '{value}' twice"
                seen[value] = entity.name


def _entity_problems(entity: EntitySpec) -> Iterator[str]:
    if not IDENTIFIER.match(entity.name) or keyword.iskeyword(entity.name):
        yield "name must be a lower-case identifier (a-z, 0-9, _)"
    if entity.name.startswith(names.SYSTEM_PREFIX):
        yield f"names starting with {names.SYSTEM_PREFIX!r} are reserved for the engine's own tables"
    if entity.path and not PATH_SEGMENT.match(entity.path):
        yield f"path {entity.path!r} must be one lower-case URL segment (a-z, 0-9, -)"
    if entity.singular and not IDENTIFIER.match(entity.singular):
        yield f"singular {entity.singular!r} must be a lower-case identifier"
    if len(set(entity.timestamps)) != len(entity.timestamps):
        yield "timestamps lists a column twice"
    yield from _order_problems(entity)
    columns = {"id", *entity.fields, *entity.timestamps}
    for index in entity.indexes:
        missing = [f for f in index.fields if f not in columns]
        if missing or not index.fields:
            yield f"index {list(index.fields)} names unknown field(s) {missing}"
    for name in entity.queries:
        if not PATH_SEGMENT.match(name):
            yield f"query name {name!r} must be one lower-case URL segment (a-z, 0-9, -)"


def _order_problems(entity: EntitySpec, terms: tuple[str, ...] | None = None) -> Iterator[str]:
    columns = {"id", *entity.fields, *entity.timestamps}
    for term in entity.order_by if terms is None else terms:
        try:
            field = parse_order(term).field
        except ValueError as exc:
            yield f"order_by: {exc}"
            continue
        if field not in columns:
            yield f"order_by names unknown field '{field}'"
        elif field in entity.fields and entity.fields[field].type in {"json", "list"}:
            yield f"order_by cannot sort on {entity.fields[field].type} field '{field}'"


def _update_group_problems(entity: EntitySpec, name: str, group: tuple[str, ...]) -> Iterator[str]:
    """A field group is a route segment (``PATCH /conversations/{id}/voice``) listing fields a PATCH may change."""
    if not IDENTIFIER.match(name):
        yield "the group's name must be a lower-case identifier (a-z, 0-9, _): it becomes the path segment"
    if names.group_path(name) in entity.queries or name == "bulk":
        yield f"the path segment '{names.group_path(name)}' is taken by a query or the bulk create"
    if not group:
        yield "lists no fields"
    for field in sorted({f for f in group if group.count(f) > 1}):
        yield f"lists '{field}' twice"
    for field in dict.fromkeys(group):
        spec = entity.fields.get(field)
        if spec is None:
            owned = " (the server sets it)" if field in {"id", *entity.timestamps, VERSION} else ""
            yield f"'{field}' is not a field of '{entity.name}'{owned}; fields: {', '.join(entity.fields)}"
        elif spec.immutable:
            yield f"'{field}' is immutable (accepted on create only), so no update may change it"


def _list_problems(entity: EntitySpec) -> Iterator[str]:
    listing = entity.listing
    if listing != type(listing)() and "list" not in entity.operations:
        yield "the resource has no list operation (operations leaves out 'list')"
    for field in listing.require:
        spec = entity.fields.get(field)
        if spec is None:
            yield f"require names '{field}', which is not a field of '{entity.name}'"
        elif "eq" not in spec.operators:
            yield f"require names '{field}', which has no equality filter: give it 'filter: true' (or [eq, ...])"
    if len(set(listing.require)) != len(listing.require):
        yield "require lists a field twice"
    yield from _order_problems(entity, listing.order_by)


def _field_problems(manifest: Manifest, name: str, spec: FieldSpec) -> Iterator[str]:  # noqa: C901 (a flat list)
    if not IDENTIFIER.match(name) or keyword.iskeyword(name):
        yield "name must be a lower-case identifier (a-z, 0-9, _) and not a Python keyword"
    if name in RESERVED_FIELDS:
        yield f"'{name}' is reserved: the engine manages it"
    if "__" in name:
        yield "name must not contain '__' (it separates a field from its filter operator: status__in)"
    if spec.type == "enum":
        if not spec.values:
            yield "an enum needs a non-empty 'values' list"
        elif len(set(spec.values)) != len(spec.values):
            yield "enum values must be unique"
    elif spec.values is not None:
        yield "'values' is only for type enum"
    if spec.type == "list" and spec.items is None:
        yield "a list needs 'items' (string or uuid)"
    if spec.type != "list" and spec.items is not None:
        yield "'items' is only for type list"
    if (spec.min_length is not None or spec.max_length is not None) and spec.type != "string":
        yield "min_length/max_length apply to strings only"
    if (spec.ge is not None or spec.le is not None) and spec.type not in {"integer", "float"}:
        yield "ge/le apply to integers and floats only"
    if spec.min_length is not None and spec.max_length is not None and spec.min_length > spec.max_length:
        yield "min_length is greater than max_length"
    if spec.required and spec.default is not UNSET:
        yield "a field cannot be both required and defaulted"
    if spec.default is not UNSET:
        yield from _default_problems(spec)
    if spec.references is not None:
        if spec.type != "uuid":
            yield "a reference must have type uuid"
        if spec.references not in {e.name for e in manifest.entities}:
            yield f"references unknown resource '{spec.references}'"
        if spec.on_delete == "set null" and not spec.nullable:
            yield "on_delete 'set null' needs a nullable field (not required, no default)"
    if (spec.unique or spec.index) and spec.type in {"json", "list"}:
        yield f"a {spec.type} field cannot be unique or indexed"
    if spec.sort and spec.type in {"json", "list"}:
        yield f"a {spec.type} field cannot be sorted"
    if spec.filter is True and spec.type in {"json", "list"}:
        yield f"a {spec.type} field has no equality filter ('contains' filters a list)"


def _query_surface_problems(manifest: Manifest, entity: EntitySpec) -> Iterator[str]:
    """Operators that fit their column, ``filters`` only on server-owned columns, embeds that name no column."""
    owned = {"id", *entity.timestamps, VERSION}
    for name in entity.filters:
        if name not in owned:
            yield f"filters: '{name}' is not a server-owned column ({', '.join(sorted(owned))}); filter fields in place"
    for column in columns(entity).values():
        yield from _operator_problems(column)
    for name, embed in embeds(manifest, entity).items():
        if name in entity.read_columns:
            yield f"embed '{name}' (from the reference {embed.via}) has the name of a column: rename one of them"
        if name in RESERVED_FIELDS:
            yield f"embed '{name}' is a reserved name"


def _operator_problems(column: ColumnInfo) -> Iterator[str]:
    if len(set(column.operators)) != len(column.operators):
        yield f"field '{column.name}': filter lists an operator twice"
    for operator in column.operators:
        problem = operator_problem(column, operator)
        if problem is not None:
            yield f"field '{column.name}': filter {problem}"


def _default_problems(spec: FieldSpec) -> Iterator[str]:
    default: Any = spec.default
    check = _SCALAR_CHECKS.get(spec.type)
    if check is None:
        yield f"a {spec.type} field cannot have a default"
    elif not check(default):
        yield f"default {default!r} is not a {spec.type}"
    elif spec.type == "enum" and spec.values and default not in spec.values:
        yield f"default {default!r} is not one of {list(spec.values)}"
    elif spec.type in {"integer", "float"} and (
        (spec.ge is not None and default < spec.ge) or (spec.le is not None and default > spec.le)
    ):
        yield f"default {default!r} is outside [ge, le]"


def _query_problems(entity: EntitySpec, name: str, query: Any) -> Iterator[str]:
    scope: tuple[str, ...] = getattr(query, "scope", ())
    parameters = [*scope, query.start, query.end] if hasattr(query, "start") else [query.ids, query.value]
    duplicated = sorted({p for p in parameters if parameters.count(p) > 1})
    if duplicated:
        yield f"parameter name(s) {duplicated} used twice"
    for field in scope:
        if field not in entity.fields or entity.fields[field].type in {"json", "list"}:
            yield f"scope field '{field}' is not a scalar field of '{entity.name}'"
    yield from _QUERY_CHECKS[type(query)](entity, query)


def _is_datetime(entity: EntitySpec, field: str) -> bool:
    return field in entity.timestamps or (field in entity.fields and entity.fields[field].type == "datetime")


def _time_range_problems(entity: EntitySpec, query: TimeRangeQuery) -> Iterator[str]:
    if not _is_datetime(entity, query.field):
        yield f"field '{query.field}' is not a datetime field"


def _grouped_count_problems(entity: EntitySpec, query: GroupedCountQuery) -> Iterator[str]:
    if not _is_datetime(entity, query.time_field):
        yield f"time_field '{query.time_field}' is not a datetime field"
    group = entity.fields.get(query.group_by)
    if group is None or group.type not in {"enum", "string", "boolean"}:
        yield f"group_by '{query.group_by}' is not an enum, string or boolean field"
    elif query.ratio is not None and group.values is not None and query.ratio.value not in group.values:
        yield f"ratio value {query.ratio.value!r} is not one of {list(group.values)}"


def _bulk_update_problems(entity: EntitySpec, query: BulkUpdateQuery) -> Iterator[str]:
    field = entity.fields.get(query.field)
    if field is None or field.type in {"json", "list"}:
        yield f"field '{query.field}' is not a scalar field of '{entity.name}'"
    elif field.immutable:
        yield f"field '{query.field}' is immutable"
    if query.max_items < 1:
        yield "max_items must be at least 1"


_QUERY_CHECKS: Final[dict[type, Callable[[EntitySpec, Any], Iterator[str]]]] = {
    TimeRangeQuery: _time_range_problems,
    GroupedCountQuery: _grouped_count_problems,
    BulkUpdateQuery: _bulk_update_problems,
}
