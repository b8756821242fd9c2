"""Driver errors -> ``flux_dao.errors``, naming the field, the missing id or the dependents.

The two backends report constraint failures differently (PostgreSQL: SQLSTATE and constraint name; SQLite: an error
name and often no detail at all). Rather than parse messages, a failed write is classified by its code and then
*diagnosed* with small follow-up queries, the same way on both backends: which unique value is taken, which parent id
is missing, which RESTRICT dependents block a delete. This runs only on the error path.
"""

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from flux_dao.errors import (
    ConflictError,
    DuplicateError,
    FieldError,
    InvalidInputError,
    MissingReferenceError,
    RepositoryError,
    RestrictedDeleteError,
)
from flux_dao.manifest.spec import EntitySpec
from flux_dao.store.db import Connection, connection_broken

__all__ = ("Dependents", "Violation", "blocking_paths", "classify", "diagnose_delete", "diagnose_write", "refusal")


class Violation(enum.StrEnum):
    """What kind of failure a database error is."""

    UNIQUE = "unique"
    FOREIGN_KEY = "foreign_key"
    NOT_NULL = "not_null"
    CHECK = "check"
    DATA = "data"
    UNAVAILABLE = "unavailable"
    RETRYABLE = "retryable"
    """A deadlock or serialization failure: the statement was rolled back and may simply be run again."""
    SCHEMA = "schema"
    """The table or column is missing: the database is not migrated to this manifest."""
    REFUSED = "refused"
    """A rule in the database itself refused the write (a trigger's RAISE); nothing of the statement was applied."""
    OTHER = "other"


_PG_CODES = {
    "23505": Violation.UNIQUE,
    "23503": Violation.FOREIGN_KEY,
    "23502": Violation.NOT_NULL,
    "23514": Violation.CHECK,
}
_PG_UNAVAILABLE_PREFIXES = ("08", "53", "57", "40")  # connection, resources, timeouts/shutdown, tx rollback
_SQLITE_NAMES = {
    "SQLITE_CONSTRAINT_UNIQUE": Violation.UNIQUE,
    "SQLITE_CONSTRAINT_PRIMARYKEY": Violation.UNIQUE,
    "SQLITE_CONSTRAINT_FOREIGNKEY": Violation.FOREIGN_KEY,
    "SQLITE_CONSTRAINT_NOTNULL": Violation.NOT_NULL,
    "SQLITE_CONSTRAINT_CHECK": Violation.CHECK,
    "SQLITE_CONSTRAINT_TRIGGER": Violation.REFUSED,  # RAISE(ABORT|FAIL|ROLLBACK, ...) in a trigger
    "SQLITE_BUSY": Violation.UNAVAILABLE,
    "SQLITE_LOCKED": Violation.UNAVAILABLE,
    "SQLITE_INTERRUPT": Violation.UNAVAILABLE,  # ran past DB_STATEMENT_TIMEOUT (PostgreSQL: 57014, also a 503)
    "SQLITE_TOOBIG": Violation.DATA,
    "SQLITE_MISMATCH": Violation.DATA,
    "SQLITE_RANGE": Violation.DATA,
}


