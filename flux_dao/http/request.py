"""A read request's query string -> a plan: every parameter parsed strictly, once, and every problem named.

Built once per resource from the manifest (``ResourceQuery``), this is the one place that knows the query language:

- filters ``field=v`` and ``field__<operator>=v`` (the operators the manifest opens on each column);
- ``sort=-scheduled_at,title``, ``skip``, ``limit``, ``count`` and the keyset ``cursor`` (lists);
- ``fields=id,title`` and ``include=goal,tasks.notification_log`` with ``include_limit`` and embed filters prefixed
  with the embed's path (``tasks.status__in=pending``).

Values are converted by the column's type with no guessing (``1`` is not ``true``, a datetime needs ISO 8601), so
a value the database would refuse, or read differently, is a 422 here. The same tables document each parameter in
the OpenAPI document (``parameters``), so the document and the parser cannot disagree.
"""

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID

from litestar import Request
from litestar.datastructures import MultiDict
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Parameter, Reference, Schema

from flux_dao.errors import FieldError, InvalidCursorError, InvalidInputError
from flux_dao.http.cursor import CursorError, CursorSeal, query_digest
from flux_dao.http.openapi import FluxOperation
from flux_dao.manifest.columns import LIST_OPERATORS, ColumnInfo, OrderTerm, columns, default_order, with_tie_breaker
from flux_dao.manifest.names import enum_name
from flux_dao.manifest.relations import Embed
from flux_dao.manifest.spec import EntitySpec, Operator
from flux_dao.query.plans import WHOLE_ROWS, Condition, EmbedPlan, ListPlan, ReadPlan
from flux_dao.schema.typemap import INT32_MAX, INT32_MIN
from flux_dao.store.repository import as_utc

__all__ = (
    "DEFAULT_INCLUDE_LIMIT",
    "DEFAULT_LIMIT",
    "MAX_INCLUDE_DEPTH",
    "MAX_IN_VALUES",
    "MAX_LIMIT",
    "OWN_QUERY_OPT",
    "ListRequest",
    "ParsedQuery",
    "QueryParser",
    "ReadContext",
    "ResourceQuery",
    "build_resource_queries",
    "query_operation",
    "shaped",
)

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
MAX_SKIP: Final = 2**31 - 1
MAX_IN_VALUES: Final = 100
DEFAULT_INCLUDE_LIMIT: Final = 20
MAX_INCLUDE_LIMIT: Final = 100
MAX_INCLUDE_DEPTH: Final = 3
REPEATED: Final = "given more than once"
OWN_QUERY_OPT: Final = "flux_dao_own_query"
"""Handler ``opt`` key of the ``QueryParser`` that reads its query string: the API's request check runs it (naming
its problems beside the others) and keeps the result for the handler."""
_PARSED: Final = "flux_dao.parsed_query"  # scope key of the parsed query

_INTEGER: Final = re.compile(r"^[+-]?[0-9]{1,20}$")
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


def _problem(name: str, message: str) -> FieldError:
    return FieldError(name, message)


# -- values ----------------------------------------------------------------------------------------------------


def _text(raw: str) -> str:
    if "\x00" in raw:
        msg = "must not contain NUL (U+0000) characters"
        raise ValueError(msg)
    return raw


def _integer(raw: str) -> int:
    if not _INTEGER.match(raw):
        msg = "is not an integer"
        raise ValueError(msg)
    value = int(raw)
    if not INT32_MIN <= value <= INT32_MAX:
        msg = f"is out of range ({INT32_MIN}..{INT32_MAX})"
        raise ValueError(msg)
    return value


def _float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        msg = "is not a number"
        raise ValueError(msg) from None
    if not math.isfinite(value):
        msg = "must be a finite number"
        raise ValueError(msg)
    return value


def _boolean(raw: str) -> bool:
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


def _converter(column: ColumnInfo, item: bool = False) -> Callable[[str], Any]:
    kind = (column.items or "string") if item else column.type
    simple: dict[str, Callable[[str], Any]] = {
        "string": _text,
        "integer": _integer,
        "float": _float,
        "boolean": _boolean,
        "uuid": _uuid,
    }
    if kind == "enum":
        return _enum(column.values or ())
    if kind == "datetime":
        return _datetime(column.name)
    return simple[kind]


