"""The one generic repository: every resource's reads and writes, in SQLAlchemy Core.

One instance per resource, holding that resource's cached statements. Reads take one pooled connection in
AUTOCOMMIT mode and map rows positionally onto the Read struct (one round trip, no ORM session); writes are one
statement with RETURNING inside a transaction. Failures leave as ``flux_dao.errors`` values, never driver errors.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection
from uuid_utils.compat import uuid7

from flux_dao.db import Database
from flux_dao.errors import DatabaseUnavailableError, FieldError, InvalidInputError, NotFoundError
from flux_dao.manifest.spec import BulkUpdateQuery, EntitySpec, GroupedCountQuery, TimeRangeQuery
from flux_dao.repository.compiler import ResourceStatements
from flux_dao.repository.integrity import Violation, classify, diagnose_delete, diagnose_write
from flux_dao.repository.plans import BulkUpdatePlan, GroupedCountPlan, ListPlan, TimeRangePlan
from flux_dao.types import Row, StructType

__all__ = ("Catalog", "ListResult", "ResourceRepository", "as_utc")

T = TypeVar("T")


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (as the earlier service's UTC session did); aware ones are converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ListResult:
    """A page of rows, the filtered total (None when not counted) and whether rows follow the page."""

    items: list[msgspec.Struct]
    total: int | None
    has_more: bool


@dataclass(frozen=True)
class Catalog:
    """Every entity and table of one build: what error diagnosis needs to look across resources."""

    entities: Mapping[str, EntitySpec]
    tables: Mapping[str, sa.Table]


class ResourceRepository:
    """Data access for one resource."""

    def __init__(self, entity: EntitySpec, read: StructType, catalog: Catalog, db: Database) -> None:
        self.entity = entity
        self.name = entity.name
        self.read = read
        self.catalog = catalog
        self.db = db
        self.statements = ResourceStatements(entity, catalog.tables[entity.name])
        self._datetime_fields = tuple(n for n, s in entity.fields.items() if s.type == "datetime")
        self._stamps = entity.timestamps

    # -- reads -------------------------------------------------------------------------------------------------

    async def get(self, row_id: UUID) -> msgspec.Struct:
        """The row with ``row_id``, or :class:`NotFoundError`."""
        async with self._reading() as conn:
            row = (await conn.execute(self.statements.get, {"row_id": row_id})).first()
        if row is None:
            raise self._not_found(row_id)
        return self.read(*row)

    async def list_page(self, plan: ListPlan) -> "ListResult":
        """One page of rows and, if the plan asks, the filtered total.

        The COUNT is skipped when the page itself proves the total: a short page that is not empty (or the first
        page) ends the result, so ``total = offset + len(items)``. Without a count, one extra row is read to tell
        whether another page follows.
        """
        params: dict[str, Any] = {"f_" + name: value for name, value in plan.filters}
        read = self.read
        limit = plan.limit if plan.count else plan.limit + 1
        async with self._reading() as conn:
            rows = await conn.execute(
                self.statements.list(plan.filter_fields), {**params, "limit": limit, "offset": plan.offset}
            )
            items = [read(*row) for row in rows]
            if not plan.count:
                return ListResult(items[: plan.limit], None, len(items) > plan.limit)
            if len(items) < plan.limit and (items or plan.offset == 0):
                total = plan.offset + len(items)
            else:
                total = (await conn.execute(self.statements.count(plan.filter_fields), params)).scalar_one()
        return ListResult(items, total, plan.offset + plan.limit < total)

    async def time_range(self, plan: TimeRangePlan) -> list[msgspec.Struct]:
        """Rows of a time-range query, ascending."""
        query = self.entity.queries[plan.query]
        assert isinstance(query, TimeRangeQuery)  # noqa: S101 (the generator pairs plans with their kind)
        params = self._scope_params(plan.scope) | {"start": as_utc(plan.start), "end": as_utc(plan.end)}
        read = self.read
        async with self._reading() as conn:
            rows = await conn.execute(self.statements.time_range(plan.query, query), params)
            return [read(*row) for row in rows]

    async def grouped_count(self, plan: GroupedCountPlan) -> dict[str, int]:
        """Count per group value (only groups that occur) for a grouped-count query."""
        query = self.entity.queries[plan.query]
        assert isinstance(query, GroupedCountQuery)  # noqa: S101 (the generator pairs plans with their kind)
        params = self._scope_params(plan.scope) | {"start": as_utc(plan.start), "end": as_utc(plan.end)}
        async with self._reading() as conn:
            rows = await conn.execute(self.statements.grouped_count(plan.query, query), params)
            return {str(group): count for group, count in rows}

    # -- writes ------------------------------------------------------------------------------------------------

    async def create(self, values: Row) -> msgspec.Struct:
        """Insert one row; the server sets ``id`` and the timestamps."""
        now = datetime.now(UTC)
        params = self._bind(values) | {"id": uuid7()} | dict.fromkeys(self._stamps, now)

        async def run(conn: AsyncConnection) -> Any:
            return (await conn.execute(self.statements.insert, params)).one()

        row = await self._writing(run, values, None)
        return self.read(*row)

    async def update(self, row_id: UUID, changes: Row) -> msgspec.Struct:
        """Change the given fields of one row; no fields means no write at all."""
        if not changes:
            return await self.get(row_id)
        fields = tuple(changes)
        params = {"v_" + name: value for name, value in self._bind(changes).items()}
        params |= {"row_id": row_id, "v_updated_at": datetime.now(UTC)}

        async def run(conn: AsyncConnection) -> Any:
            return (await conn.execute(self.statements.update(fields), params)).first()

        row = await self._writing(run, changes, row_id)
        if row is None:
            raise self._not_found(row_id)
        return self.read(*row)

    async def delete(self, row_id: UUID) -> None:
        """Delete one row; CASCADE and SET NULL children follow, RESTRICT children refuse it (409)."""

        async def run(conn: AsyncConnection) -> Any:
            return (await conn.execute(self.statements.delete, {"row_id": row_id})).first()

        if await self._writing(run, {}, row_id, deleting=True) is None:
            raise self._not_found(row_id)

    async def bulk_update(self, plan: BulkUpdatePlan) -> int:
        """Set one field on every listed id in one UPDATE; returns how many rows exist among the ids."""
        query = self.entity.queries[plan.query]
        assert isinstance(query, BulkUpdateQuery)  # noqa: S101 (the generator pairs plans with their kind)
        ids = sorted(set(plan.ids))  # de-duplicated, and a stable order
        params = {"ids": ids, "value": plan.value, "v_updated_at": datetime.now(UTC)}

        async def run(conn: AsyncConnection) -> int:
            result = await conn.execute(self.statements.bulk_update(plan.query, query), params)
            return int(result.rowcount)

        return await self._writing(run, {query.field: plan.value}, None)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _bind(self, values: Row) -> Row:
        bound = dict(values)
        for name in self._datetime_fields:
            value = bound.get(name)
            if value is not None:
                bound[name] = as_utc(value)
        return bound

    @staticmethod
    def _scope_params(scope: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
        return {"f_" + name: value for name, value in scope}

    def _not_found(self, row_id: UUID) -> NotFoundError:
        return NotFoundError(f"{self.entity.singular} {row_id} not found.", resource=self.name, id=str(row_id))

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.db.read_engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise self._translate_plain(exc) from exc
        except (OSError, PoolTimeoutError, TimeoutError) as exc:
            raise _unavailable(exc) from exc

    async def _writing(
        self,
        run: Callable[[AsyncConnection], Awaitable[T]],
        values: Row,
        row_id: UUID | None,
        *,
        deleting: bool = False,
    ) -> T:
        """Run ``run`` in a transaction; constraint failures are diagnosed into errors naming their cause."""
        try:
            async with self.db.engine.begin() as conn:
                return await run(conn)
        except DBAPIError as exc:
            violation = classify(exc)
            if violation in {Violation.UNIQUE, Violation.FOREIGN_KEY, Violation.NOT_NULL, Violation.CHECK}:
                raise await self._diagnose(violation, values, row_id, deleting=deleting) from exc
            raise self._translate_plain(exc) from exc
        except (OSError, PoolTimeoutError, TimeoutError) as exc:
            raise _unavailable(exc) from exc

    async def _diagnose(self, violation: Violation, values: Row, row_id: UUID | None, *, deleting: bool) -> Exception:
        catalog = self.catalog
        async with self.db.read_engine.connect() as conn:
            if deleting and row_id is not None:
                return await diagnose_delete(conn, catalog.tables, catalog.entities, self.name, row_id)
            return await diagnose_write(conn, violation, catalog.tables, catalog.entities, self.name, values, row_id)

    def _translate_plain(self, exc: DBAPIError) -> Exception:
        violation = classify(exc)
        if violation is Violation.UNAVAILABLE:
            return _unavailable(exc)
        if violation is Violation.SCHEMA:
            return DatabaseUnavailableError(
                "The database schema does not match this service (not migrated?): run `flux-dao migrate`."
            )
        if violation is Violation.DATA:
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
            field = self.entity.singular or self.name
            return InvalidInputError([FieldError(field, f"rejected by the database: {reason}")])
        return exc


def _unavailable(exc: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"The database is unavailable: {type(exc).__name__}.")
