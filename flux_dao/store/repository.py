"""The one generic repository: every resource's reads and writes, as SQLAlchemy Core statements.

One instance per resource, holding that resource's cached statements. Every operation runs on one pooled
connection, as one statement where it can: a list page adds a COUNT only when it needs one, a second statement when
its order starts with a nullable column (values, then nulls), and one statement per embed level, whatever the number
of rows. Rows map positionally onto the Read struct without re-validation. Values are checked for what the
databases would refuse differently (out-of-range datetimes, NUL characters) before they are sent, and every failure
leaves as a ``flux_dao.errors`` value.
"""

import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from uuid import UUID

import msgspec
from uuid_utils.compat import uuid7

from flux_dao.errors import (
    ConflictError,
    DatabaseUnavailableError,
    DuplicateError,
    FieldError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
    RepositoryError,
)
from flux_dao.manifest.relations import Embed
from flux_dao.manifest.spec import VERSION, BulkUpdateQuery, EntitySpec, GroupedCountQuery, TimeRangeQuery
from flux_dao.query.compiler import ResourceStatements
from flux_dao.query.plans import (
    WHOLE_ROWS,
    BulkUpdatePlan,
    EmbedPlan,
    GroupedCountPlan,
    ListPlan,
    ReadPlan,
    TimeRangePlan,
)
from flux_dao.schema.resources import Catalog
from flux_dao.store.db import Connection, Database, StatementError, read_retrying, statement_unsent
from flux_dao.store.integrity import Violation, classify, diagnose_delete, diagnose_write, refusal
from flux_dao.store.standby import Standby
from flux_dao.types import Row, StructType

__all__ = ("ListResult", "ResourceRepository", "WriteError", "as_utc", "atomically")

T = TypeVar("T")

WRITE_ATTEMPTS: Final = 3
"""Tries for a write that hit a deadlock, a serialization failure or a link broken before it was sent."""

_TEXT_TYPES = frozenset({"string", "enum", "json", "list"})


