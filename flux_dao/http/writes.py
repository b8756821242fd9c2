"""The write routes of one resource: create (and upsert), bulk create, update, delete.

Each takes an ``Idempotency-Key`` (``flux_dao.http.idempotency``): with one, its repository steps run in a
transaction with the statement that stores the answer; without, each write is the single statement it always was.
PATCH and DELETE take ``If-Match`` (``flux_dao.http.preconditions``); every answer that holds a row tags it with its
``ETag``.
"""

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request, Response, delete, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter
from msgspec import UNSET

from flux_dao.errors import FieldError, InvalidInputError
from flux_dao.http.bodies import STRICT_BODY_OPT, json_body, strict_body, strict_list
from flux_dao.http.headers import RawHeaders
from flux_dao.http.idempotency import Idempotency
from flux_dao.http.openapi import (
    CONSISTENCY_HEADER_DOC,
    ETAG_HEADER,
    IDEMPOTENCY_KEY,
    IF_MATCH,
    REPLAYED_HEADER_DOC,
    FluxOperation,
    list_body,
    with_headers,
    with_request_body,
)
from flux_dao.http.preconditions import etag, expected_version
from flux_dao.http.problems import problem_responses
from flux_dao.http.signatures import keyword, query, set_signature
from flux_dao.manifest.names import group_operation_id, group_path, operation_id
from flux_dao.manifest.spec import EntitySpec
from flux_dao.schema.resources import Resource
from flux_dao.store import ResourceRepository
from flux_dao.store.db import Connection

__all__ = ("BULK_MAX_ROWS", "group_update_handlers", "id_parameter", "write_handlers")

BULK_MAX_ROWS = 1000
"""Rows one bulk create takes."""

_REQUEST = keyword("request", Request[Any, Any, Any])
_IDEMPOTENT = with_headers(FluxOperation, IDEMPOTENCY_KEY)
_CONDITIONAL = with_headers(FluxOperation, IF_MATCH, IDEMPOTENCY_KEY)


def id_parameter(resource: Resource) -> tuple[str, inspect.Parameter]:
    """The path parameter naming one row: ``task_id``, ``user_id``... as clients of the earlier service know it."""
    name = f"{resource.entity.singular}_id"
    annotation = Annotated[UUID, PathParameter(description=f"The {resource.entity.singular}'s id (a UUID).")]
    return f"/{{{name}:str}}", keyword(name, annotation)


def write_handlers(
    resource: Resource, repo: ResourceRepository, location: str, idempotency: Idempotency
) -> dict[str, Callable[[], list[HTTPRouteHandler]]]:
    """The write routes of each write operation the manifest can enable, built on demand."""
    return {
        "create": lambda: [
            _create_handler(resource, repo, location, idempotency),
            _bulk_handler(resource, repo, idempotency),
        ],
        "update": lambda: [_update_handler(resource, repo, idempotency)],
        "delete": lambda: [_delete_handler(resource, repo, idempotency)],
    }


async def _once(
    request: Request[Any, Any, Any],
    idempotency: Idempotency,
    alone: Callable[[], Awaitable[Response[Any]]],
    step: Callable[[Connection], Awaitable[Response[Any]]],
) -> Response[Any]:
    """``alone()`` (one statement), or ``step`` in a transaction with its answer when the request has a key."""
    key = idempotency.key(request)
    return await alone() if key is None else await idempotency.run(request, key, step)


def _required(entity: EntitySpec) -> tuple[int, ...]:
    return (428,) if entity.concurrency == "required" else ()


