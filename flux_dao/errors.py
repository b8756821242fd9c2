"""The flux-dao error tree.

Domain errors raised by the manifest loader and the repository. Nothing here knows about HTTP:
``flux_dao.http.problems`` maps each class to an RFC 9457 problem with a stable type slug.
"""

from collections.abc import Sequence
from typing import Any

__all__ = (
    "BatchOperationError",
    "ChangesExpiredError",
    "ConflictError",
    "DatabaseUnavailableError",
    "DatabaseUnreachableError",
    "DuplicateError",
    "FieldError",
    "FluxDaoError",
    "ForbiddenError",
    "InvalidCursorError",
    "InvalidInputError",
    "ManifestError",
    "MissingReferenceError",
    "NotFoundError",
    "PreconditionFailedError",
    "PreconditionRequiredError",
    "RateLimitedError",
    "RepositoryError",
    "RestrictedDeleteError",
    "TransferError",
)


class FluxDaoError(Exception):
    """Root of every error flux-dao raises on purpose."""


class DatabaseUnreachableError(FluxDaoError):
    """The configured database cannot be connected to (at start-up, migrating); one line naming where and why."""


class ManifestError(FluxDaoError):
    """The manifest is unreadable or inconsistent; the message names the file, entity and field."""


class TransferError(FluxDaoError):
    """An export or import cannot go on: a stream out of order, a conflict under ``--on-conflict fail``.

    The message names the file, the line and what to do about it.
    """


class RepositoryError(FluxDaoError):
    """A data-access operation could not be carried out as asked."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(RepositoryError):
    """No row of that resource has that id."""


class ConflictError(RepositoryError):
    """The change contradicts data already stored (HTTP 409)."""


class DuplicateError(ConflictError):
    """A unique constraint would be violated."""


class MissingReferenceError(ConflictError):
    """A reference field names a parent row that does not exist."""


class RestrictedDeleteError(ConflictError):
    """Other rows still reference the row being deleted through a RESTRICT relation."""


class PreconditionFailedError(RepositoryError):
    """A conditional write (``If-Match``) named a version the row is not at (HTTP 412).

    ``extra`` holds the current ``version``.
    """


class PreconditionRequiredError(RepositoryError):
    """A write to a resource declared ``concurrency: required`` did not name the version it changes (HTTP 428)."""


class ChangesExpiredError(RepositoryError):
    """A change-feed position older than the changes still kept (HTTP 410).

    ``extra`` holds ``oldest``: the position of the oldest change kept (absent when none is).
    """


class DatabaseUnavailableError(RepositoryError):
    """The database cannot be reached or did not answer in time (HTTP 503)."""


class FieldError(Exception):
    """One invalid field in a request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidInputError(FluxDaoError):
    """The request is well-formed JSON but breaks a rule the schema cannot express (HTTP 422)."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class InvalidCursorError(InvalidInputError):
    """A list cursor that is malformed, changed, or made for other filters or another sort (HTTP 422)."""


class ForbiddenError(FluxDaoError):
    """A known service key without the scope the request needs (HTTP 403)."""

    def __init__(self, key_name: str, scope: str) -> None:
        super().__init__(f"The service key {key_name!r} lacks the scope {scope}.")
        self.key_name = key_name
        self.scope = scope


class RateLimitedError(FluxDaoError):
    """A caller over its request rate (HTTP 429); ``retry_after`` is in whole seconds."""

    def __init__(self, caller: str, retry_after: int) -> None:
        super().__init__(f"Too many requests from {caller!r}; retry after {retry_after} s.")
        self.retry_after = retry_after


class BatchOperationError(FluxDaoError):
    """One operation of a batch failed (its index), so none was applied; answered as ``cause`` is."""

    def __init__(self, index: int, cause: FluxDaoError) -> None:
        super().__init__(f"operation {index}: {cause}")
        self.index = index
        self.cause = cause
