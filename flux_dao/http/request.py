"""A read request's query string -> a plan: every parameter parsed strictly, once, and every problem named.

One parser per read route, built at start-up; this is the one place that knows the query language:

- filters ``field=v`` and ``field__<operator>=v`` (the operators the manifest opens on each column);
- ``sort=-scheduled_at,title``, ``skip``, ``limit``, ``count`` and the keyset ``cursor`` (lists);
- ``fields=id,title`` and ``include=goal,tasks.notification_log`` with ``include_limit`` and embed filters prefixed
  with the embed's path (``tasks.status__in=pending``).

Values are converted by the column's type with no guessing (``query_values``), so a value the database would refuse,
or read differently, is a 422 here. The same tables (``query_tables``) document each parameter in the OpenAPI
document (``query_docs``), so the document and the parser cannot disagree.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from litestar import Request
from litestar.datastructures import MultiDict

from flux_dao.errors import FieldError, InvalidCursorError, InvalidInputError
from flux_dao.http.cursor import CursorError, CursorSeal, query_digest
from flux_dao.http.query_tables import FilterParameter, ResourceQuery
from flux_dao.http.query_values import INTEGER, boolean
from flux_dao.manifest.columns import OrderTerm, with_tie_breaker
from flux_dao.manifest.relations import Embed
from flux_dao.query.plans import WHOLE_ROWS, Condition, EmbedPlan, ListPlan, ReadPlan

__all__ = (
    "DEFAULT_INCLUDE_LIMIT",
    "DEFAULT_LIMIT",
    "EVERY_ROW",
    "MAX_INCLUDE_DEPTH",
    "MAX_IN_VALUES",
    "MAX_LIMIT",
    "OWN_QUERY_OPT",
    "ListRequest",
    "ParsedQuery",
    "QueryParser",
    "ReadContext",
    "embedded_resources",
    "shaped",
)

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
MAX_SKIP: Final = 2**31 - 1
EVERY_ROW: Final = 2**31 - 2
"""The limit of an array list without ``limit``: every matching row (its ``require``d scope bounds them)."""
MAX_IN_VALUES: Final = 100
DEFAULT_INCLUDE_LIMIT: Final = 20
MAX_INCLUDE_LIMIT: Final = 100
MAX_INCLUDE_DEPTH: Final = 3
REPEATED: Final = "given more than once"
OWN_QUERY_OPT: Final = "flux_dao_own_query"
"""Handler ``opt`` key of the ``QueryParser`` that reads its query string: the API's request check runs it (naming
its problems beside the others) and keeps the result for the handler."""
_PARSED: Final = "flux_dao.parsed_query"  # scope key of the parsed query


def _problem(name: str, message: str) -> FieldError:
    return FieldError(name, message)


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A read request's query string, parsed: the plan parts the handlers assemble."""

    conditions: tuple[Condition, ...] = ()
    read: ReadPlan = WHOLE_ROWS
    order: tuple[OrderTerm, ...] = ()
    offset: int = 0
    limit: int | None = None
    """``limit`` as sent; None: the list's default (a page of ``DEFAULT_LIMIT``, or every row of an array list)."""
    count: bool = True
    cursor: str | None = None


_LIST_ONLY: Final = frozenset({"sort", "skip", "limit", "count", "cursor"})
_PAGE_ONLY: Final = frozenset({"count", "cursor"})
"""What a list answering a plain array does not take: it has no total and no next page."""
_READ: Final = frozenset({"fields", "include", "include_limit"})


