"""The PostgreSQL side of a transfer: keyset pages on one snapshot, and batches loaded with COPY.

A batch goes by binary COPY (asyncpg ``copy_records_to_table``) into a temporary staging table shaped like the
target (``LIKE``, emptied at every commit), then ``INSERT ... SELECT`` into the table with the conflict rule, in
one transaction: an interruption leaves whole batches, and the target's triggers (the change feed) see ordinary
inserts. ``jsonb`` goes both ways through msgspec in binary form (a version byte, then the JSON text): the
service's text-only codec cannot take part in a binary COPY.
"""

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Self
from uuid import UUID

import asyncpg
import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from flux_dao.config import DatabaseSettings
from flux_dao.errors import DatabaseUnreachableError, FieldError
from flux_dao.store.db import connect_failure
from flux_dao.store.transfer.backend import OnConflict, Reference, updatable
from flux_dao.store.transfer.rows import ROW_FIELD, printable
from flux_dao.types import Row

__all__ = ("PostgresBackend",)

_JSONB_VERSION: Final = b"\x01"
_KEY: Final = re.compile(r"Key \((?P<field>[^)=,]+)\)=")
_ROW_ERRORS: Final = (
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,
    asyncpg.CardinalityViolationError,  # one id twice in a batch under ``update``: row by row, the second wins
)


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + msgspec.json.encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return msgspec.json.decode(data[1:])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresBackend:
    """One asyncpg connection (no pool, no statement timeout) and the SQL text of each statement, built once."""

    writers = 2
    """Two batches at once: while one connection's INSERT runs (indexes, foreign keys, the change trigger: most of
    an import's time), the other's lookups and COPY go on, and the server works on two cores."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._staged: set[str] = set()
        self._sql: dict[tuple[str, ...], str] = {}

    @classmethod
    async def connect(cls, settings: DatabaseSettings) -> Self:
        """Connect, or raise ``DatabaseUnreachableError`` saying why."""
        dsn = make_url(settings.url).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = await asyncpg.connect(
                dsn,
                timeout=settings.connect_timeout,
                server_settings={"application_name": "flux-dao transfer", "timezone": "UTC"},
            )
        except Exception as exc:
            message = connect_failure(settings, exc)
            if message is None:
                raise
            raise DatabaseUnreachableError(message) from exc
        await conn.set_type_codec(
            "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
        )
        return cls(conn)

    async def missing_tables(self, names: Sequence[str]) -> list[str]:
        """Tables of ``names`` that ``to_regclass`` does not find on the search path."""
        found = await self._conn.fetch(
            "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(quote_ident(n)) IS NULL", list(names)
        )
        return [row[0] for row in found]

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """A read-only REPEATABLE READ transaction: every page of every table from one snapshot."""
        async with self._conn.transaction(isolation="repeatable_read", readonly=True):
            yield

    async def count(self, table: sa.Table) -> int:
        """``count(*)``."""
        count: int = await self._conn.fetchval(f"SELECT count(*) FROM {_quote(table.name)}")  # noqa: S608
        return count

    async def page(self, table: sa.Table, after: UUID | None, limit: int) -> Sequence[Sequence[Any]]:
        """The next page by id (the primary key's index, so each page costs the same however deep)."""
        columns = ", ".join(_quote(c.name) for c in table.columns)
        name = _quote(table.name)
        if after is None:
            sql = f"SELECT {columns} FROM {name} ORDER BY id LIMIT $1"  # noqa: S608
            rows: Sequence[Sequence[Any]] = await self._conn.fetch(sql, limit)
        else:
            sql = f"SELECT {columns} FROM {name} WHERE id > $1 ORDER BY id LIMIT $2"  # noqa: S608
            rows = await self._conn.fetch(sql, after, limit)
        return rows

    async def existing(self, table: sa.Table, ids: Sequence[UUID]) -> set[UUID]:
        """One ``= ANY`` lookup on the primary key."""
        sql = f"SELECT id FROM {_quote(table.name)} WHERE id = ANY($1::uuid[])"  # noqa: S608
        return {UUID(bytes=row[0].bytes) for row in await self._conn.fetch(sql, list(ids))}

    async def write(self, table: sa.Table, rows: Sequence[Row], on_conflict: OnConflict, keep: Sequence[str]) -> int:
        """COPY into the staging table, then ``INSERT ... SELECT ... ON CONFLICT``, as one transaction."""
        stage = await self._stage(table)
        names = [c.name for c in table.columns]
        records = [tuple(row[name] for name in names) for row in rows]
        async with self._conn.transaction():
            await self._conn.copy_records_to_table(stage, records=records, columns=names)
            status = await self._conn.execute(self._insert(table, stage, on_conflict, keep))
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>"

    async def _stage(self, table: sa.Table) -> str:
        stage = f"flux_dao_import_{table.name}"
        if stage not in self._staged:
            await self._conn.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_quote(stage)} (LIKE {_quote(table.name)}) "
                "ON COMMIT DELETE ROWS"
            )
            self._staged.add(stage)
        return stage

    def _insert(self, table: sa.Table, stage: str, on_conflict: OnConflict, keep: Sequence[str]) -> str:
        key = ("insert", table.name, on_conflict.value, *keep)
        if key not in self._sql:
            columns = ", ".join(_quote(c.name) for c in table.columns)
            sql = f"INSERT INTO {_quote(table.name)} ({columns}) SELECT {columns} FROM {_quote(stage)}"  # noqa: S608
            if on_conflict is OnConflict.SKIP:
                sql += " ON CONFLICT (id) DO NOTHING"
            elif on_conflict is OnConflict.UPDATE:
                sets = ", ".join(f"{_quote(name)} = EXCLUDED.{_quote(name)}" for name in updatable(table, keep))
                sql += f" ON CONFLICT (id) DO UPDATE SET {sets}"
            self._sql[key] = sql
        return self._sql[key]

    async def set_references(self, table: sa.Table, field: str, pairs: Sequence[Reference], *, overwrite: bool) -> None:
        """One ``UPDATE ... FROM unnest(...)``, in a transaction of its own."""
        column = _quote(field)
        condition = (
            f"t.{column} IS DISTINCT FROM v.value"
            if overwrite
            else f"t.{column} IS NULL AND t.version = v.version AND t.updated_at = v.updated_at"
        )
        sql = (
            f"UPDATE {_quote(table.name)} AS t SET {column} = v.value "  # noqa: S608
            "FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[]) AS v(id, value, version, updated_at) "
            f"WHERE t.id = v.id AND {condition}"
        )
        async with self._conn.transaction():
            await self._conn.execute(
                sql,
                [p.id for p in pairs],
                [p.value for p in pairs],
                [p.version for p in pairs],
                [p.updated_at for p in pairs],
            )

    def problem(self, exc: Exception) -> FieldError | None:
        """A constraint or data error: the column PostgreSQL names (``Key (email)=...``), and its message."""
        if not isinstance(exc, _ROW_ERRORS):
            return None
        detail = getattr(exc, "detail", None) or ""
        match = _KEY.search(detail)
        field = getattr(exc, "column_name", None) or (match["field"] if match else ROW_FIELD)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__  # its DETAIL line follows, once
        message += f" ({' '.join(detail.split())})" if detail and detail not in message else ""
        return FieldError(printable(field), printable(message))

    async def close(self) -> None:
        """Close the connection."""
        await self._conn.close()
