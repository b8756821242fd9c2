"""``POST /batch``: writes across resources in one transaction, in order, all applied or none.

Every operation is checked before anything runs: its resource and kind, its scope (403), the references it makes to
earlier operations' results (``"$g1.id"``, ``"$g1.<field>"``). Then they run as steps of one transaction, each
body substituted and validated under the same strict rules as the resource's own routes just before its step. The
first failure rolls everything back, and the answer is that operation's problem with ``operation``, its index.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from msgspec import UNSET

from flux_dao.errors import (
    BatchOperationError,
    FieldError,
    FluxDaoError,
    ForbiddenError,
    InvalidInputError,
    PreconditionRequiredError,
    RepositoryError,
)
from flux_dao.http.auth import KEY_STATE
from flux_dao.http.bodies import STRICT_BODY_OPT, StrictBody, json_body, strict_body
from flux_dao.http.idempotency import Idempotency
from flux_dao.http.keys import ServiceKey, required_scope
from flux_dao.http.openapi import (
    CONSISTENCY_HEADER_DOC,
    IDEMPOTENCY_KEY,
    REPLAYED_HEADER_DOC,
    FluxOperation,
    with_headers,
)
from flux_dao.http.preconditions import if_match
from flux_dao.http.problems import field_errors, problem_responses
from flux_dao.schema.resources import Resource
from flux_dao.store import ResourceRepository, atomically
from flux_dao.store.db import Connection, Database
from flux_dao.types import JsonObject, RequestStruct

__all__ = ("BATCH_MAX_OPERATIONS", "batch_handler")

BATCH_MAX_OPERATIONS: Final = 1000
_REF: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ROW_FIELD: Final = re.compile(r"^\[(\d+)\]\.")
_REFERENCE: Final = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]{0,62})\.([a-z_][a-z0-9_]*)$")
"""A string standing for a field of an earlier operation's row: ``$g1.id``. ``$$`` starts a literal ``$``."""


class BatchOperation(RequestStruct, kw_only=True, forbid_unknown_fields=True):
    """One write of a batch."""

    op: Literal["create", "update", "delete"]
    resource: Annotated[str, msgspec.Meta(description="The resource's name (`tasks`) or path (`notification-log`).")]
    id: Annotated[
        str | None, msgspec.Meta(description='The row to update or delete: its id, or `"$<ref>.id"` of an earlier one.')
    ] = None
    body: JsonObject | None = None
    """What to create, or the fields to change; ``"$<ref>.<field>"`` strings are replaced."""
    ref: Annotated[str | None, msgspec.Meta(description="A name later operations use to refer to this one's row.")] = (
        None
    )
    if_match: Annotated[
        str | None, msgspec.Meta(description='The version an update or delete applies at, as in If-Match: `"3"`.')
    ] = None


class BatchRequest(RequestStruct, kw_only=True, forbid_unknown_fields=True):
    """Writes to run as one transaction, in order."""

    operations: Annotated[list[BatchOperation], msgspec.Meta(min_length=1, max_length=BATCH_MAX_OPERATIONS)]


class BatchResult(msgspec.Struct):
    """What one operation did: its status as its own route would answer, and its row (null for a delete)."""

    status: int
    row: JsonObject | None


class BatchResponse(msgspec.Struct):
    """One result per operation, in order."""

    results: list[BatchResult]


@dataclass(frozen=True, slots=True)
class _Target:
    """A resource a batch can write: its generated classes, its repository, its body readers."""

    resource: Resource
    repo: ResourceRepository
    create: StrictBody
    update: StrictBody