def as_utc(value: datetime, field: str) -> datetime:
    """Naive datetimes are taken as UTC (as the earlier service's UTC session did); aware ones are converted.

    Raises:
        InvalidInputError: the instant falls outside the years 1..9999 once in UTC.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError([FieldError(field, "datetime is out of range once converted to UTC")]) from None


MAX_JSON_DEPTH: Final = 100
"""Deepest nesting of objects and arrays a JSON or list field may hold. Far below what every layer (the JSON codecs,
the databases) can follow from inside a request, so whatever is stored can always be read back."""

_INFINITE_ON_POSTGRES: Final = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
"""asyncpg sends these two instants as PostgreSQL's -infinity/infinity, which read back as naive datetimes: refused
on both backends alike (comparing against them in a query is fine)."""
_EXTREME_MESSAGE: Final = "must lie strictly between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"
_NUL_MESSAGE: Final = "must not contain NUL (U+0000) characters"
_DEPTH_MESSAGE: Final = f"must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep"


def _unstorable(value: Any) -> str | None:
    """Why a text or JSON value cannot be stored alike on both backends, or None.

    A string, or any key or string inside a JSON value, holding U+0000 (PostgreSQL cannot store it), or JSON nested
    deeper than ``MAX_JSON_DEPTH``. Walks without recursion, so a deep value cannot exhaust the stack here.
    """
    if isinstance(value, str):
        return _NUL_MESSAGE if "\x00" in value else None
    if value is None:
        return None
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return _NUL_MESSAGE
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return _DEPTH_MESSAGE
            if isinstance(item, dict):
                if any("\x00" in key for key in item):
                    return _NUL_MESSAGE
                item = item.values()
            pending.extend((child, depth + 1) for child in item)
    return None


@dataclass(frozen=True, slots=True)
class ListResult:
    """A page of rows, the filtered total (None when not counted) and whether rows follow the page."""

    items: list[msgspec.Struct]
    total: int | None
    has_more: bool


class ResourceRepository:
    """Data access for one resource."""

    def __init__(
        self,
        entity: EntitySpec,
        read: StructType,
        catalog: Catalog,
        db: Database,
        registry: Mapping[str, "ResourceRepository"] | None = None,
        standby: Standby | None = None,
    ) -> None:
        self.entity = entity
        self.relations: Mapping[str, Embed] = catalog.embeds.get(entity.name, {})
        self.registry: Mapping[str, ResourceRepository] = registry if registry is not None else {entity.name: self}
        """Every resource's repository by name (embeds read other resources' rows); filled in by the builder."""
        self.name = entity.name
        self.read = read
        self.catalog = catalog
        self.db = db
        self.standby = standby
        """Where plain reads go when ``DATABASE_READ_URL`` is set (``flux_dao.store.standby``)."""
        self.statements = ResourceStatements(entity, catalog.tables[entity.name], postgres=db.is_postgres)
        fields = entity.fields.items()
        self._datetime_fields = tuple(n for n, s in fields if s.type == "datetime")
        self._float_fields = tuple(n for n, s in fields if s.type == "float")
        self._text_fields = tuple(n for n, s in fields if s.type in _TEXT_TYPES)
        self._stamps = entity.timestamps
        # SQLite's RETURNING hands back an integral REAL as an int (GET reads it as a float): written rows are fixed
        columns = entity.read_columns
        self._float_positions = () if db.is_postgres else tuple(columns.index(n) for n in self._float_fields)

    # -- reads -------------------------------------------------------------------------------------------------

    async def get(self, row_id: UUID, read: ReadPlan = WHOLE_ROWS, *, primary: bool = False) -> msgspec.Struct:
        """The row with ``row_id`` and the embeds ``read`` asks for, or :class:`NotFoundError`.

        ``primary``: read it on the primary even when reads may go to a standby (a write's own read).
        """
        statement, params = self.statements.get, {"row_id": row_id}

        async def run(conn: Connection) -> Any:
            row = await conn.first(statement, params)
            if row is None or not read.embeds:
                return row
            found = self.read(*row)
            await self._embed(conn, [found], read.embeds)
            return found

        row = await self._reading(run, routed=not primary)
        if row is None:
            raise self._not_found(row_id)
        return row if isinstance(row, msgspec.Struct) else self.read(*row)

    async def list_page(self, plan: ListPlan) -> ListResult:
        """One page of rows (and their embeds) and, if the plan asks, the filtered total.

        One row more than the page is read, to tell whether another page follows. The COUNT is skipped when the
        page itself proves the total: without a cursor, a last page that is not empty (or the first page) ends the
        result, so ``total = offset + len(items)``.
        """
        params = self.statements.params(plan.conditions) | {"offset": plan.offset}
        read, embeds, wanted = self.read, plan.read.embeds, plan.limit + 1
        parts = [(part.statement, params | part.positions) for part in self.statements.rows(plan)]
        count_statement = self.statements.count(plan.conditions) if plan.count else None

        async def run(conn: Connection) -> ListResult:
            rows: list[Any] = []
            for statement, bound in parts:  # the next part only while the page is not full
                rows += await conn.all(statement, bound | {"limit": wanted - len(rows)})
                if len(rows) >= wanted:
                    break
            items = [read(*row) for row in rows[: plan.limit]]
            more = len(rows) > plan.limit
            if embeds and items:
                await self._embed(conn, items, embeds)
            if count_statement is None:
                return ListResult(items, None, more)
            if not more and plan.after is None and (items or plan.offset == 0):
                return ListResult(items, plan.offset + len(items), more)
            return ListResult(items, int(await conn.scalar(count_statement, params)), more)

        return await self._reading(run)

    async def time_range(self, plan: TimeRangePlan) -> list[msgspec.Struct]:
        """Rows of a time-range query (and their embeds), ascending."""
        query = self.entity.queries[plan.query]
        assert isinstance(query, TimeRangeQuery)  # noqa: S101 (the handler pairs plans with their kind)
        params = self._filter_params(plan.scope) | {"start": plan.start, "end": plan.end}
        params |= self.statements.params(plan.conditions)
        read, statement = self.read, self.statements.time_range(plan.query, query, plan.conditions)
        embeds = plan.read.embeds

        async def run(conn: Connection) -> list[msgspec.Struct]:
            items = [read(*row) for row in await conn.all(statement, params)]
            if embeds and items:
                await self._embed(conn, items, embeds)
            return items

        return await self._reading(run)

    async def _embed(self, conn: Connection, rows: list[msgspec.Struct], plans: tuple[EmbedPlan, ...]) -> None:
        """Attach each embed of ``plans`` to ``rows``: one statement per embed and level, whatever the row count."""
        for plan in plans:
            embed = self.relations[plan.name]
            child = self.registry[embed.target]
            key = "id" if embed.many else embed.via
            parent_ids = list(dict.fromkeys(v for row in rows if (v := getattr(row, key)) is not None))
            children: list[msgspec.Struct] = []
            if parent_ids:
                statement = self.statements.embed(embed, child.statements, plan.conditions)
                params = child.statements.params(plan.conditions)
                params |= {"parent_ids": parent_ids, "per_parent": plan.limit}
                children = [child.read(*row) for row in await conn.all(statement, params)]
                if plan.embeds and children:
                    await child._embed(conn, children, plan.embeds)
            if embed.many:
                groups: dict[Any, list[msgspec.Struct]] = {}
                for item in children:
                    groups.setdefault(getattr(item, embed.via), []).append(item)
                for row in rows:
                    setattr(row, plan.name, groups.get(row.id, []))  # type: ignore[attr-defined]
            else:
                by_id = {item.id: item for item in children}  # type: ignore[attr-defined]
                for row in rows:
                    setattr(row, plan.name, by_id.get(getattr(row, embed.via)))

    async def grouped_count(self, plan: GroupedCountPlan) -> dict[str, int]:
        """Count per group value (only groups that occur) for a grouped-count query."""
        query = self.entity.queries[plan.query]
        assert isinstance(query, GroupedCountQuery)  # noqa: S101 (the generator pairs plans with their kind)
        params = self._filter_params(plan.scope) | {"start": plan.start, "end": plan.end}
        statement = self.statements.grouped_count(plan.query, query)

        async def run(conn: Connection) -> dict[str, int]:
            return {str(group): int(count) for group, count in await conn.all(statement, params)}

        return await self._reading(run)

    # -- writes ------------------------------------------------------------------------------------------------
    # Each write is a ``*_on(conn, ...)`` step on a given connection: run alone by the public method (one statement,
    # on a connection of its own), or as one step of a transaction (``atomically``: a batch, an idempotent request).

    async def create(self, values: Row) -> msgspec.Struct:
        """Insert one row; the server sets ``id``, the timestamps and ``version`` 1."""
        return await self._writing(lambda conn: self.create_on(conn, values))

    async def create_on(self, conn: Connection, values: Row) -> msgspec.Struct:
        """:meth:`create` as a step on ``conn``."""
        params = self._bind(values) | {"id": uuid7(), VERSION: 1} | dict.fromkeys(self._stamps, datetime.now(UTC))
        return self._written(await self._step(conn.first(self.statements.insert, params), values))

    async def create_many_on(self, conn: Connection, rows: list[Row]) -> list[msgspec.Struct]:
        """Insert ``rows`` all at once, in their order; a row the database refuses is named by its index.

        PostgreSQL: one statement whatever the count (``insert_many``). SQLite: the one-row INSERT, prepared once,
        run per row on the connection's transaction: in-process calls, and a VALUES list of a thousand rows would
        cost SQLite more to parse than to run.
        """
        self._refuse_repeated_unique_values(rows)
        now = datetime.now(UTC)
        stamps = dict.fromkeys(self._stamps, now)
        bound: list[Row] = []
        for index, values in enumerate(rows):
            try:
                bound.append(self._bind(values) | {"id": uuid7(), VERSION: 1} | stamps)
            except InvalidInputError as exc:
                raise _at_index(exc, index) from None
        try:
            stored: list[Any]
            if self.db.is_postgres:
                rows_json = msgspec.json.encode(bound).decode()
                stored = list(await conn.all(self.statements.insert_many(), {"rows": rows_json}))
                by_id = {row[0]: row for row in stored}
                stored = [by_id[values["id"]] for values in bound]
            else:
                stored = [await conn.first(self.statements.insert, values) for values in bound]
        except Exception as exc:
            raise WriteError(exc, self, {}, None, deleting=False, rows=rows) from exc
        return [self._written(row) for row in stored]

    def _refuse_repeated_unique_values(self, rows: list[Row]) -> None:
        """Two rows of one bulk with the same value of a unique field: 409 naming the second, before any write."""
        for field, spec in self.entity.fields.items():
            if not spec.unique:
                continue
            first: dict[Any, int] = {}
            for index, values in enumerate(rows):
                value = values.get(field)
                if value is None:
                    continue
                if value in first:
                    message = f"same {field} as [{first[value]}]"
                    detail = f"Rows [{first[value]}] and [{index}] have the same {field} {value!r}."
                    raise DuplicateError(detail, errors=[{"field": f"[{index}].{field}", "message": message}])
                first[value] = index

    async def upsert_on(
        self, conn: Connection, values: Row, field: str, sent: tuple[str, ...]
    ) -> tuple[msgspec.Struct, bool]:
        """Insert ``values``, or update the row already holding ``values[field]`` with the ``sent`` fields.

        Returns the row and whether it was inserted (an update leaves its version at 2 or more). Fields fixed at
        creation must match the stored row's: else :class:`ConflictError` naming them.
        """
        fields = self.entity.fields
        changed = tuple(name for name in sent if name != field and not fields[name].immutable)
        fixed = tuple(name for name in sent if name != field and fields[name].immutable)
        params = self._bind(values) | {"id": uuid7(), VERSION: 1} | dict.fromkeys(self._stamps, datetime.now(UTC))
        statement = self.statements.upsert(field, changed, fixed)
        row = await self._step(conn.first(statement, params), values)
        if row is None:
            names = ", ".join(fixed)
            detail = f"The {self.entity.singular} with this {field} has other values for {names}, fixed at creation."
            raise ConflictError(detail, resource=self.name)
        written = self._written(row)
        return written, getattr(written, VERSION) == 1

    async def unit(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``body``'s steps as one transaction (see :func:`atomically`)."""
        return await atomically(self.db, body)

    async def alone(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``body``, a step of one statement (atomic by itself), on a connection of its own: no transaction."""
        return await self._writing(body)

    async def update(self, row_id: UUID, changes: Row, expected: int | None = None) -> msgspec.Struct:
        """Change the given fields of one row (its version goes up by one); no fields means no write at all.

        With ``expected``, only while the row is at that version, checked by the UPDATE itself: a concurrent
        change in between makes it match nothing, and the answer is :class:`PreconditionFailedError`.
        """
        if not changes:
            row = await self.get(row_id, primary=True)
            if expected is not None and getattr(row, VERSION) != expected:
                raise self._precondition_failed(row_id, getattr(row, VERSION))
            return row
        return await self._writing(lambda conn: self.update_on(conn, row_id, changes, expected))

    async def update_on(
        self, conn: Connection, row_id: UUID, changes: Row, expected: int | None = None
    ) -> msgspec.Struct:
        """:meth:`update` as a step on ``conn``."""
        if not changes:
            found = await self._step(conn.first(self.statements.get, {"row_id": row_id}), {}, row_id)
            if found is None:
                raise self._not_found(row_id)
            if expected is not None and found[-1] != expected:  # version is the last column
                raise self._precondition_failed(row_id, found[-1])
            return self._written(found)
        params = {"v_" + name: value for name, value in self._bind(changes).items()}
        params |= {"row_id": row_id, "v_updated_at": datetime.now(UTC), "expected": expected}
        statement = self.statements.update(tuple(changes), conditional=expected is not None)
        row = await self._step(conn.first(statement, params), changes, row_id)
        if row is None:
            raise await self._missed(conn, row_id, expected)
        return self._written(row)

    async def delete(self, row_id: UUID, expected: int | None = None) -> None:
        """Delete one row (with ``expected``, only at that version).

        CASCADE and SET NULL children follow, RESTRICT children refuse it (409).
        """
        await self._writing(lambda conn: self.delete_on(conn, row_id, expected))

    async def delete_on(self, conn: Connection, row_id: UUID, expected: int | None = None) -> None:
        """:meth:`delete` as a step on ``conn``."""
        statement = self.statements.delete(conditional=expected is not None)
        params = {"row_id": row_id, "expected": expected}
        if await self._step(conn.first(statement, params), {}, row_id, deleting=True) is None:
            raise await self._missed(conn, row_id, expected)

    async def bulk_update(self, plan: BulkUpdatePlan) -> int:
        """Set one field on every listed id in one UPDATE; returns how many rows exist among the ids."""
        query = self.entity.queries[plan.query]
        assert isinstance(query, BulkUpdateQuery)  # noqa: S101 (the generator pairs plans with their kind)
        value = self._bind({query.field: plan.value})[query.field]
        params = {"ids": sorted(set(plan.ids)), "value": value, "v_updated_at": datetime.now(UTC)}
        statement = self.statements.bulk_update(plan.query, query)
        return await self._writing(lambda conn: self._step(conn.rowcount(statement, params), {query.field: value}))

    async def _missed(self, conn: Connection, row_id: UUID, expected: int | None) -> Exception:
        """Why a write by id matched no row: there is none (404), or it is no longer at ``expected`` (412)."""
        if expected is None:
            return self._not_found(row_id)
        current = await self._step(conn.scalar(self.statements.version, {"row_id": row_id}), {}, row_id)
        return self._not_found(row_id) if current is None else self._precondition_failed(row_id, current)

    def _precondition_failed(self, row_id: UUID, current: int) -> PreconditionFailedError:
        return PreconditionFailedError(
            f"{self.entity.singular} {row_id} is at version {current}, not the one If-Match names.",
            resource=self.name,
            id=str(row_id),
            version=current,
        )

    async def _step(self, work: Awaitable[T], values: Row, row_id: UUID | None = None, *, deleting: bool = False) -> T:
        """Await one statement of a write; a database failure leaves as ``WriteError``, to be diagnosed."""
        try:
            return await work
        except (RepositoryError, InvalidInputError):
            raise
        except Exception as exc:
            raise WriteError(exc, self, values, row_id, deleting=deleting) from exc

    async def _writing(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        """Run one write's steps on a connection of their own (each statement atomic by itself)."""
        return await _run_writes(self.db.writing, body)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _bind(self, values: Row) -> Row:
        """Normalise request values for the database: UTC datetimes, floats as floats, no NUL characters."""
        bound = dict(values)
        for name in self._datetime_fields:
            value = bound.get(name)
            if value is not None:
                bound[name] = as_utc(value, name)
                if bound[name] in _INFINITE_ON_POSTGRES:
                    raise InvalidInputError([FieldError(name, _EXTREME_MESSAGE)])
        for name in self._float_fields:
            value = bound.get(name)
            if value is not None:
                bound[name] = float(value)
                if not math.isfinite(bound[name]):  # "NaN"/"Infinity" strings: SQLite would store NULL, JSON null
                    raise InvalidInputError([FieldError(name, "must be a finite number")])
        self._reject_unstorable(bound)
        return bound

    def _written(self, row: Any) -> msgspec.Struct:
        if not self._float_positions:
            return self.read(*row)
        values = list(row)
        for position in self._float_positions:
            if values[position] is not None:
                values[position] = float(values[position])
        return self.read(*values)

    def _filter_params(self, filters: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
        params = {"f_" + name: value for name, value in filters}
        self._reject_unstorable(dict(filters))
        return params

    def _reject_unstorable(self, values: Row) -> None:
        bad: list[FieldError] = []
        for name in self._text_fields:
            value = values.get(name)
            if value is None or (type(value) is str and "\x00" not in value):  # the common case, checked inline
                continue
            problem = _unstorable(value)
            if problem is not None:
                bad.append(FieldError(name, problem))
        if bad:
            raise InvalidInputError(bad)

    def _not_found(self, row_id: UUID) -> NotFoundError:
        return NotFoundError(f"{self.entity.singular} {row_id} not found.", resource=self.name, id=str(row_id))

    async def _reading(self, run: Callable[[Connection], Awaitable[T]], *, routed: bool = True) -> T:
        """Run reads on one connection (again on a new one if it turns out broken); failures as domain errors.

        ``routed``: a plain read, which may go to the standby; the reads inside a write stay on the primary.
        """
        try:
            if routed and self.standby is not None:
                return await self.standby.read(run)
            return await read_retrying(self.db, run)
        except Exception as exc:
            raise self._translate(exc) from exc

    async def _diagnose(self, violation: Violation, values: Row, row_id: UUID | None, *, deleting: bool) -> Exception:
        catalog = self.catalog

        async def run(conn: Connection) -> Exception:
            if deleting and row_id is not None:
                return await diagnose_delete(conn, catalog.tables, catalog.entities, self.name, row_id)
            return await diagnose_write(conn, violation, catalog.tables, catalog.entities, self.name, values, row_id)

        return await self._reading(run, routed=False)

    def _translate(self, exc: Exception) -> Exception:
        """Database failures -> domain errors; anything else (a bug) is returned unchanged, to surface as a 500."""
        if isinstance(exc, InvalidInputError | RepositoryError):
            return exc
        violation = classify(exc)
        if violation in {Violation.UNAVAILABLE, Violation.RETRYABLE}:
            return DatabaseUnavailableError(f"The database is unavailable ({type(exc).__name__}); retry shortly.")
        if violation is Violation.SCHEMA:
            return DatabaseUnavailableError(
                "The database schema does not match this service (not migrated?): run `flux-dao migrate`."
            )
        if violation is Violation.REFUSED:
            return ConflictError(f"The database refused the change: {refusal(exc)}")
        if violation is Violation.DATA:
            return InvalidInputError(
                [FieldError(self.entity.singular or self.name, "a value was rejected by the database")]
            )
        return exc


class WriteError(StatementError):
    """A write's statement failed: the driver's error (``cause``) and what diagnosing it needs.

    Diagnosis reads the database (who holds the unique value, which parent is missing), so it runs once the
    statement, or the transaction it was part of, is over.
    """

    def __init__(
        self,
        cause: Exception,
        repo: ResourceRepository,
        values: Row,
        row_id: UUID | None,
        *,
        deleting: bool,
        rows: list[Row] | None = None,
    ) -> None:
        super().__init__(cause)
        self.repo = repo
        self.values = values
        self.row_id = row_id
        self.deleting = deleting
        self.rows = rows
        """A bulk insert's rows: the diagnosis looks for the one at fault."""

    async def explain(self) -> Exception:
        """The domain error the failure amounts to (409 naming the field, 503...)."""
        violation = classify(self.cause)
        if violation not in {Violation.UNIQUE, Violation.FOREIGN_KEY, Violation.NOT_NULL, Violation.CHECK}:
            return self.repo._translate(self.cause)
        if self.rows is None:
            return await self.repo._diagnose(violation, self.values, self.row_id, deleting=self.deleting)
        found: Exception | None = None
        for index, values in enumerate(self.rows):
            found = await self.repo._diagnose(violation, values, None, deleting=False)
            if isinstance(found, RepositoryError) and found.extra.get("errors"):
                return _row_at_fault(found, index)
        return found or self.repo._translate(self.cause)


def _row_at_fault(exc: RepositoryError, index: int) -> RepositoryError:
    """A bulk row's diagnosis, its fields named under the row's index (``[5].user_id``)."""
    errors = [{**error, "field": f"[{index}].{error['field']}"} for error in exc.extra["errors"]]
    return type(exc)(f"[{index}]: {exc.detail}", **{**exc.extra, "errors": errors})


def _at_index(exc: InvalidInputError, index: int) -> InvalidInputError:
    """``exc`` with each field named under its row's index, as a bulk body's problems are (``[5].title``)."""
    return InvalidInputError([FieldError(f"[{index}].{error.field}", error.message) for error in exc.errors])


def _repeatable(exc: Exception) -> bool:
    return classify(exc) is Violation.RETRYABLE or statement_unsent(exc)


async def _run_writes(
    open_connection: Callable[[], AbstractAsyncContextManager[Connection]], body: Callable[[Connection], Awaitable[T]]
) -> T:
    """Run ``body`` on a connection from ``open_connection``; failures leave as domain errors.

    A deadlock or serialization failure rolled everything back, and a connection found broken before a statement
    was sent never carried it (nor, in a transaction, anything before it that could commit): either way ``body``
    runs again, up to ``WRITE_ATTEMPTS`` times, then is answered as unavailable (503 with Retry-After). A write
    whose connection broke after it was sent is never repeated: it may have committed.
    """
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            async with open_connection() as conn:
                return await body(conn)
        except WriteError as failure:
            if _repeatable(failure.cause) and attempt < WRITE_ATTEMPTS:
                continue
            raise await failure.explain() from failure.cause
        except (RepositoryError, InvalidInputError):
            raise
        except Exception as exc:  # taking the connection, BEGIN or COMMIT
            if _repeatable(exc) and attempt < WRITE_ATTEMPTS:
                continue
            if classify(exc) in {Violation.UNAVAILABLE, Violation.RETRYABLE}:
                detail = f"The database is unavailable ({type(exc).__name__}); retry shortly."
                raise DatabaseUnavailableError(detail) from exc
            raise
    raise AssertionError  # pragma: no cover (the loop always returns or raises)


async def atomically(db: Database, body: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``body``'s writes (the ``*_on`` steps of any repositories) as one transaction: all of them, or none.

    ``body`` may run more than once (see ``_run_writes``), so it must do nothing but its steps.
    """
    return await _run_writes(db.transaction, body)
