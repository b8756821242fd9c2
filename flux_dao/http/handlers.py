"""One Litestar Router per resource, its handlers closures over that resource's generated classes.

Litestar reads handler signatures at runtime, so each handler is annotated with the real generated structs (this
module must not use ``from __future__ import annotations``); a signature that depends on the manifest (the row id's
path parameter) is built as data and set as ``__signature__``/``__annotations__``. The read routes take their query
string through the query language's parser (``flux_dao.http.request``), which the request check runs once, and
document its parameters from the same tables (``flux_dao.http.query_docs``).
"""

from collections.abc import Callable
from typing import Any

from litestar import HttpMethod, Request, Response, Router, get, route
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler

from flux_dao.http.extra_queries import query_handlers
from flux_dao.http.headers import RawHeaders
from flux_dao.http.idempotency import Idempotency
from flux_dao.http.openapi import ETAG_HEADER, IF_NONE_MATCH, with_headers
from flux_dao.http.preconditions import etag, not_modified
from flux_dao.http.problems import problem_responses
from flux_dao.http.query_docs import query_operation
from flux_dao.http.request import OWN_QUERY_OPT, ListRequest, QueryParser, ReadContext, shaped
from flux_dao.http.signatures import keyword, set_signature
from flux_dao.http.writes import group_update_handlers, id_parameter, write_handlers
from flux_dao.manifest.names import operation_id
from flux_dao.manifest.spec import VERSION
from flux_dao.query.plans import WHOLE_ROWS
from flux_dao.schema.resources import Resource
from flux_dao.store import ResourceRepository

__all__ = ("build_router",)


def build_router(
    resource: Resource, repo: ResourceRepository, api_prefix: str, context: ReadContext, idempotency: Idempotency
) -> Router:
    """The router of one resource: the CRUD operations the manifest enables, then its extra queries."""
    entity = resource.entity
    location = f"{api_prefix}/{entity.path}"
    builders: dict[str, Callable[[], list[HTTPRouteHandler]]] = {
        "list": lambda: [_list_handler(resource, repo, context)],
        "get": lambda: [_get_handler(resource, repo, context)],
        **write_handlers(resource, repo, location, idempotency),
    }
    handlers = [handler for op in entity.operations for handler in builders[op]()]
    handlers += group_update_handlers(resource, repo, idempotency)
    handlers += query_handlers(resource, repo, context)
    return Router(
        path=f"/{entity.path}",
        route_handlers=[*_options_handlers(handlers), *handlers],
        tags=[entity.path or entity.name],
        opt={"resource": entity.name},  # what the access check grants scopes on (``tasks:read``...)
    )


def _options_handlers(handlers: list[HTTPRouteHandler]) -> list[HTTPRouteHandler]:
    """One OPTIONS handler per path, whose ``Allow`` lists every method served on that path.

    Litestar makes its automatic OPTIONS handler when it registers the first handler of a path, and that handler
    keeps listing only the methods known then (``Allow: GET, OPTIONS`` on a path that also takes POST). Registered
    before the others, these take its place.
    """
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        for path in handler.paths:
            methods.setdefault(path, {"OPTIONS"}).update(handler.http_methods)
    return [_options_handler(path, ", ".join(sorted(allowed))) for path, allowed in methods.items()]


def _options_handler(path: str, allow: str) -> HTTPRouteHandler:
    async def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow}, media_type=MediaType.TEXT)

    return route(path, http_method=[HttpMethod.OPTIONS], include_in_schema=False)(options)