def _create_handler(
    resource: Resource, repo: ResourceRepository, location: str, idempotency: Idempotency
) -> HTTPRouteHandler:
    entity = resource.entity
    create, read = resource.schemas.create, resource.schemas.read
    body = strict_body(create)
    unique = tuple(name for name, spec in entity.fields.items() if spec.unique)
    upserts = bool(unique) and entity.concurrency == "optional" and "update" in entity.operations

    def created(row: Any, status: int = 201) -> Response[Any]:
        return Response(
            row, status_code=status, headers={"Location": f"{location}/{row.id}", "ETag": etag(row.version)}
        )

    async def create_row(**params: Any) -> Any:
        request = params["request"]
        values = msgspec.structs.asdict(await body(request))
        field = params.get("q_on_conflict")
        if field is None and upserts and "on_conflict" in request.query_params:  # `?on_conflict=null` read as None
            choices_ = ", ".join(unique)
            raise InvalidInputError([FieldError("on_conflict", f"must be one of: {choices_}")])
        if field is not None:
            raw = await request.json()
            sent = tuple(name for name in values if name in raw)

            async def upsert(conn: Connection) -> Response[Any]:
                row, inserted = await repo.upsert_on(conn, values, field, sent)
                return created(row, 201 if inserted else 200)

            return await _once(request, idempotency, lambda: repo.alone(upsert), upsert)

        async def alone() -> Response[Any]:
            return created(await repo.create(values))

        async def step(conn: Connection) -> Response[Any]:
            return created(await repo.create_on(conn, values))

        return await _once(request, idempotency, alone, step)

    signature = [keyword("data", json_body(create)), _REQUEST]
    description = 'Responds 201 with the stored row, its URL in `Location` and `ETag: "1"`.'
    if upserts:
        choices = Literal[unique]  # type: ignore[valid-type]
        signature.append(
            query(
                "on_conflict",
                choices | None,
                None,
                description="Upsert: when a row already holds this unique field's value, update that row with the "
                "fields sent instead (200), else insert (201).",
            )
        )
        description += (
            " With `on_conflict=<unique field>`, a row already holding that value is updated with the fields sent "
            "instead (200, its version one more); fields fixed at creation must then match it (else 409)."
        )
    set_signature(create_row, signature, read)
    return post(
        ["/", ""],
        operation_id=operation_id("create", entity),
        summary=f"Create a {entity.singular}",
        description=description,
        status_code=201,
        responses={
            **problem_responses(401, 409, 422, 503),
            **(
                {200: ResponseSpec(read, description="Upsert: the row that held the value, updated.")}
                if upserts
                else {}
            ),
        },
        response_headers=[ETAG_HEADER, REPLAYED_HEADER_DOC, CONSISTENCY_HEADER_DOC],
        operation_class=_IDEMPOTENT,
        opt={STRICT_BODY_OPT: body},
    )(create_row)


def _bulk_handler(resource: Resource, repo: ResourceRepository, idempotency: Idempotency) -> HTTPRouteHandler:
    entity = resource.entity
    create, read = resource.schemas.create, resource.schemas.read
    body = strict_list(create, BULK_MAX_ROWS)

    async def create_rows(**params: Any) -> Any:
        request = params["request"]
        rows = [msgspec.structs.asdict(item) for item in await body(request)]

        async def step(conn: Connection) -> Response[Any]:
            return Response(await repo.create_many_on(conn, rows), status_code=201)

        return await _once(request, idempotency, lambda: repo.unit(step), step)

    # no ``data`` parameter: Litestar would convert the thousand rows once more (laxly); the document takes the body
    # from the operation class instead
    set_signature(create_rows, [_REQUEST], list[read])  # type: ignore[valid-type]
    return post(
        "/bulk",
        operation_id=operation_id("create", entity) + "_bulk",
        summary=f"Create up to {BULK_MAX_ROWS} {entity.name} at once",
        description="One INSERT, all rows or none: 201 with the stored rows in the order sent. A refused row is a "
        "422 naming it by index (`[5].title`), and nothing is stored.",
        status_code=201,
        responses=problem_responses(401, 409, 422, 503),
        response_headers=[REPLAYED_HEADER_DOC, CONSISTENCY_HEADER_DOC],
        operation_class=with_request_body(_IDEMPOTENT, list_body(create, BULK_MAX_ROWS)),
        opt={STRICT_BODY_OPT: body},
    )(create_rows)