# -- the parameter tables ----------------------------------------------------------------------------------------


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
                convert = _boolean if operator == "isnull" else _converter(column, item=operator == "contains")
                filters[name] = FilterParameter(name, column.name, operator, convert)
        registry[entity.name] = ResourceQuery(
            entity, info, filters, embeds.get(entity.name, {}), default_order(entity), registry
        )
    return registry


# -- parsing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A read request's query string, parsed: the plan parts the handlers assemble."""

    conditions: tuple[Condition, ...] = ()
    read: ReadPlan = WHOLE_ROWS
    order: tuple[OrderTerm, ...] = ()
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    count: bool = True
    cursor: str | None = None
    scope: dict[str, str] = field(default_factory=dict)
    """Raw values of the route's own parameters (a time range's scope and window), checked by its handler."""


_LIST_ONLY: Final = frozenset({"sort", "skip", "limit", "count", "cursor"})
_READ: Final = frozenset({"fields", "include", "include_limit"})


class QueryParser:
    """The query-string parser of one read route: which parameter groups it takes, and how each is parsed."""

    def __init__(
        self, resource: ResourceQuery, *, listing: bool, filtering: bool, own: Mapping[str, str] | None = None
    ) -> None:
        self.resource = resource
        self.listing = listing
        self.filtering = filtering
        self.own = dict(own or {})
        """Route parameters parsed by the handler (name -> description), e.g. a time range's ``start``."""
        fixed = set(_READ) | (set(_LIST_ONLY) if listing else set()) | set(self.own)
        self.fixed = frozenset(fixed)
        self.known = sorted(fixed | (set(resource.filters) if filtering else set()))

    def __deepcopy__(self, memo: dict[int, Any]) -> "QueryParser":
        """Shared, not copied: Litestar deep-copies handler ``opt`` as it registers routers, and this never changes."""
        return self

    def of(self, request: Request[Any, Any, Any]) -> ParsedQuery:
        """The request's parsed query: kept by the request check, or parsed here."""
        scope = cast("dict[str, Any]", request.scope)
        parsed = scope.get(_PARSED)
        return parsed if parsed is not None else self.parse(request.query_params)

    def check(self, request: Request[Any, Any, Any]) -> list[FieldError]:
        """Parse the request's query and keep it for the handler; the problems found, if any."""
        try:
            cast("dict[str, Any]", request.scope)[_PARSED] = self.parse(request.query_params)
        except InvalidInputError as exc:
            return list(exc.errors)
        return []

    def parse(self, query: MultiDict[str]) -> ParsedQuery:
        """The parsed query string, or :class:`InvalidInputError` naming every bad parameter."""
        if not query:
            return _EMPTY
        problems: list[FieldError] = []
        values = {name: query.getall(name) for name in dict.fromkeys(query) if name}  # ``?=x`` names nothing
        conditions: list[Condition] = []
        embed_filters: dict[str, list[tuple[str, Condition]]] = {}
        for name, given in values.items():
            if name in self.fixed:
                if len(given) > 1 and name not in {"sort", "fields", "include"}:
                    problems.append(_problem(name, REPEATED))
                continue
            if self.filtering and name in self.resource.filters:
                condition = self._condition(self.resource.filters[name], given, problems)
                if condition is not None:
                    conditions.append(condition)
            elif "." in name:
                self._embed_filter(name, given, embed_filters, problems)
            else:
                problems.append(_problem(name, self._unknown_message()))
        reads = embed_filters or not _READ.isdisjoint(values)
        read = self._read(values, embed_filters, problems) if reads else WHOLE_ROWS
        parsed = ParsedQuery(
            conditions=tuple(conditions),
            read=read,
            scope={name: values[name][-1] for name in self.own if name in values},
        )
        if self.listing:
            parsed = self._paging(values, parsed, problems)
        if problems:
            position = {name: index for index, name in enumerate(values)}
            raise InvalidInputError(sorted(problems, key=lambda p: position.get(p.field, len(position))))
        return parsed

    def _unknown_message(self) -> str:
        return f"unknown query parameter; known: {', '.join(self.known)}, and embed filters such as `tasks.status`"

    @staticmethod
    def _condition(
        parameter: FilterParameter, given: list[str], problems: list[FieldError], label: str = ""
    ) -> Condition | None:
        name = label or parameter.name
        if not parameter.many:
            if len(given) > 1:
                problems.append(_problem(name, REPEATED))
                return None
            try:
                return Condition(parameter.field, parameter.operator, parameter.convert(given[0]))
            except ValueError as exc:
                problems.append(_problem(name, str(exc)))
                return None
        pieces = [piece for raw in given for piece in raw.split(",")]  # an empty piece is the empty string
        if len(pieces) > MAX_IN_VALUES:
            problems.append(_problem(name, f"takes at most {MAX_IN_VALUES} values"))
            return None
        converted = []
        for piece in pieces:
            try:
                converted.append(parameter.convert(piece))
            except ValueError as exc:
                problems.append(_problem(name, f"{piece!r} {exc}"))
                return None
        return Condition(parameter.field, parameter.operator, tuple(dict.fromkeys(converted)))

    def _embed_filter(
        self, name: str, given: list[str], found: dict[str, list[tuple[str, Condition]]], problems: list[FieldError]
    ) -> None:
        path, _, parameter = name.rpartition(".")
        target = self._walk(path)
        if isinstance(target, str):
            problems.append(_problem(name, target))
            return
        embed, resource = target
        if not embed.many:
            problems.append(_problem(name, f"`{path}` embeds one row; only to-many embeds take filters"))
            return
        if parameter not in resource.filters:
            known = ", ".join(sorted(resource.filters)) or "none"
            problems.append(_problem(name, f"`{parameter}` is not a filter of {resource.entity.name} (known: {known})"))
            return
        condition = self._condition(resource.filters[parameter], given, problems, label=name)
        if condition is not None:
            found.setdefault(path, []).append((name, condition))

    def _walk(self, path: str) -> tuple[Embed, ResourceQuery] | str:
        """The last embed of a dotted path and its resource, or why the path is wrong."""
        resource, embed = self.resource, None
        segments = path.split(".")
        if len(segments) > MAX_INCLUDE_DEPTH:
            return f"nests deeper than {MAX_INCLUDE_DEPTH} levels"
        for segment in segments:
            if segment not in resource.embeds:
                known = ", ".join(resource.embeds) or "none"
                return f"`{segment}` is not an embed of {resource.entity.name} (known: {known})"
            embed, resource = resource.embeds[segment], resource.embed_target(segment)
        assert embed is not None  # noqa: S101 (a path has at least one segment)
        return embed, resource

    def _read(
        self,
        values: dict[str, list[str]],
        embed_filters: dict[str, list[tuple[str, Condition]]],
        problems: list[FieldError],
    ) -> ReadPlan:
        fields: tuple[str, ...] | None = None
        wanted = _pieces(values.get("fields", []))
        if wanted:  # ``fields=`` alone asks for nothing less than the whole row
            unknown = [name for name in wanted if name not in self.resource.columns]
            if unknown:
                known = ", ".join(self.resource.columns)
                problems.append(_problem("fields", f"unknown field(s) {', '.join(unknown)}; known: {known}"))
            fields = tuple(dict.fromkeys(["id", *wanted]))
        limit = DEFAULT_INCLUDE_LIMIT
        if "include_limit" in values:
            limit = _bounded(values["include_limit"][-1], "include_limit", 1, MAX_INCLUDE_LIMIT, problems, limit)
        paths = _pieces(values.get("include", []))
        for path in paths:
            target = self._walk(path)
            if isinstance(target, str):
                problems.append(_problem("include", f"{path}: {target}"))
        # an embed filter brings its embed in: ``tasks.status=pending`` alone embeds the user's pending tasks
        paths += [path for path in embed_filters if path not in paths]
        if problems:
            return ReadPlan(fields)
        included = sorted({prefix for path in paths for prefix in _prefixes(path)})
        conditions = {path: [condition for _, condition in found] for path, found in embed_filters.items()}
        return ReadPlan(fields, _embed_plans("", included, conditions, limit))

    def _paging(self, values: dict[str, list[str]], parsed: ParsedQuery, problems: list[FieldError]) -> ParsedQuery:
        resource = self.resource
        order: tuple[OrderTerm, ...] = ()
        if pieces := _pieces(values.get("sort", [])):  # ``sort=`` alone keeps the default order
            terms: list[OrderTerm] = []
            for piece in pieces:
                name = piece.removeprefix("-")
                column = resource.columns.get(name)
                if column is None or not column.sortable:
                    problems.append(
                        _problem("sort", f"cannot sort by {name!r}; sortable: {', '.join(resource.sortable)}")
                    )
                elif any(term.field == name for term in terms):
                    problems.append(_problem("sort", f"names {name!r} twice"))
                else:
                    terms.append(OrderTerm(name, descending=piece.startswith("-")))
            order = with_tie_breaker(tuple(terms))
        skip = _bounded(values["skip"][-1], "skip", 0, MAX_SKIP, problems, 0) if "skip" in values else 0
        limit = DEFAULT_LIMIT
        if "limit" in values:
            limit = _bounded(values["limit"][-1], "limit", 1, MAX_LIMIT, problems, DEFAULT_LIMIT)
        count = True
        if "count" in values:
            try:
                count = _boolean(values["count"][-1])
            except ValueError as exc:
                problems.append(_problem("count", str(exc)))
        cursor = values["cursor"][-1] if "cursor" in values else None
        if cursor is not None and "skip" in values:
            problems.append(_problem("cursor", "cannot be combined with skip: a cursor already says where to start"))
        return ParsedQuery(parsed.conditions, parsed.read, order, skip, limit, count, cursor, parsed.scope)


