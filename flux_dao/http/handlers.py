"""One Litestar Router per resource, its handlers closures over that resource's generated classes.

Litestar reads handler signatures at runtime, so each handler is annotated with the real generated structs (this
module must not use ``from __future__ import annotations``); a signature that depends on the manifest (the row id's
path parameter) is built as data and set as ``__signature__``/``__annotations__``. The read routes take their query
string through the query language's parser (``flux_dao.http.request``), which the request check runs once, and
document its parameters from the same tables (``flux_dao.http.query_docs``).
"""

import inspect
from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import HttpMethod, Request, Response, Router, delete, get, patch, post, route
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.params import PathParameter
from msgspec import UNSET

from flux_dao.http.bodies import STRICT_BODY_OPT, json_body, strict_body
from flux_dao.http.extra_queries import query_handlers
from flux_dao.http.openapi import FluxOperation
from flux_dao.http.problems import problem_responses
from flux_dao.http.query_docs import query_operation
from flux_dao.http.request import OWN_QUERY_OPT, ListRequest, QueryParser, ReadContext, shaped
from flux_dao.http.signatures import keyword, set_signature
from flux_dao.manifest.names import operation_id
from flux_dao.query.plans import WHOLE_ROWS
from flux_dao.schema.resources import Resource
from flux_dao.store import ResourceRepository

__all__ = ("build_router",)


def _id_parameter(resource: Resource) -> tuple[str, inspect.Parameter]:
    """The path parameter naming one row: ``task_id``, ``user_id``... as clients of the earlier service know it."""
    name = f"{resource.entity.singular}_id"
    annotation = Annotated[UUID, PathParameter(description=f"The {resource.entity.singular}'s id (a UUID).")]
    return f"/{{{name}:str}}", keyword(name, annotation)


def build_router(resource: Resource, repo: ResourceRepository, api_prefix: str, context: ReadContext) -> Router:
    """The router of one resource: the CRUD operations the manifest enables, then its extra queries."""
    entity = resource.entity
    location = f"{api_prefix}/{entity.path}"
    builders: dict[str, Callable[[], HTTPRouteHandler]] = {
        "list": lambda: _list_handler(resource, repo, context),
        "get": lambda: _get_handler(resource, repo, context),
        "create": lambda: _create_handler(resource, repo, location),
        "update": lambda: _update_handler(resource, repo),
        "delete": lambda: _delete_handler(resource, repo),
    }
    handlers = [builders[op]() for op in entity.operations]
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
    page_type = resource.schemas.page
    parser = QueryParser(context.queries[entity.name], listing=True, filtering=True)
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


def _get_handler(resource: Resource, repo: ResourceRepository, context: ReadContext) -> HTTPRouteHandler:
    read = resource.schemas.read
    path, id_param = _id_parameter(resource)
    parser = QueryParser(context.queries[resource.entity.name], listing=False, filtering=False)

    async def get_row(**params: Any) -> Any:
        request = params["request"]
        plan = parser.of(request).read if request.scope["query_string"] else WHOLE_ROWS
        row = await repo.get(params[id_param.name], plan)
        return row if plan.fields is None else shaped([row], plan)[0]

    set_signature(get_row, [id_param, keyword("request", Request[Any, Any, Any])], read)
    return get(
        path,
        operation_id=operation_id("get", resource.entity),
        summary=f"Get one {resource.entity.singular}",
        responses=problem_responses(401, 404, 422, 503),
        operation_class=query_operation(parser),
        opt={OWN_QUERY_OPT: parser},
    )(get_row)


def _create_handler(resource: Resource, repo: ResourceRepository, location: str) -> HTTPRouteHandler:
    create, read = resource.schemas.create, resource.schemas.read
    documented, body = json_body(create), strict_body(create)

    async def create_row(data: documented, request: Request[Any, Any, Any]) -> Response[read]:  # type: ignore[valid-type]
        row = await repo.create(msgspec.structs.asdict(await body(request)))
        return Response(row, status_code=201, headers={"Location": f"{location}/{row.id}"})  # type: ignore[attr-defined]

    return post(
        ["/", ""],
        operation_id=operation_id("create", resource.entity),
        summary=f"Create a {resource.entity.singular}",
        description="Responds 201 with the stored row and its URL in `Location`.",
        status_code=201,
        responses=problem_responses(401, 409, 422, 503),
        operation_class=FluxOperation,
        opt={STRICT_BODY_OPT: body},
    )(create_row)


def _update_handler(resource: Resource, repo: ResourceRepository) -> HTTPRouteHandler:
    update, read = resource.schemas.update, resource.schemas.read
    fields = update.__struct_fields__
    immutable = frozenset(name for name, spec in resource.entity.fields.items() if spec.immutable)

    path, id_param = _id_parameter(resource)

    strict = strict_body(update)

    async def update_row(**params: Any) -> Any:
        data = await strict(params["request"])
        changes = {name: value for name in fields if (value := getattr(data, name)) is not UNSET}
        return await repo.update(params[id_param.name], changes)

    body = keyword("data", json_body(update))
    set_signature(update_row, [id_param, body, keyword("request", Request[Any, Any, Any])], read)
    return patch(
        path,
        operation_id=operation_id("update", resource.entity),
        summary=f"Update a {resource.entity.singular}",
        description="Partial update: only the keys sent change; `{}` changes nothing."
        + (f" Fixed at creation: {', '.join(sorted(immutable))}." if immutable else ""),
        responses=problem_responses(401, 404, 409, 422, 503),
        operation_class=FluxOperation,
        opt={"immutable_fields": immutable, STRICT_BODY_OPT: strict},
    )(update_row)


def _delete_handler(resource: Resource, repo: ResourceRepository) -> HTTPRouteHandler:
    path, id_param = _id_parameter(resource)

    async def delete_row(**params: Any) -> None:
        await repo.delete(params[id_param.name])

    set_signature(delete_row, [id_param], None)
    return delete(
        path,
        operation_id=operation_id("delete", resource.entity),
        summary=f"Delete a {resource.entity.singular}",
        description="Rows that reference it are deleted or detached as the manifest says; RESTRICT references "
        "refuse the delete with 409.",
        status_code=204,
        responses=problem_responses(401, 404, 409, 422, 503),
        operation_class=FluxOperation,
    )(delete_row)