class QueryParser:
    """The query-string parser of one read route: which parameter groups it takes, and how each is parsed."""

    def __init__(
        self,
        resource: ResourceQuery,
        *,
        listing: bool,
        filtering: bool,
        own: Iterable[str] = (),
        paged: bool = True,
        required: Iterable[str] = (),
    ) -> None:
        self.resource = resource
        self.listing = listing
        self.filtering = filtering
        self.paged = paged
        """A list answering pages (``count``, ``cursor``), not a plain array."""
        self.required = tuple(required)
        """Filters every request must send (a list's ``require``)."""
        self.own = frozenset(own)
        """The route's own parameters, declared on its handler and checked by Litestar (a time range's window)."""
        listed = (_LIST_ONLY if paged else _LIST_ONLY - _PAGE_ONLY) if listing else frozenset()
        fixed = set(_READ) | listed | self.own
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
        if not query and not self.required:
            return _EMPTY
        problems: list[FieldError] = [
            _problem(name, "is required: this list answers one " + name + " at a time")
            for name in self.required
            if name not in query
        ]
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
        parsed = ParsedQuery(conditions=tuple(conditions), read=read)
        if self.listing:
            parsed = self._paging(values, parsed, problems)
        if problems:
            position = {name: index for index, name in enumerate(values)}
            raise InvalidInputError(sorted(problems, key=lambda p: position.get(p.field, len(position))))
        return parsed

    def _unknown_message(self) -> str:
        example = self._embed_filter_example()
        hint = f", and embed filters such as `{example}`" if example else ""
        return f"unknown query parameter; known: {', '.join(self.known)}{hint}"

    def _embed_filter_example(self) -> str | None:
        """A filter of this resource's first to-many embed (``tasks.status``), if it has one, for the hint."""
        for name, embed in self.resource.embeds.items():
            if not embed.many:
                continue
            for parameter in self.resource.embed_target(name).filters.values():
                if parameter.field != embed.via:  # every embedded row already matches its own reference
                    return f"{name}.{parameter.name}"
        return None

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
        if pieces := _pieces(values.get("sort", []), unique=False):  # ``sort=`` alone keeps the default order
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
        limit = None
        if "limit" in values:
            limit = _bounded(values["limit"][-1], "limit", 1, MAX_LIMIT, problems, DEFAULT_LIMIT)
        count = True
        if "count" in values:
            try:
                count = boolean(values["count"][-1])
            except ValueError as exc:
                problems.append(_problem("count", str(exc)))
        cursor = values["cursor"][-1] if "cursor" in values else None
        if cursor is not None and "skip" in values:
            problems.append(_problem("cursor", "cannot be combined with skip: a cursor already says where to start"))
        return ParsedQuery(parsed.conditions, parsed.read, order, skip, limit, count, cursor)


_EMPTY: Final = ParsedQuery()


def _pieces(given: list[str], *, unique: bool = True) -> list[str]:
    pieces = [piece.strip() for raw in given for piece in raw.split(",") if piece.strip()]
    return list(dict.fromkeys(pieces)) if unique else pieces


def _prefixes(path: str) -> list[str]:
    segments = path.split(".")
    return [".".join(segments[: i + 1]) for i in range(len(segments))]


def _bounded(raw: str, name: str, low: int, high: int, problems: list[FieldError], default: int) -> int:
    try:
        value = int(raw) if INTEGER.fullmatch(raw) else None
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
        limit = parsed.limit or (DEFAULT_LIMIT if self.parser.paged else EVERY_ROW)
        return ListPlan(
            conditions=parsed.conditions,
            order=order,
            offset=parsed.offset,
            limit=limit,
            count=parsed.count and self.parser.paged,  # an array has no total to count
            after=after,
            read=parsed.read,
        )

    def next_cursor(self, plan: ListPlan, last: Any) -> str:
        """The cursor of the page after the one ending with row ``last``, bound to the plan's filters and order."""
        digest = query_digest(plan.conditions, plan.order)
        return self.seal.make(digest, [getattr(last, term.field) for term in plan.order])


def embedded_resources(resource: ResourceQuery, embeds: tuple[EmbedPlan, ...]) -> Iterator[str]:
    """The resources a read's embeds bring in, nested ones too (``include=goal.user``: goals, users)."""
    for embed in embeds:
        target = resource.embed_target(embed.name)
        yield target.entity.name
        yield from embedded_resources(target, embed.embeds)


def shaped(items: list[Any], read: ReadPlan) -> list[Any]:
    """Rows as the request asked: whole structs, or only the fields it named (and its embeds) as objects."""
    if read.fields is None:
        return items
    keys = (*read.fields, *(embed.name for embed in read.embeds))
    return [{key: getattr(item, key) for key in keys} for item in items]