_EMPTY: Final = ParsedQuery()


def _pieces(given: list[str]) -> list[str]:
    return list(dict.fromkeys(piece.strip() for raw in given for piece in raw.split(",") if piece.strip()))


def _prefixes(path: str) -> list[str]:
    segments = path.split(".")
    return [".".join(segments[: i + 1]) for i in range(len(segments))]


def _bounded(raw: str, name: str, low: int, high: int, problems: list[FieldError], default: int) -> int:
    try:
        value = int(raw) if _INTEGER.match(raw) else None
    except ValueError:
        value = None
    if value is None:
        problems.append(_problem(name, "is not an integer"))
        return default
    if not low <= value <= high:
        problems.append(_problem(name, f"must be between {low} and {high}"))
        return default
    return value


def _embed_plans(
    prefix: str, included: list[str], filters: Mapping[str, list[Condition]], limit: int
) -> tuple[EmbedPlan, ...]:
    depth = prefix.count(".")  # the prefix ends with a dot per level above: "" -> 0, "goals." -> 1
    children = [path for path in included if path.count(".") == depth and path.startswith(prefix)]
    return tuple(
        EmbedPlan(
            name=path.rpartition(".")[2],
            conditions=tuple(filters.get(path, ())),
            embeds=_embed_plans(path + ".", included, filters, limit),
            limit=limit,
        )
        for path in children
    )