def _list_handler(resource: Resource, repo: ResourceRepository, context: ReadContext) -> HTTPRouteHandler:
    entity = resource.entity
    if entity.listing.shape == "array":
        return _array_list_handler(resource, repo, context)
    page_type = resource.schemas.page
    parser = QueryParser(context.queries[entity.name], listing=True, filtering=True, required=entity.listing.require)
    lists = ListRequest(parser, context.seal)

    async def list_rows(request: Request[Any, Any, Any]) -> Any:
        plan = lists.plan(parser.of(request))
        result = await repo.list_page(plan)
        cursor = lists.next_cursor(plan, result.items[-1]) if result.has_more else None
        paged = plan.after is None
        return page_type(
            items=shaped(result.items, plan.read),
            total=result.total,
            page=plan.offset // plan.limit + 1 if paged else None,
            page_size=plan.limit,
            has_next=result.has_more,
            has_prev=plan.offset > 0 or not paged,
            next_cursor=cursor,
        )

    set_signature(list_rows, [keyword("request", Request[Any, Any, Any])], page_type)
    return get(
        ["/", ""],
        operation_id=operation_id("list", entity),
        summary=f"List {entity.name}",
        description=f"A page of {entity.name} matching the filters, in the requested order (default: the "
        "resource's own), with the total of matching rows and `next_cursor` for the next page.",
        responses=problem_responses(401, 422, 503),
        operation_class=query_operation(parser),
        opt={OWN_QUERY_OPT: parser},
    )(list_rows)


def _array_list_handler(resource: Resource, repo: ResourceRepository, context: ReadContext) -> HTTPRouteHandler:
    """A list declared ``shape: array``: every matching row as a plain JSON array, as the earlier clients read it."""
    entity = resource.entity
    required = entity.listing.require
    parser = QueryParser(context.queries[entity.name], listing=True, filtering=True, paged=False, required=required)
    lists = ListRequest(parser, context.seal)

    async def list_rows(request: Request[Any, Any, Any]) -> Any:
        plan = lists.plan(parser.of(request))
        return shaped((await repo.list_page(plan)).items, plan.read)

    read = resource.schemas.read
    set_signature(list_rows, [keyword("request", Request[Any, Any, Any])], list[read])  # type: ignore[valid-type]
    scope = f" Requires {', '.join(f'`{name}`' for name in required)}." if required else ""
    return get(
        ["/", ""],
        operation_id=operation_id("list", entity),
        summary=f"List {entity.name}",
        description=f"Every {entity.singular} matching the filters as a plain JSON array, in the requested order "
        f"(default: the list's own).{scope} `limit` and `skip` bound it; there is no total and no cursor.",
        responses=problem_responses(401, 422, 503),
        operation_class=query_operation(parser),
        opt={OWN_QUERY_OPT: parser},
    )(list_rows)


def _get_handler(resource: Resource, repo: ResourceRepository, context: ReadContext) -> HTTPRouteHandler:
    read = resource.schemas.read
    path, id_param = id_parameter(resource)
    parser = QueryParser(context.queries[resource.entity.name], listing=False, filtering=False)

    async def get_row(**params: Any) -> Any:
        request = params["request"]
        plan = parser.of(request).read if request.scope["query_string"] else WHOLE_ROWS
        row = await repo.get(params[id_param.name], plan)
        version = getattr(row, VERSION)
        fresh = not_modified(RawHeaders(request.scope), version)  # a malformed If-None-Match is a 422 either way
        if plan.embeds:  # the representation holds other rows too: the row's version does not tag it
            return row if plan.fields is None else shaped([row], plan)[0]
        headers = {"ETag": etag(version)}
        if fresh:
            return Response(None, status_code=304, headers=headers, media_type=MediaType.TEXT)
        return Response(row if plan.fields is None else shaped([row], plan)[0], headers=headers)

    set_signature(get_row, [id_param, keyword("request", Request[Any, Any, Any])], read)
    return get(
        path,
        operation_id=operation_id("get", resource.entity),
        summary=f"Get one {resource.entity.singular}",
        description='The row, tagged `ETag: "<version>"` (unless `include` embeds other rows); with '
        "`If-None-Match` naming its current version, 304 and no body.",
        responses=problem_responses(401, 404, 422, 503),
        response_headers=[ETAG_HEADER],
        operation_class=with_headers(query_operation(parser), IF_NONE_MATCH),
        opt={OWN_QUERY_OPT: parser},
    )(get_row)
