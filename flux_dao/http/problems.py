"""Errors -> ``application/problem+json`` (RFC 9457), one stable ``type`` per kind of error.

Litestar's own exceptions (validation, 404 route, 405, 401) and flux-dao's domain errors all leave through here, so
every error response has the same shape: ``type``, ``title``, ``status``, ``detail``, plus ``errors`` [{field,
message}] for validation and a few named extensions (``dependents``, ``resource``, ``id``).
"""

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from flux_dao.errors import (
    BatchOperationError,
    ChangesExpiredError,
    ConflictError,
    DatabaseUnavailableError,
    DuplicateError,
    FieldError,
    ForbiddenError,
    InvalidCursorError,
    InvalidInputError,
    MissingReferenceError,
    NotFoundError,
    PreconditionFailedError,
    PreconditionRequiredError,
    RateLimitedError,
    RepositoryError,
    RestrictedDeleteError,
)
from flux_dao.http.context import note_problem
from flux_dao.http.signatures import QUERY_ARG_PREFIX

__all__ = (
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPES",
    "Problem",
    "ProblemDependent",
    "ProblemField",
    "exception_handlers",
    "field_errors",
    "problem_body",
    "problem_for",
    "problem_response",
    "problem_responses",
)

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_TYPE_PREFIX: Final = "urn:flux-dao:problem:"