def batch_handler(
    resources: tuple[Resource, ...],
    repositories: Mapping[str, ResourceRepository],
    db: Database,
    idempotency: Idempotency,
) -> HTTPRouteHandler:
    """The batch route over every resource of the manifest."""
    targets: dict[str, _Target] = {}
    for resource in resources:
        entity = resource.entity
        target = _Target(
            resource,
            repositories[entity.name],
            strict_body(resource.schemas.create),
            strict_body(resource.schemas.update),
        )
        targets[entity.name] = target
        targets.setdefault(entity.path or entity.name, target)
    body = strict_body(BatchRequest)

    async def run_batch(data: json_body(BatchRequest), request: Request[Any, Any, Any]) -> Response[BatchResponse]:  # type: ignore[valid-type]
        batch: BatchRequest = await body(request)
        _check(batch.operations, targets, request.scope.get("state", {}).get(KEY_STATE))
        progress = _Progress()  # the operation running: the one a failure is about

        async def step(conn: Connection) -> Response[Any]:
            return Response(await _run(conn, batch.operations, targets, progress))

        def refine(exc: FluxDaoError) -> FluxDaoError:
            return exc if isinstance(exc, BatchOperationError) else progress.failed(exc)

        key = idempotency.key(request)
        try:
            if key is None:
                return await atomically(db, step)
            return await idempotency.run(request, key, step, refine)
        except FluxDaoError as exc:
            raise refine(exc) from exc

    return post(
        "/batch",
        operation_id="batch",
        summary="Run writes across resources as one transaction",
        description=f"Up to {BATCH_MAX_OPERATIONS} creates, updates and deletes, in order, all applied or none. An "
        'operation names an earlier one\'s row with `"$<ref>.<field>"` (`"$g1.id"`) in its `id` or body. 200 with '
        "one result per operation; if any fails, nothing is applied and the answer is that operation's problem, "
        "with `operation` holding its index. Each operation needs the write scope of its resource.",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 412, 422, 428, 503),
        response_headers=[REPLAYED_HEADER_DOC, CONSISTENCY_HEADER_DOC],
        operation_class=with_headers(FluxOperation, IDEMPOTENCY_KEY),
        opt={STRICT_BODY_OPT: body, "resource": None},
        tags=["batch"],
    )(run_batch)


def _check(operations: list[BatchOperation], targets: Mapping[str, _Target], key: ServiceKey | None) -> None:
    """Refuse, before anything runs, an operation that cannot run (see ``_check_one``)."""
    refs: dict[str, str] = {}  # ref -> the resource of its row
    for index, operation in enumerate(operations):
        try:
            _check_one(index, operation, targets, key, refs)
        except BatchOperationError:
            raise
        except FluxDaoError as exc:
            raise BatchOperationError(index, exc) from exc


def _check_one(
    index: int, operation: BatchOperation, targets: Mapping[str, _Target], key: ServiceKey | None, refs: dict[str, str]
) -> None:
    """Refuse one operation that cannot run; note its ``ref``.

    Refused: an unknown resource or kind, a missing scope, a missing or extra id or body, a missing If-Match where
    the resource requires it, a reference to no earlier row.
    """
    target = targets.get(operation.resource)
    if target is None:
        _invalid(index, "resource", f"no resource {operation.resource!r}: one of {', '.join(_names(targets))}")
        return
    entity = target.resource.entity
    if operation.op not in entity.operations:
        _invalid(index, "op", f"{entity.name} do not allow {operation.op}")
    if key is not None and not key.allows(needed := required_scope(entity.name, "POST")):
        raise ForbiddenError(key.name, needed)
    creating = operation.op == "create"
    if (operation.id is None) != creating:
        _invalid(index, "id", "not for create" if creating else "required for update and delete")
    if (operation.body is None) != (operation.op == "delete"):
        _invalid(index, "body", "not for delete" if operation.body is not None else "required for create and update")
    if operation.if_match is not None and creating:
        _invalid(index, "if_match", "not for create")
    if operation.if_match is None and not creating and entity.concurrency == "required":
        detail = f"{entity.name} are changed only at a known version (concurrency: required): send if_match."
        raise PreconditionRequiredError(detail, resource=entity.name)
    for where, value in _strings(operation):
        _check_reference(index, where, value, refs, targets)
    if operation.ref is not None:
        if not _REF.match(operation.ref) or operation.ref in refs:
            _invalid(index, "ref", "must be a new name of letters, digits and _")
        if operation.op != "delete":
            refs[operation.ref] = entity.name


