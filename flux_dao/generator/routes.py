"""One Litestar Router per resource, its handlers closures over that resource's generated classes.

Litestar reads handler signatures at runtime, so each handler is annotated with the real generated structs (this
module must not use ``from __future__ import annotations``). The list handler's filter parameters depend on the
manifest, so its signature is built as data and set as ``__signature__``/``__annotations__``.
"""

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from litestar import HttpMethod, Request, Response, Router, delete, get, patch, post, route
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.params import PathParameter
from msgspec import UNSET

from flux_dao.errors import FieldError, InvalidInputError
from flux_dao.generator.bodies import STRICT_BODY_OPT, json_body, strict_body
from flux_dao.generator.names import operation_id
from flux_dao.generator.queries import query_handlers
from flux_dao.generator.resources import Resource
from flux_dao.generator.signatures import keyword, query, query_arg, set_signature
from flux_dao.generator.typemap import lookup
from flux_dao.repository import ListPlan, ResourceRepository
from flux_dao.web.openapi import FluxOperation
from flux_dao.web.problems import problem_responses

__all__ = ("DEFAULT_LIMIT", "MAX_LIMIT", "build_router")

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
MAX_SKIP: Final = 2**31 - 1
SKIP: Final = query_arg("skip")
LIMIT: Final = query_arg("limit")
COUNT: Final = query_arg("count")


def _id_parameter(resource: Resource) -> tuple[str, inspect.Parameter]:
    """The path parameter naming one row: ``task_id``, ``user_id``... as clients of the earlier service know it."""
    name = f"{resource.entity.singular}_id"
    annotation = Annotated[UUID, PathParameter(description=f"The {resource.entity.singular}'s id (a UUID).")]
    return f"/{{{name}:str}}", keyword(name, annotation)


def build_router(resource: Resource, repo: ResourceRepository, api_prefix: str) -> Router:
    """The router of one resource: the CRUD operations the manifest enables, then its extra queries."""
    entity = resource.entity
    builders: dict[str, Callable[[Resource, ResourceRepository, str], HTTPRouteHandler]] = {
        "list": _list_handler,
        "get": _get_handler,
        "create": _create_handler,
        "update": _update_handler,
        "delete": _delete_handler,
    }
    location = f"{api_prefix}/{entity.path}"
    handlers = [builders[op](resource, repo, location) for op in entity.operations]
    handlers += query_handlers(resource, repo)
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


def _list_handler(resource: Resource, repo: ResourceRepository, _: str) -> HTTPRouteHandler:
    entity = resource.entity
    page_type = resource.schemas.page
    filter_fields = tuple(name for name, spec in entity.fields.items() if spec.filter)
    filter_args = tuple((name, query_arg(name)) for name in filter_fields)

    async def list_rows(**params: Any) -> Any:
        skip: int = params[SKIP]
        limit: int = params[LIMIT]
        filters = tuple((name, value) for name, arg in filter_args if (value := params[arg]) is not None)
        if len(filters) < len(filter_args):
            _refuse_null_filters(params["request"], filter_args, params)
        result = await repo.list_page(ListPlan(filters=filters, offset=skip, limit=limit, count=params[COUNT]))
        return page_type(
            items=result.items,
            total=result.total,
            page=skip // limit + 1,
            page_size=limit,
            has_next=result.has_more,
            has_prev=skip > 0,
        )

    parameters = [
        keyword("request", Request[Any, Any, Any]),
        query("skip", int, 0, ge=0, le=MAX_SKIP, description="Rows to skip."),
        query("limit", int, DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Page size (1..{MAX_LIMIT})."),
        query(
            "count",
            bool,
            True,
            description="Count the matching rows into `total`; `false` skips the COUNT query and answers "
            "`total: null` (faster on large results).",
        ),
    ]
    for name in filter_fields:
        spec = entity.fields[name]
        python_type = lookup(spec).python_type(spec, resource.schemas.enums.get(name))
        parameters.append(query(name, python_type | None, None, description=f"Only rows whose `{name}` equals this."))
    set_signature(list_rows, parameters, page_type)
    return get(
        ["/", ""],
        operation_id=operation_id("list", entity),
        summary=f"List {entity.name}",
        description=f"A page of {entity.name}, newest first, with the total of rows matching the filters.",
        responses=problem_responses(401, 422, 503),
        operation_class=FluxOperation,
    )(list_rows)


def _refuse_null_filters(
    request: Request[Any, Any, Any], filter_args: tuple[tuple[str, str], ...], params: dict[str, Any]
) -> None:
    """Refuse a filter sent as ``null`` rather than drop it.

    Lax conversion reads ``?goal_id=null`` as None, which would otherwise mean "no filter" and answer every row.
    """
    sent = request.query_params
    nulls = [name for name, arg in filter_args if params[arg] is None and name in sent]
    if nulls:
        message = "is not a value this filter can match; leave the parameter out to not filter"
        raise InvalidInputError([FieldError(name, message) for name in nulls])


def _get_handler(resource: Resource, repo: ResourceRepository, _: str) -> HTTPRouteHandler:
    read = resource.schemas.read
    path, id_param = _id_parameter(resource)

    async def get_row(**params: Any) -> Any:
        return await repo.get(params[id_param.name])

    set_signature(get_row, [id_param], read)
    return get(
        path,
        operation_id=operation_id("get", resource.entity),
        summary=f"Get one {resource.entity.singular}",
        responses=problem_responses(401, 404, 422, 503),
        operation_class=FluxOperation,
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


def _update_handler(resource: Resource, repo: ResourceRepository, _: str) -> HTTPRouteHandler:
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


def _delete_handler(resource: Resource, repo: ResourceRepository, _: str) -> HTTPRouteHandler:
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