@dataclass(frozen=True)
class ReadContext:
    """What every read route's parser shares: each resource's query tables, and the cursor seal."""

    queries: Mapping[str, ResourceQuery]
    seal: CursorSeal


class ListRequest:
    """Turns a list request's parsed query into a ``ListPlan``, opening its cursor; makes the next cursor."""

    def __init__(self, parser: QueryParser, seal: CursorSeal) -> None:
        self.parser = parser
        self.seal = seal

    def plan(self, parsed: ParsedQuery) -> ListPlan:
        """The plan of a list request, its cursor opened."""
        resource = self.parser.resource
        order = parsed.order or resource.default_order
        after = None
        if parsed.cursor is not None:
            digest = query_digest(parsed.conditions, order)
            try:
                after = self.seal.open(parsed.cursor, digest, order, resource.columns)
            except CursorError as exc:
                raise InvalidCursorError([FieldError("cursor", str(exc))]) from None
        return ListPlan(
            conditions=parsed.conditions,
            order=order,
            offset=parsed.offset,
            limit=parsed.limit,
            count=parsed.count,
            after=after,
            read=parsed.read,
        )

    def next_cursor(self, plan: ListPlan, last: Any) -> str:
        """The cursor of the page after the one ending with row ``last``, bound to the plan's filters and order."""
        digest = query_digest(plan.conditions, plan.order)
        return self.seal.make(digest, [getattr(last, term.field) for term in plan.order])


def shaped(items: list[Any], read: ReadPlan) -> list[Any]:
    """Rows as the request asked: whole structs, or only the fields it named (and its embeds) as objects."""
    if read.fields is None:
        return items
    keys = (*read.fields, *(embed.name for embed in read.embeds))
    return [{key: getattr(item, key) for key in keys} for item in items]


# -- OpenAPI -----------------------------------------------------------------------------------------------------


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