def _check_reference(
    index: int, where: str, value: str, refs: Mapping[str, str], targets: Mapping[str, _Target]
) -> None:
    match = _REFERENCE.match(value)
    if match is None:
        return
    ref, field = match[1], match[2]
    if ref not in refs:
        _invalid(index, where, f"refers to {ref!r}, which no earlier create or update names (write $$ for a literal $)")
    if field not in targets[refs[ref]].resource.entity.read_columns:
        _invalid(index, where, f"{refs[ref]} have no field {field!r}")


def _strings(operation: BatchOperation) -> list[tuple[str, str]]:
    """Every string of the operation's id and body, with where it sits (``body.goal_id``)."""
    found = [("id", operation.id)] if operation.id is not None else []
    pending: list[tuple[str, Any]] = [(f"body.{k}", v) for k, v in (operation.body or {}).items()]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            found.append((where, value))
        elif isinstance(value, dict):
            pending.extend((f"{where}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
    return found


def _located(index: int, exc: FluxDaoError) -> FluxDaoError:
    """``exc`` with the fields it names placed in the batch (``operations[6].body.email``), as validation names them."""
    at = f"operations[{index}].body."
    if isinstance(exc, InvalidInputError):
        return InvalidInputError(
            [e if e.field.startswith("operations[") else FieldError(at + e.field, e.message) for e in exc.errors]
        )
    if isinstance(exc, RepositoryError) and exc.extra.get("errors"):
        errors = [{**error, "field": at + str(error["field"])} for error in exc.extra["errors"]]
        return type(exc)(exc.detail, **{**exc.extra, "errors": errors})
    return exc


def _invalid(index: int, member: str, message: str) -> Any:
    raise BatchOperationError(index, InvalidInputError([FieldError(f"operations[{index}].{member}", message)]))


def _names(targets: Mapping[str, _Target]) -> list[str]:
    return sorted({target.resource.entity.name for target in targets.values()})


async def _run(
    conn: Connection, operations: list[BatchOperation], targets: Mapping[str, _Target], progress: "_Progress"
) -> BatchResponse:
    """Every operation in order, each answered as its own route would.

    Consecutive creates of one resource that do not refer to each other go in as one statement
    (``create_many_on``): a goal and its ten tasks are two INSERTs, not eleven round trips.
    """
    rows: dict[str, msgspec.Struct] = {}
    results: list[BatchResult] = []
    index = 0
    while index < len(operations):
        group = _creates_together(operations, index, targets)
        if len(group) > 1:
            created = await _create_group(conn, operations, group, targets, rows, progress)
            done: list[tuple[BatchOperation, msgspec.Struct | None, int]] = [
                (operations[i], row, 201) for i, row in zip(group, created, strict=True)
            ]
        else:
            progress.index, progress.group = index, None
            row, status = await _apply(conn, index, operations[index], targets[operations[index].resource], rows)
            done = [(operations[index], row, status)]
        for operation, made, status in done:
            if operation.ref is not None and made is not None:
                rows[operation.ref] = made
            results.append(BatchResult(status, None if made is None else msgspec.to_builtins(made)))
        index += len(done)
    return BatchResponse(results)


@dataclass(slots=True)
class _Progress:
    """Where the batch is: the operation running, or the group of creates inserted together."""

    index: int = 0
    group: list[int] | None = None

    def failed(self, exc: FluxDaoError) -> BatchOperationError:
        """``exc`` as the failure of the operation it is about (in a group: the row it names, ``[3].title``)."""
        index = self.index
        if self.group is not None:
            found = _row_named(exc)
            if found is not None:
                index, exc = self.group[found[0]], found[1]
        return BatchOperationError(index, _located(index, exc))


def _row_named(exc: FluxDaoError) -> tuple[int, FluxDaoError] | None:
    """The row of a bulk insert ``exc`` names (``[3].title``), and ``exc`` naming the field alone."""
    if isinstance(exc, InvalidInputError):
        fields = [e.field for e in exc.errors]
    elif isinstance(exc, RepositoryError):
        fields = [str(e["field"]) for e in exc.extra.get("errors", [])]
    else:
        return None
    match = _ROW_FIELD.match(fields[0]) if fields else None
    if match is None:
        return None
    prefix = f"[{match[1]}]."
    if isinstance(exc, InvalidInputError):
        return int(match[1]), InvalidInputError(
            [FieldError(e.field.removeprefix(prefix), e.message) for e in exc.errors]
        )
    assert isinstance(exc, RepositoryError)  # noqa: S101 (the two kinds above)
    errors = [{**e, "field": str(e["field"]).removeprefix(prefix)} for e in exc.extra["errors"]]
    return int(match[1]), type(exc)(exc.detail.removeprefix(f"{prefix[:-1]}: "), **{**exc.extra, "errors": errors})


def _creates_together(operations: list[BatchOperation], start: int, targets: Mapping[str, _Target]) -> list[int]:
    """The operations from ``start`` that can be inserted in one statement.

    Consecutive creates of one resource, none of them referring to another's row.
    """
    first = operations[start]
    if first.op != "create":
        return [start]
    target, group, made = targets[first.resource], [start], {first.ref}
    for index in range(start + 1, len(operations)):
        operation = operations[index]
        if operation.op != "create" or targets[operation.resource] is not target:
            break
        if any((m := _REFERENCE.match(value)) and m[1] in made for _, value in _strings(operation)):
            break
        group.append(index)
        made.add(operation.ref)
    return group


async def _create_group(
    conn: Connection,
    operations: list[BatchOperation],
    group: list[int],
    targets: Mapping[str, _Target],
    rows: Mapping[str, msgspec.Struct],
    progress: _Progress,
) -> list[msgspec.Struct]:
    target = targets[operations[group[0]].resource]
    values = []
    for index in group:
        progress.index, progress.group = index, None
        body = _substituted(operations[index].body or {}, rows)
        values.append(msgspec.structs.asdict(_converted(target.create, body, f"operations[{index}].body")))
    progress.index, progress.group = group[0], group
    return await target.repo.create_many_on(conn, values)


async def _apply(
    conn: Connection, index: int, operation: BatchOperation, target: _Target, rows: Mapping[str, msgspec.Struct]
) -> tuple[msgspec.Struct | None, int]:
    repo, at = target.repo, f"operations[{index}].body"
    row_id = _row_id(index, operation.id, rows) if operation.id is not None else None
    if operation.op == "delete":
        assert row_id is not None  # noqa: S101 (checked before the batch ran)
        await repo.delete_on(conn, row_id, _expected(index, operation))
        return None, 204
    body = _substituted(operation.body or {}, rows)
    if operation.op == "create":
        values = msgspec.structs.asdict(_converted(target.create, body, at))
        return await repo.create_on(conn, values), 201
    assert row_id is not None  # noqa: S101 (checked before the batch ran)
    data = _converted(target.update, body, at)
    changes = {name: value for name in data.__struct_fields__ if (value := getattr(data, name)) is not UNSET}
    return await repo.update_on(conn, row_id, changes, _expected(index, operation)), 200


def _converted(reader: StrictBody, body: dict[str, Any], at: str) -> Any:
    value, problems = reader.convert(body, at)
    if problems:
        raise InvalidInputError(field_errors([problem["message"] for problem in problems]))
    return value


def _expected(index: int, operation: BatchOperation) -> int | None:
    return None if operation.if_match is None else if_match(operation.if_match, f"operations[{index}].if_match")


def _row_id(index: int, raw: str, rows: Mapping[str, msgspec.Struct]) -> UUID:
    value = _resolved(raw, rows)
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise InvalidInputError([FieldError(f"operations[{index}].id", "must be a UUID")]) from None


def _resolved(value: str, rows: Mapping[str, msgspec.Struct]) -> Any:
    if value.startswith("$$"):
        return value[1:]
    match = _REFERENCE.match(value)
    if match is None:
        return value
    return getattr(rows[match[1]], match[2])


def _substituted(value: Any, rows: Mapping[str, msgspec.Struct]) -> Any:
    """``value`` with each reference string replaced by the JSON form of what it names."""
    if isinstance(value, str):
        resolved = _resolved(value, rows)
        return resolved if isinstance(resolved, str) else msgspec.to_builtins(resolved)
    if isinstance(value, dict):
        return {key: _substituted(item, rows) for key, item in value.items()}
    if isinstance(value, list):
        return [_substituted(item, rows) for item in value]
    return value
