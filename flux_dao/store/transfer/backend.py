"""What an export or an import asks of a database, and the backend that answers it.

A handful of statements per resource, run straight on the tables (not through HTTP): pages by id, which ids are
there, a batch written under a conflict rule, a self-reference set. PostgreSQL loads batches with COPY into a
staging table (``postgres``); SQLite with ``executemany`` (``sqlite``). Both run on a connection of their own,
outside the service's pool: no statement timeout cuts a long export short, and on PostgreSQL the staging tables
need one session (``DATABASE_DIRECT_URL`` is used when set, as migrations use it, since a pooler loses sessions).
"""

import enum
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from flux_dao.config import DatabaseSettings
from flux_dao.errors import FieldError, TransferError
from flux_dao.types import Row

__all__ = ("Backend", "OnConflict", "Reference", "open_backend", "require_tables", "updatable")


class Reference(NamedTuple):
    """A row's self-reference to set in the second pass, with what tells the imported row from one it skipped."""

    id: UUID
    value: UUID | None
    version: int
    updated_at: datetime


class OnConflict(enum.StrEnum):
    """What an import does with a row whose id is already in the table."""

    SKIP = "skip"
    """Leave the stored row as it is (a re-run imports only what is missing)."""
    UPDATE = "update"
    """Overwrite it with the imported row (fields, timestamps and version as exported)."""
    FAIL = "fail"
    """Stop the import, naming the row."""


class Backend(Protocol):
    """One database's side of a transfer."""

    writers: int
    """How many connections an import may write batches through at once (each a backend of its own)."""

    async def missing_tables(self, names: Sequence[str]) -> list[str]:
        """Which of these tables the database lacks (not migrated)."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[None]:
        """Reads inside see one consistent state of every table (an export)."""
        ...

    async def count(self, table: sa.Table) -> int:
        """How many rows ``table`` holds."""
        ...

    async def page(self, table: sa.Table, after: UUID | None, limit: int) -> Sequence[Sequence[Any]]:
        """Up to ``limit`` rows (every column, in table order) with ids after ``after``, in id order."""
        ...

    async def existing(self, table: sa.Table, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` the table holds."""
        ...

    async def write(self, table: sa.Table, rows: Sequence[Row], on_conflict: OnConflict, keep: Sequence[str]) -> int:
        """Insert ``rows`` in one transaction; an id already there is skipped or updated (except ``keep`` columns).

        Returns how many rows were inserted or updated (a skipped one is neither). Raises the driver's error when the
        database refuses any row (nothing of the batch is then written).
        """
        ...

    async def set_references(self, table: sa.Table, field: str, pairs: Sequence[Reference], *, overwrite: bool) -> None:
        """Set ``field`` of the rows with these ids, wherever it differs (``overwrite``).

        Otherwise only where it is NULL and the row is the one imported: its version and ``updated_at`` as in the
        input, so a row the import skipped keeps what it holds.
        """
        ...

    def problem(self, exc: Exception) -> FieldError | None:
        """A refused row's error as the field at fault and why; None when ``exc`` is not about the row."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


async def open_backend(settings: DatabaseSettings) -> Backend:
    """The backend of ``settings`` (its direct URL when set), connected.

    Raises:
        DatabaseUnreachableError: it cannot be connected to (one line saying why).
    """
    settings = settings.for_migrations()
    if make_url(settings.url).get_backend_name() == "postgresql":
        from flux_dao.store.transfer.postgres import PostgresBackend  # noqa: PLC0415 (asyncpg only when needed)

        return await PostgresBackend.connect(settings)
    from flux_dao.store.transfer.sqlite import SqliteBackend  # noqa: PLC0415

    return SqliteBackend.connect(settings)


def updatable(table: sa.Table, keep: Sequence[str]) -> list[str]:
    """The columns an update on conflict overwrites: all but the id and ``keep``."""
    return [column.name for column in table.columns if column.name != "id" and column.name not in keep]


async def require_tables(backend: Backend, names: Sequence[str], database: DatabaseSettings) -> None:
    """Refuse a database that lacks a table (not migrated), naming the command that makes them."""
    missing = await backend.missing_tables(names)
    if missing:
        msg = (
            f"{database.display_url} has no table {', '.join(missing)}: "
            "run `flux-dao migrate` against it first (the tables come from the migrations)"
        )
        raise TransferError(msg)
