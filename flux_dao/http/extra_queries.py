"""The generic extra-query kinds: a time range, a grouped count with a ratio, a bulk update of one field.

The manifest declares each extra query as an instance of one kind; this module turns it into a route with its own
request and response structs. A kind is a row in ``_BUILDERS``; adding one means adding a builder, not a handler
per resource.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler

from flux_dao.http.bodies import STRICT_BODY_OPT, json_body, strict_body
from flux_dao.http.openapi import CONSISTENCY_HEADER_DOC, CONSISTENCY_TOKEN, FluxOperation, with_headers
from flux_dao.http.problems import problem_responses
from flux_dao.http.query_docs import query_operation
from flux_dao.http.query_values import refuse_numbers
from flux_dao.http.request import OWN_QUERY_OPT, QueryParser, ReadContext, shaped
from flux_dao.http.signatures import keyword, query_arg, set_signature
from flux_dao.http.signatures import query as query_parameter
from flux_dao.manifest.names import GENERATED_MODULE, query_operation_id, query_struct_name
from flux_dao.manifest.spec import BulkUpdateQuery, GroupedCountQuery, QuerySpec, TimeRangeQuery
from flux_dao.query import BulkUpdatePlan, GroupedCountPlan, TimeRangePlan
from flux_dao.schema.resources import Resource
from flux_dao.schema.structs import request_struct
from flux_dao.schema.typemap import annotated_type, lookup
from flux_dao.store import ResourceRepository
from flux_dao.store.repository import as_utc

__all__ = ("query_handlers",)

Builder = Callable[[Resource, ResourceRepository, str, Any], HTTPRouteHandler]


def query_handlers(resource: Resource, repo: ResourceRepository, context: ReadContext) -> list[HTTPRouteHandler]:
    """One route per extra query the manifest declares on ``resource``."""
    return [
        _time_range(resource, repo, name, q, context)
        if isinstance(q, TimeRangeQuery)
        else _BUILDERS[type(q)](resource, repo, name, q)
        for name, q in resource.entity.queries.items()
    ]


def _scope_parameters(resource: Resource, query: TimeRangeQuery | GroupedCountQuery) -> list[Any]:
    params = []
    for name in query.scope:
        spec = resource.entity.fields[name]
        python_type = lookup(spec).python_type(spec, resource.schemas.enums.get(name))
        params.append(query_parameter(name, python_type, description=f"Only rows whose `{name}` equals this."))
    params.append(
        query_parameter(query.start, datetime, description="Start of the window, inclusive (ISO 8601; naive = UTC).")
    )
    params.append(
        query_parameter(query.end, datetime, description="End of the window, inclusive (ISO 8601; naive = UTC).")
    )
    return params


def _time_range(
    resource: Resource, repo: ResourceRepository, name: str, query: TimeRangeQuery, context: ReadContext
) -> HTTPRouteHandler:
    read = resource.schemas.read
    returns = list[read]  # type: ignore[valid-type]
    own = (*query.scope, query.start, query.end)
    parser = QueryParser(context.queries[resource.entity.name], listing=False, filtering=True, own=own)

    async def handler(**params: Any) -> Any:
        parsed = parser.of(params["request"])
        refuse_numbers(params["request"], (query.start, query.end))
        start = as_utc(params[query_arg(query.start)], query.start)
        end = as_utc(params[query_arg(query.end)], query.end)
        if start > end:
            return []
        scope = tuple((field, params[query_arg(field)]) for field in query.scope)
        plan = TimeRangePlan(name, scope, start, end, parsed.conditions, parsed.read)
        return shaped(await repo.time_range(plan), parsed.read)

    request = keyword("request", Request[Any, Any, Any])
    set_signature(handler, [*_scope_parameters(resource, query), request], returns)
    return get(
        f"/{name}",
        operation_id=query_operation_id(resource.entity, name, query.operation_id),
        summary=query.description or f"{resource.entity.name} by {query.field} range",
        description=f"Rows with `{query.start} <= {query.field} <= {query.end}` (both inclusive), ordered by "
        f"`{query.field}` ascending, as a plain array. Rows without `{query.field}` never appear. Takes the list's "
        "filters, `fields` and `include` too.",
        responses=problem_responses(401, 422, 503),
        operation_class=query_operation(parser),
        opt={OWN_QUERY_OPT: parser},
    )(handler)


def _grouped_count(
    resource: Resource, repo: ResourceRepository, name: str, query: GroupedCountQuery
) -> HTTPRouteHandler:
    entity = resource.entity
    scope_types = [
        (f, lookup(entity.fields[f]).python_type(entity.fields[f], resource.schemas.enums.get(f))) for f in query.scope
    ]
    fields: list[tuple[str, Any]] = [*scope_types, (query.total, int), (query.counts, dict[str, int])]
    if query.ratio is not None:
        fields.append((query.ratio.name, float))
    result = msgspec.defstruct(query_struct_name(entity, name), fields, module=GENERATED_MODULE)
    ratio = query.ratio

    async def handler(**params: Any) -> Any:
        scope = tuple((field, params[query_arg(field)]) for field in query.scope)
        refuse_numbers(params["request"], (query.start, query.end))
        start = as_utc(params[query_arg(query.start)], query.start)
        end = as_utc(params[query_arg(query.end)], query.end)
        counts = await repo.grouped_count(GroupedCountPlan(query=name, scope=scope, start=start, end=end))
        total = sum(counts.values())
        values: dict[str, Any] = dict(scope) | {query.total: total, query.counts: counts}
        if ratio is not None:
            values[ratio.name] = round(counts.get(ratio.value, 0) / total, ratio.digits) if total else 0.0
        return result(**values)

    set_signature(handler, [*_scope_parameters(resource, query), keyword("request", Request[Any, Any, Any])], result)
    description = (
        f"Counts of rows per `{query.group_by}` (only values that occur) for rows with `{query.start} <= "
        f"{query.time_field} <= {query.end}`."
    )
    if ratio is not None:
        description += f" `{ratio.name}` = count of `{ratio.value}` / total, to {ratio.digits} decimals (0.0 if none)."
    return get(
        f"/{name}",
        operation_id=query_operation_id(entity, name, query.operation_id),
        summary=query.description or f"{entity.name} counts by {query.group_by}",
        description=description,
        responses=problem_responses(401, 422, 503),
        operation_class=with_headers(FluxOperation, CONSISTENCY_TOKEN),
    )(handler)


def _bulk_update(resource: Resource, repo: ResourceRepository, name: str, query: BulkUpdateQuery) -> HTTPRouteHandler:
    entity = resource.entity
    spec = entity.fields[query.field]
    ids_type = Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=query.max_items)]
    body = request_struct(
        query_struct_name(entity, name),
        [(query.ids, ids_type), (query.value, annotated_type(spec, resource.schemas.enums.get(query.field)))],
    )
    result = msgspec.defstruct(
        query_struct_name(entity, name, "Result"), [(query.result, int)], module=GENERATED_MODULE
    )

    documented, strict = json_body(body), strict_body(body)

    async def handler(data: documented, request: Request[Any, Any, Any]) -> result:  # type: ignore[valid-type]
        data = await strict(request)
        ids = tuple(getattr(data, query.ids))
        count = await repo.bulk_update(BulkUpdatePlan(query=name, ids=ids, value=getattr(data, query.value)))
        return result(count)

    return post(
        f"/{name}",
        operation_id=query_operation_id(entity, name, query.operation_id),
        summary=query.description or f"Set {query.field} on many {entity.name}",
        description=f"Sets `{query.field}` on every listed id (1..{query.max_items}) in one statement and one "
        f"transaction; unknown ids are ignored and duplicates count once. Nothing else changes.",
        status_code=200,
        responses=problem_responses(401, 422, 503),
        response_headers=[CONSISTENCY_HEADER_DOC],
        operation_class=FluxOperation,
        opt={STRICT_BODY_OPT: strict},
    )(handler)


_BUILDERS: Final[dict[type[QuerySpec], Builder]] = {
    GroupedCountQuery: _grouped_count,
    BulkUpdateQuery: _bulk_update,
}