def classify(exc: BaseException) -> Violation:
    """Classify a failure by SQLSTATE (asyncpg), SQLite error name, or as a lost/unreachable database."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(code, str):
        return _classify_sqlstate(code)
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str):
        if name.startswith("SQLITE_CONSTRAINT") and "FOREIGN KEY" in str(orig):  # RESTRICT reports ..._TRIGGER
            return Violation.FOREIGN_KEY
        if name == "SQLITE_ERROR" and str(orig).startswith(("no such table", "no such column")):
            return Violation.SCHEMA
        return _SQLITE_NAMES.get(name, Violation.OTHER)
    unavailable = (OSError, TimeoutError, PoolTimeoutError, asyncpg.InterfaceError)
    if isinstance(exc, unavailable) or isinstance(orig, unavailable) or (orig is not None and connection_broken(orig)):
        return Violation.UNAVAILABLE
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Violation.UNAVAILABLE
    return Violation.OTHER


def _classify_sqlstate(code: str) -> Violation:
    if code in _PG_CODES:
        return _PG_CODES[code]
    if code in {"42P01", "42703"}:  # undefined table / column
        return Violation.SCHEMA
    if code == "P0001":  # RAISE EXCEPTION in a trigger or function
        return Violation.REFUSED
    if code.startswith("22"):
        return Violation.DATA
    if code in {"40001", "40P01"}:  # serialization failure, deadlock detected
        return Violation.RETRYABLE
    if code.startswith(_PG_UNAVAILABLE_PREFIXES):
        return Violation.UNAVAILABLE
    return Violation.OTHER


def refusal(exc: BaseException) -> str:
    """The message a database rule (a trigger's RAISE) refused a write with."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return str(getattr(orig, "message", None) or orig)


@dataclass(frozen=True)
class Dependents:
    """Rows of ``resource`` that block deleting a row through the chain ``via``."""

    resource: str
    via: tuple[str, ...]
    count: int


Hop = tuple[str, str]
"""(child entity, its reference field)."""


def blocking_paths(entities: Mapping[str, EntitySpec], root: str) -> Iterator[tuple[Hop, ...]]:
    """Reference chains from ``root`` whose last hop is RESTRICT and whose earlier hops CASCADE.

    Deleting a ``root`` row deletes its CASCADE children, theirs in turn, and fails as soon as a RESTRICT reference
    points at any row in that set; these chains are exactly the places to count dependents.
    """

    def walk(target: str, path: tuple[Hop, ...], seen: frozenset[str]) -> Iterator[tuple[Hop, ...]]:
        for child in entities.values():
            for field, spec in child.fields.items():
                if spec.references != target:
                    continue
                hop = (*path, (child.name, field))
                if spec.on_delete == "restrict":
                    yield hop
                elif spec.on_delete == "cascade" and child.name not in seen:
                    yield from walk(child.name, hop, seen | {child.name})

    yield from walk(root, (), frozenset({root}))


async def diagnose_delete(
    conn: Connection, tables: Mapping[str, sa.Table], entities: Mapping[str, EntitySpec], root: str, row_id: UUID
) -> RepositoryError:
    """The error for a delete refused by a foreign key: which dependents block it, and how many."""
    found: list[Dependents] = []
    for path in blocking_paths(entities, root):
        keys: Any = [row_id]  # the ids deleted at each level: the root, then a sub-select per CASCADE hop
        for child, field in path[:-1]:
            keys = sa.select(tables[child].c.id).where(tables[child].c[field].in_(keys))
        child, field = path[-1]
        stmt = sa.select(sa.func.count()).select_from(tables[child]).where(tables[child].c[field].in_(keys))
        count = int(await conn.scalar(stmt, {}))
        if count:
            found.append(Dependents(child, tuple(c for c, _ in path[:-1]), count))
    singular = entities[root].singular
    if not found:
        return ConflictError(f"{singular} {row_id} cannot be deleted: other rows still reference it.")
    parts = [f"{d.count} {d.resource} row(s)" + (f" (through {' -> '.join(d.via)})" if d.via else "") for d in found]
    detail = f"{singular} {row_id} cannot be deleted: it is still referenced by {', '.join(parts)}."
    dependents = [{"resource": d.resource, "count": d.count, "via": list(d.via)} for d in found]
    return RestrictedDeleteError(detail, dependents=dependents)


async def diagnose_write(
    conn: Connection,
    violation: Violation,
    tables: Mapping[str, sa.Table],
    entities: Mapping[str, EntitySpec],
    name: str,
    values: Mapping[str, Any],
    row_id: UUID | None,
) -> RepositoryError | InvalidInputError:
    """The error for an INSERT/UPDATE refused by a constraint."""
    entity = entities[name]
    table = tables[name]
    if violation is Violation.UNIQUE:
        for field, spec in entity.fields.items():
            if not spec.unique or values.get(field) is None:
                continue
            stmt = sa.select(table.c.id).where(table.c[field] == values[field]).limit(1)
            if row_id is not None:
                stmt = stmt.where(table.c.id != row_id)
            if await conn.first(stmt, {}) is not None:
                detail = f"A {entity.singular} with {field} {values[field]!r} already exists."
                return DuplicateError(detail, errors=[{"field": field, "message": "already exists"}])
        return DuplicateError(f"A {entity.singular} with these values already exists.")
    if violation is Violation.FOREIGN_KEY:
        for field, spec in entity.fields.items():
            value = values.get(field)
            if spec.references is None or value is None:
                continue
            parent = tables[spec.references]
            if await conn.first(sa.select(parent.c.id).where(parent.c.id == value), {}) is None:
                target = entities[spec.references].singular
                detail = f"{field} refers to {target} {value}, which does not exist."
                return MissingReferenceError(
                    detail, errors=[{"field": field, "message": f"{target} {value} does not exist"}]
                )
        return ConflictError(f"The {entity.singular} refers to a row that does not exist.")
    message = "value rejected by the database"
    return InvalidInputError([FieldError(entity.singular or name, message)])