PROBLEM_TYPES: Final[dict[str, tuple[int, str]]] = {
    "validation-error": (422, "Request validation failed"),
    "invalid-cursor": (422, "Invalid list cursor"),
    "unauthorized": (401, "Missing or unknown service key"),
    "forbidden": (403, "Service key lacks the scope"),
    "not-found": (404, "Resource not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "payload-too-large": (413, "Request body too large"),
    "conflict": (409, "Conflict with stored data"),
    "duplicate": (409, "Unique value already taken"),
    "missing-reference": (409, "Referenced row does not exist"),
    "restricted-delete": (409, "Row is still referenced"),
    "precondition-failed": (412, "Row is at another version"),
    "precondition-required": (428, "If-Match required"),
    "changes-expired": (410, "Changes no longer kept"),
    "rate-limited": (429, "Too many requests"),
    "idempotency-key-reused": (422, "Idempotency-Key used for another request"),
    "idempotency-in-progress": (409, "Request with this Idempotency-Key still running"),
    "unavailable": (503, "Database unavailable"),
    "not-ready": (503, "Service not ready"),
    "schema-drift": (503, "Database schema differs from the manifest"),
    "shutting-down": (503, "Service shutting down"),
    "internal-error": (500, "Internal server error"),
    # answered by the HTTP protocol itself, before any app code, and the connection is then closed
    "bad-request": (400, "Malformed HTTP request"),
    "request-timeout": (408, "Request head not received in time"),
    "uri-too-long": (414, "Request line too long"),
    "request-header-too-large": (431, "Request header fields too large"),
    "http-error": (400, "HTTP error"),  # any other status Litestar raises (e.g. 413); the status is the real one
}
"""Every problem ``type`` flux-dao returns (``urn:flux-dao:problem:<slug>``), its status and title. Stable: clients
may switch on them."""


class ProblemField(msgspec.Struct):
    """One invalid field."""

    field: str
    message: str


class ProblemDependent(msgspec.Struct):
    """Rows that block a delete through a RESTRICT reference."""

    resource: str
    count: int
    via: list[str]
    """The CASCADE chain from the deleted row to these rows (empty when they reference it directly)."""


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document.

    The optional members are left out when they do not apply, never null, so the schema does not say they can be
    (generated clients would type them ``None | str | Unset``).
    """

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemField] | msgspec.UnsetType = msgspec.UNSET
    """Per-field problems (validation, duplicates, missing references); on ``schema-drift``, each difference."""
    dependents: list[ProblemDependent] | msgspec.UnsetType = msgspec.UNSET
    """On ``restricted-delete``: what still references the row."""
    resource: str | msgspec.UnsetType = msgspec.UNSET
    """On ``not-found``: the resource asked for."""
    id: str | msgspec.UnsetType = msgspec.UNSET
    """On ``not-found``: the id asked for."""
    scope: str | msgspec.UnsetType = msgspec.UNSET
    """On ``forbidden``: the scope the request needs (``tasks:write``)."""
    operation: int | msgspec.UnsetType = msgspec.UNSET
    """On a batch: the index of the operation that failed (nothing was applied)."""
    version: int | msgspec.UnsetType = msgspec.UNSET
    """On ``precondition-failed``: the row's current version (its ETag is ``"<version>"``)."""
    oldest: int | msgspec.UnsetType = msgspec.UNSET
    """On ``changes-expired``: the position of the oldest change still kept."""
    request_id: str | msgspec.UnsetType = msgspec.UNSET
    """The request's ``X-Request-ID`` (the client's, or one flux-dao made); the log line of the request has it too."""


def problem_response(
    slug: str, detail: str, *, status: int | None = None, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response[Any]:
    """A problem+json response of kind ``slug``."""
    body = problem_body(slug, detail, status=status, request_id=note_problem(slug), **extra)  # counted in /metrics
    return Response(
        content=body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=dict(headers or {})
    )


def problem_body(slug: str, detail: str, *, status: int | None = None, **extra: Any) -> dict[str, Any]:
    """The problem document of kind ``slug``; members of ``extra`` that are None are left out."""
    default_status, title = PROBLEM_TYPES[slug]
    body = {"type": _TYPE_PREFIX + slug, "title": title, "status": status or default_status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI declarations of the problem responses an operation can give."""
    descriptions = {
        401: "Missing or unknown X-Flux-Service-Key.",
        403: "The service key lacks the scope this operation needs (named in `scope`).",
        404: "No row with that id.",
        409: "Conflict: a unique value is taken, a referenced row is missing, or dependents block a delete.",
        410: "The position is older than the changes kept (`FLUX_DAO_CHANGES_RETENTION`); `oldest` is the oldest "
        "kept. Read again without `after` (from the oldest kept) or with `after=now`.",
        412: "If-Match names a version the row is no longer at; `version` is the current one.",
        428: "This resource is changed only with If-Match (`concurrency: required`).",
        422: "Validation failed; `errors` names each field.",
        429: "Over the key's request rate; retry after the Retry-After delay.",
        503: "The database is unavailable; retry after the Retry-After delay.",
    }
    return {
        s: ResponseSpec(Problem, description=descriptions[s], media_type=PROBLEM_MEDIA_TYPE, generate_examples=False)
        for s in statuses
    }


_MSGSPEC_LOCATION: Final = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN_FIELD: Final = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`")
_MISSING_FIELD: Final = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")
_NOT_AN_OBJECT: Final = re.compile(r"^Expected `object`, got `(array|str|int|float|bool|null)`$")
_MISSING_PARAMETER: Final = re.compile(r"^Missing required (?P<kind>\w+) parameter '(?P<field>[^']+)'")


def _field_errors(request: Request[Any, Any, Any], exc: ValidationException) -> list[ProblemField]:
    """Litestar's validation details -> [{field, message}], naming the field even inside a JSON body."""
    immutable: frozenset[str] = request.route_handler.opt.get("immutable_fields", frozenset())
    found: list[ProblemField] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        raw_message = str(item.get("message", "invalid value"))
        match = _MSGSPEC_LOCATION.match(raw_message)
        message = match["message"] if match else raw_message
        path = (match["path"] or "").lstrip(".") if match else ""
        field = path or _public_name(str(item.get("key") or ""), item.get("source"))
        if item.get("source") == "body" and item.get("key") == "data" and not path:
            # the handler's ``data`` keyword failed as a whole: the body is missing or not an object (a field named
            # `data` that fails says `object | null` or names its own type)
            if raw_message == "'data'":
                field, message = "body", "a JSON object body is required"
            elif _NOT_AN_OBJECT.match(raw_message):
                field = "body"
        found.append(_named(field, path, message, immutable))
    if not found:
        missing_parameter = _MISSING_PARAMETER.match(exc.detail or "")
        if missing_parameter:
            message = f"required {missing_parameter['kind']} parameter missing"
            found.append(ProblemField(field=missing_parameter["field"], message=message))
        else:
            found.append(ProblemField(field="body", message=exc.detail or "invalid request"))
    return found


def _named(field: str, path: str, message: str, immutable: frozenset[str] = frozenset()) -> ProblemField:
    """A msgspec problem at ``path`` named by the field it is about (an unknown or missing key names itself)."""
    unknown = _UNKNOWN_FIELD.match(message)
    missing = _MISSING_FIELD.match(message)
    if unknown:
        field = ".".join(p for p in (path, unknown["field"]) if p)
        message = "cannot be changed after creation" if unknown["field"] in immutable and not path else "unknown field"
    elif missing:
        field = ".".join(p for p in (path, missing["field"]) if p)
        message = "required field missing"
    return ProblemField(field=field or "body", message=message)


def field_errors(messages: list[str]) -> list[FieldError]:
    """Msgspec messages with their ``- at `$path``` locations, as errors naming each field."""
    found = []
    for raw in messages:
        match = _MSGSPEC_LOCATION.match(raw)
        message, path = (match["message"], (match["path"] or "").lstrip(".")) if match else (raw, "")
        named = _named(path, path, message)
        found.append(FieldError(named.field, named.message))
    return found


def _public_name(key: str, source: object) -> str:
    """Query parameters reach handlers under a prefixed keyword; clients know them by their own name."""
    if source == "query" and key.startswith(QUERY_ARG_PREFIX):
        return key.removeprefix(QUERY_ARG_PREFIX)
    return key


def _validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = _field_errors(request, exc)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response("validation-error", detail, errors=[msgspec.structs.asdict(e) for e in errors])


def _invalid_input_handler(_: Request[Any, Any, Any], exc: InvalidInputError) -> Response[Any]:
    errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    slug = "invalid-cursor" if isinstance(exc, InvalidCursorError) else "validation-error"
    return problem_response(slug, str(exc), errors=errors)


_REPOSITORY_SLUGS: Final[tuple[tuple[type[RepositoryError], str], ...]] = (
    (NotFoundError, "not-found"),
    (DuplicateError, "duplicate"),
    (MissingReferenceError, "missing-reference"),
    (RestrictedDeleteError, "restricted-delete"),
    (PreconditionFailedError, "precondition-failed"),
    (PreconditionRequiredError, "precondition-required"),
    (ChangesExpiredError, "changes-expired"),
    (ConflictError, "conflict"),
    (DatabaseUnavailableError, "unavailable"),
)


def _repository_handler(_: Request[Any, Any, Any], exc: RepositoryError) -> Response[Any]:
    slug = next((s for cls, s in _REPOSITORY_SLUGS if isinstance(exc, cls)), "internal-error")
    headers = {"Retry-After": "1"} if slug == "unavailable" else None
    if slug == "internal-error":
        logger.error("unmapped repository error: %s", exc.detail)
    return problem_response(slug, exc.detail, headers=headers, **exc.extra)


_HTTP_SLUGS: Final = {401: "unauthorized", 404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


def _http_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 400:  # Litestar's "JSON is malformed" and friends: the body could not be decoded
        return problem_response("validation-error", exc.detail, errors=[{"field": "body", "message": exc.detail}])
    slug = _HTTP_SLUGS.get(exc.status_code, "http-error")
    return problem_response(slug, exc.detail, status=exc.status_code, headers=exc.headers)


def _forbidden_handler(_: Request[Any, Any, Any], exc: ForbiddenError) -> Response[Any]:
    return problem_response("forbidden", str(exc), scope=exc.scope)


def _rate_limited_handler(_: Request[Any, Any, Any], exc: RateLimitedError) -> Response[Any]:
    return problem_response("rate-limited", str(exc), headers={"Retry-After": str(exc.retry_after)})


def _too_deep_handler(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """JSON nested beyond what the decoder can follow (about a thousand levels) is invalid input, not a crash."""
    detail = "The JSON body is nested too deeply."
    return problem_response("validation-error", detail, errors=[{"field": "body", "message": detail}])


def _not_utf8_handler(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    """A body that is not UTF-8 (the JSON decoder raises this rather than a decode error) is invalid input."""
    detail = "The request body is not valid UTF-8."
    return problem_response("validation-error", detail, errors=[{"field": "body", "message": detail}])


def _internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.exception("unhandled error on %s %s", request.method, request.scope.get("path"), exc_info=exc)
    return problem_response("internal-error", "An unexpected error occurred; it has been logged.")


def _batch_operation_handler(request: Request[Any, Any, Any], exc: BatchOperationError) -> Response[Any]:
    response = problem_for(request, exc.cause)
    if isinstance(response.content, dict):
        response.content["operation"] = exc.index
    return response


def problem_for(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The problem response the app's exception handlers give ``exc`` (to store or embed it as sent)."""
    handlers = exception_handlers()
    handler = next(handlers[cls] for cls in type(exc).__mro__ if cls in handlers)
    return handler(request, exc)


def exception_handlers() -> ExceptionHandlersMap:
    """The handlers the flux-dao plugin registers on the app."""
    return {
        ValidationException: _validation_handler,
        InvalidInputError: _invalid_input_handler,
        RepositoryError: _repository_handler,
        ForbiddenError: _forbidden_handler,
        RateLimitedError: _rate_limited_handler,
        BatchOperationError: _batch_operation_handler,
        HTTPException: _http_handler,
        RecursionError: _too_deep_handler,
        UnicodeDecodeError: _not_utf8_handler,
        Exception: _internal_handler,
    }