def _update_handler(
    resource: Resource, repo: ResourceRepository, idempotency: Idempotency, group: str | None = None
) -> HTTPRouteHandler:
    """PATCH of the row, or with ``group`` of one field group's fields only (``PATCH /{id}/<group>``)."""
    read, entity = resource.schemas.read, resource.entity
    update = resource.schemas.update if group is None else resource.schemas.updates[group]
    fields = update.__struct_fields__
    immutable = frozenset(name for name, spec in entity.fields.items() if spec.immutable)
    path, id_param = id_parameter(resource)
    strict = strict_body(update)

    def tagged(row: Any) -> Response[Any]:
        return Response(row, headers={"ETag": etag(row.version)})

    async def update_row(**params: Any) -> Any:
        request = params["request"]
        expected = expected_version(RawHeaders(request.scope), entity)
        data = await strict(request)
        changes = {name: value for name in fields if (value := getattr(data, name)) is not UNSET}
        row_id = params[id_param.name]

        async def alone() -> Response[Any]:
            return tagged(await repo.update(row_id, changes, expected))

        async def step(conn: Connection) -> Response[Any]:
            return tagged(await repo.update_on(conn, row_id, changes, expected))

        return await _once(request, idempotency, alone, step)

    set_signature(update_row, [id_param, keyword("data", json_body(update)), _REQUEST], read)
    if group is None:
        summary, scope = f"Update a {entity.singular}", ""
        fixed = f" Fixed at creation: {', '.join(sorted(immutable))}." if immutable else ""
    else:
        summary = f"Update a {entity.singular}'s {group.replace('_', ' ')} fields"
        scope, fixed = f" Only these fields: {', '.join(f'`{f}`' for f in fields)}; any other key is a 422.", ""
    return patch(
        path if group is None else f"{path}/{group_path(group)}",
        operation_id=operation_id("update", entity) if group is None else group_operation_id(entity, group),
        summary=summary,
        description="Partial update: only the keys sent change; `{}` changes nothing." + scope + " Every change adds "
        'one to `version` (the answer\'s `ETag`). With `If-Match: "<version>"` the change applies only at that '
        "version, else 412 with the current one."
        + (" This resource requires If-Match (428 without it)." if entity.concurrency == "required" else "")
        + fixed,
        responses=problem_responses(401, 404, 409, 412, 422, *_required(entity), 503),
        response_headers=[ETAG_HEADER, REPLAYED_HEADER_DOC, CONSISTENCY_HEADER_DOC],
        operation_class=_CONDITIONAL,
        opt={"immutable_fields": immutable, STRICT_BODY_OPT: strict},
    )(update_row)


def group_update_handlers(
    resource: Resource, repo: ResourceRepository, idempotency: Idempotency
) -> list[HTTPRouteHandler]:
    """One PATCH per field group the manifest declares (``updates:``)."""
    return [_update_handler(resource, repo, idempotency, group) for group in resource.entity.updates]


def _delete_handler(resource: Resource, repo: ResourceRepository, idempotency: Idempotency) -> HTTPRouteHandler:
    path, id_param = id_parameter(resource)
    entity = resource.entity

    async def delete_row(**params: Any) -> Any:
        request = params["request"]
        expected = expected_version(RawHeaders(request.scope), entity)
        row_id = params[id_param.name]

        async def alone() -> Response[Any]:
            await repo.delete(row_id, expected)
            return Response(None, status_code=204)

        async def step(conn: Connection) -> Response[Any]:
            await repo.delete_on(conn, row_id, expected)
            return Response(None, status_code=204)

        return await _once(request, idempotency, alone, step)

    set_signature(delete_row, [id_param, _REQUEST], None)
    return delete(
        path,
        operation_id=operation_id("delete", entity),
        summary=f"Delete a {entity.singular}",
        description="Rows that reference it are deleted or detached as the manifest says; RESTRICT references "
        'refuse the delete with 409. With `If-Match: "<version>"`, only at that version (else 412).'
        + (" This resource requires If-Match (428 without it)." if entity.concurrency == "required" else ""),
        status_code=204,
        responses=problem_responses(401, 404, 409, 412, 422, *_required(entity), 503),
        response_headers=[CONSISTENCY_HEADER_DOC],
        operation_class=_CONDITIONAL,
    )(delete_row)
