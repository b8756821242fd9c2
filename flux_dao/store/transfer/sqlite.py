"""The SQLite side of a transfer: the service's own SQLite connection class, with ``executemany`` per batch.

Statements are SQLAlchemy Core, compiled once and run through ``SqliteConnection``, so ids, datetimes and JSON are
stored exactly as the service stores them (its column types' converters). A batch is one ``executemany`` inside
``BEGIN IMMEDIATE`` ... ``COMMIT``. No statement timeout applies: a load is not a request.
"""

import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Self
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from flux_dao.config import DatabaseSettings
from flux_dao.errors import DatabaseUnreachableError, FieldError
from flux_dao.store.db import connect_failure
from flux_dao.store.sqlite import SqliteConnection
from flux_dao.store.transfer.backend import OnConflict, Reference, updatable
from flux_dao.store.transfer.rows import ROW_FIELD
from flux_dao.types import Row

__all__ = ("SqliteBackend",)

_COLUMN: Final = re.compile(r"constraint failed: \w+\.(?P<field>\w+)")


class SqliteBackend:
    """The service's ``SqliteConnection`` and the Core statements of a transfer, built once per table."""

    writers = 1
    """SQLite has one writer at a time, and runs on this thread: a second connection would only wait."""

    def __init__(self, conn: SqliteConnection) -> None:
        self._conn = conn
        self._statements: dict[tuple[str, ...], Any] = {}

    @classmethod
    def connect(cls, settings: DatabaseSettings) -> Self:
        """Open the file, or raise ``DatabaseUnreachableError`` saying why."""
        try:
            conn = SqliteConnection(
                settings.url,
                synchronous=settings.sqlite_synchronous.value,
                statement_timeout=0,
                patience=settings.connect_timeout,
                count=_Uncounted(),
            )
        except sqlite3.Error as exc:
            message = connect_failure(settings, exc)
            raise DatabaseUnreachableError(message or str(exc)) from exc
        return cls(conn)

    def _statement(self, key: tuple[str, ...], build: Any) -> Any:
        if key not in self._statements:
            self._statements[key] = build()
        return self._statements[key]

    async def missing_tables(self, names: Sequence[str]) -> list[str]:
        """Tables of ``names`` that ``sqlite_master`` does not list."""
        statement = sa.text("SELECT name FROM sqlite_master WHERE type = 'table'")
        present = {row[0] for row in await self._conn.all(statement, {})}
        return [name for name in names if name not in present]

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """A deferred read transaction: one snapshot (WAL), writers in other processes go on."""
        async with self._conn.transaction(write=False):
            yield

    async def count(self, table: sa.Table) -> int:
        """``count(*)``."""
        statement = self._statement(("count", table.name), lambda: sa.select(sa.func.count()).select_from(table))
        count: int = await self._conn.scalar(statement, {})
        return count

    async def page(self, table: sa.Table, after: UUID | None, limit: int) -> Sequence[Sequence[Any]]:
        """The next page by id: ids are 16-byte BLOBs, which SQLite orders as PostgreSQL orders uuids."""
        first = self._statement(
            ("first", table.name),
            lambda: sa.select(*table.columns).order_by(table.c.id).limit(sa.bindparam("limit", type_=sa.Integer)),
        )
        if after is None:
            return await self._conn.all(first, {"limit": limit})
        following = self._statement(("page", table.name), lambda: first.where(table.c.id > sa.bindparam("after")))
        return await self._conn.all(following, {"after": after, "limit": limit})

    async def existing(self, table: sa.Table, ids: Sequence[UUID]) -> set[UUID]:
        """One ``IN`` lookup on the primary key."""
        statement = self._statement(
            ("existing", table.name),
            lambda: sa.select(table.c.id).where(table.c.id.in_(sa.bindparam("ids", expanding=True))),
        )
        return {row[0] for row in await self._conn.all(statement, {"ids": list(ids)})}

    async def write(self, table: sa.Table, rows: Sequence[Row], on_conflict: OnConflict, keep: Sequence[str]) -> int:
        """One ``executemany`` of ``INSERT ... ON CONFLICT`` in a write transaction."""
        statement = self._statement(
            ("insert", table.name, on_conflict.value, *keep), lambda: _insert(table, on_conflict, keep)
        )
        async with self._conn.transaction():
            return await self._conn.many(statement, rows)

    async def set_references(self, table: sa.Table, field: str, pairs: Sequence[Reference], *, overwrite: bool) -> None:
        """One ``executemany`` of ``UPDATE ... WHERE id = ?`` in a write transaction."""

        def build() -> Any:
            column = table.c[field]
            if overwrite:
                conditions = [column.is_distinct_from(sa.bindparam("b_value"))]
            else:  # only the row as imported: not one the import skipped
                conditions = [
                    column.is_(None),
                    table.c.version == sa.bindparam("b_version"),
                    table.c.updated_at == sa.bindparam("b_updated_at", type_=table.c.updated_at.type),
                ]
            return (
                sa.update(table)
                .where(table.c.id == sa.bindparam("b_id"), *conditions)
                .values({field: sa.bindparam("b_value", type_=column.type)})
            )

        statement = self._statement(("references", table.name, field, str(overwrite)), build)
        rows = [
            {"b_id": p.id, "b_value": p.value}
            | ({} if overwrite else {"b_version": p.version, "b_updated_at": p.updated_at})
            for p in pairs
        ]
        async with self._conn.transaction():
            await self._conn.many(statement, rows)

    def problem(self, exc: Exception) -> FieldError | None:
        """A constraint error: the column SQLite names (``UNIQUE constraint failed: users.email``), and its message."""
        if not isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | OverflowError):
            return None
        match = _COLUMN.search(str(exc))
        return FieldError(match["field"] if match else ROW_FIELD, str(exc))

    async def close(self) -> None:
        """Close the file."""
        self._conn.close()


def _insert(table: sa.Table, on_conflict: OnConflict, keep: Sequence[str]) -> Any:
    insert = sqlite.insert(table)
    if on_conflict is OnConflict.SKIP:
        return insert.on_conflict_do_nothing(index_elements=["id"])
    if on_conflict is OnConflict.UPDATE:
        excluded = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=["id"], set_={name: excluded[name] for name in updatable(table, keep)}
        )
    return insert


class _Uncounted:
    """Stands in for the service's statement counter (``/metrics``), which a transfer does not feed."""

    sent = 0