def _filter_documents(resource: ResourceQuery, prefix: str = "", own: Iterable[str] = ()) -> list[Parameter]:
    found = []
    for parameter in resource.filters.values():
        if parameter.name in own:
            continue  # the route's own parameter of that name (a time range's scope) is documented by its handler
        column = resource.columns[parameter.field]
        if parameter.operator == "isnull":
            schema: Schema | Reference = Schema(type=OpenAPIType.BOOLEAN)
        elif parameter.many:
            item = _value_schema(resource, column, item=parameter.operator == "contains")
            schema = Schema(type=OpenAPIType.ARRAY, items=item, max_items=MAX_IN_VALUES)
        else:
            schema = _value_schema(resource, column)
        where = f" of the embedded {resource.entity.name}" if prefix else ""
        found.append(
            Parameter(
                name=prefix + parameter.name,
                param_in="query",
                required=False,
                schema=schema,
                description=f"Only rows{where} whose `{column.name}` {_OPERATOR_WORDS[parameter.operator]}.",
                explode=True if parameter.many else None,
            )
        )
    return found


def parameters(parser: QueryParser) -> list[Parameter]:
    """The OpenAPI parameters of the route ``parser`` reads (besides its own, which its handler documents)."""
    resource = parser.resource
    names = list(resource.columns)
    found: list[Parameter] = []
    if parser.filtering:
        found += _filter_documents(resource, own=parser.own)
    if parser.listing:
        found += [
            Parameter(
                name="sort",
                param_in="query",
                required=False,
                schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
                explode=False,
                description="Order of the rows: fields, comma-separated; `-` sorts descending. Nulls sort last "
                "either way; `id` breaks ties. Default: the resource's own order. Sortable: "
                + ", ".join(f"`{name}`" for name in resource.sortable)
                + ".",
            ),
            _integer_parameter("skip", 0, MAX_SKIP, 0, "Rows to skip (offset paging; not with `cursor`)."),
            _integer_parameter("limit", 1, MAX_LIMIT, DEFAULT_LIMIT, f"Page size (1..{MAX_LIMIT})."),
            Parameter(
                name="count",
                param_in="query",
                required=False,
                schema=Schema(type=OpenAPIType.BOOLEAN, default=True),
                description="Count the matching rows into `total`; `false` skips the COUNT query and answers "
                "`total: null` (faster on large results).",
            ),
            Parameter(
                name="cursor",
                param_in="query",
                required=False,
                schema=Schema(type=OpenAPIType.STRING),
                description="The `next_cursor` of the previous page: the page after it, for the same filters and "
                "sort (keyset paging: no row twice, none skipped, however deep). Not with `skip`.",
            ),
        ]
    found += [
        Parameter(
            name="fields",
            param_in="query",
            required=False,
            schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
            explode=False,
            description="Return only these keys of each row (comma-separated; `id` always, embeds too): "
            + ", ".join(f"`{name}`" for name in names)
            + ". The rows then carry fewer keys than the schema lists.",
        ),
        Parameter(
            name="include",
            param_in="query",
            required=False,
            schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
            explode=False,
            description="Embed related rows (comma-separated): "
            + ", ".join(
                f"`{name}` ({embed.target}{', a list' if embed.many else ''})"
                for name, embed in resource.embeds.items()
            )
            + f". Nest with dots, up to {MAX_INCLUDE_DEPTH} levels (`goals.tasks`). Filter a to-many embed with its "
            "resource's filters prefixed by its path (`tasks.status__in=pending`), which also embeds it.",
        ),
        _integer_parameter(
            "include_limit",
            1,
            MAX_INCLUDE_LIMIT,
            DEFAULT_INCLUDE_LIMIT,
            "Most rows each to-many embed holds per parent, in the embedded resource's default order.",
        ),
    ]
    if parser.filtering:
        for name, embed in resource.embeds.items():
            if embed.many:
                found += _filter_documents(resource.embed_target(name), prefix=f"{name}.")
    return found


def query_operation(parser: QueryParser) -> type[FluxOperation]:
    """The operation class documenting the query parameters ``parser`` reads (its handler declares none of them)."""
    return type("FluxQueryOperation", (FluxOperation,), {"extra_parameters": tuple(parameters(parser))})


def _integer_parameter(name: str, low: int, high: int, default: int, description: str) -> Parameter:
    return Parameter(
        name=name,
        param_in="query",
        required=False,
        schema=Schema(type=OpenAPIType.INTEGER, minimum=low, maximum=high, default=default),
        description=description,
    )
