"""Database access below the repository: one pool per worker, one connection interface for both backends.

The repository builds SQLAlchemy Core statements once and hands them here with their parameters. How they run
depends on the backend:

- **PostgreSQL**: each statement is compiled once to SQL text for asyncpg and run on a plain asyncpg pool as a
  prepared statement, with no transaction around it. A single statement is atomic on its own, so every read and
  every write is one round trip; values go in and come out as asyncpg's native types (JSON through msgspec), which
  the read structs take as they are.
- **SQLite** (the embedded default): the same idea on the standard library's ``sqlite3``, one connection per
  worker, statements run on the event loop's thread (``flux_dao.store.sqlite`` says why and what keeps it safe).

Errors are left as the driver raised them; ``repository.integrity.classify`` reads both kinds.
"""

import asyncio
import contextlib
import logging
import os
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import asyncpg
import msgspec
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from flux_dao.config import DatabaseSettings
from flux_dao.errors import DatabaseUnreachableError
from flux_dao.store.codecs import json_text
from flux_dao.store.sqlite import SqliteConnection

__all__ = (
    "Connection",
    "Database",
    "PoolStats",
    "StatementError",
    "connect_failure",
    "connect_once",
    "connection_broken",
    "read_retrying",
    "statement_unsent",
)

T = TypeVar("T")

READ_ATTEMPTS: Final = 3
"""Tries for reads whose connection turned out broken (a restart, a sweep of terminated sessions)."""

_STATEMENT_CACHE_SIZE = 1024


class Connection(Protocol):
    """What the repository needs from a connection: run a Core statement with named parameters."""

    async def all(self, statement: ClauseElement, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row."""
        ...

    async def first(self, statement: ClauseElement, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row, or None."""
        ...

    async def scalar(self, statement: ClauseElement, params: Mapping[str, Any]) -> Any:
        """The first column of the first row."""
        ...

    async def rowcount(self, statement: ClauseElement, params: Mapping[str, Any]) -> int:
        """Run a DML statement; how many rows it matched."""
        ...


class StatementError(Exception):
    """A statement's failure with the driver's error as ``cause``, raised by the layer above with its context."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Compiled:
    """A statement compiled once for asyncpg: SQL text and the order of its ``$n`` parameters."""

    __slots__ = ("compiled", "names", "sql", "static")

    def __init__(self, statement: ClauseElement, dialect: PGDialect_asyncpg) -> None:
        self.compiled: SQLCompiler = statement.compile(  # type: ignore[assignment]
            dialect=dialect, compile_kwargs={"render_postcompile": True}
        )
        self.sql = self.compiled.string
        self.names = tuple(self.compiled.positiontup or ())
        self.static = all(
            name in self.compiled.binds and self.compiled.binds[name].value is None for name in self.names
        )

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        if self.static:  # statements built with named bindparams only: the common, fast case
            return [params[name] for name in self.names]
        merged = self.compiled.construct_params(params) or {}  # values embedded in an ad-hoc statement
        return [merged[name] for name in self.names]


class StatementCount:
    """Statements sent to the database by this process: how ``/metrics`` shows a query's real cost (N+1 or not)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0


class _AsyncpgConnection:
    """Statements on one asyncpg connection, compiled once per statement object."""

    __slots__ = ("_cache", "_conn", "_count", "_dialect")

    def __init__(
        self,
        conn: asyncpg.Connection,
        cache: dict[int, tuple[ClauseElement, _Compiled]],
        dialect: PGDialect_asyncpg,
        count: StatementCount,
    ) -> None:
        self._conn = conn
        self._cache = cache
        self._dialect = dialect
        self._count = count

    def _compile(self, statement: ClauseElement) -> _Compiled:
        self._count.sent += 1
        hit = self._cache.get(id(statement))
        if hit is not None and hit[0] is statement:
            return hit[1]
        compiled = _Compiled(statement, self._dialect)
        if compiled.static:  # the repository's cached statements; ad-hoc ones (with values inside) are not kept
            self._cache[id(statement)] = (statement, compiled)  # holding the statement keeps its id unique
        return compiled

    async def all(self, statement: ClauseElement, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        compiled = self._compile(statement)
        rows: Sequence[Sequence[Any]] = await self._conn.fetch(compiled.sql, *compiled.args(params))
        return rows

    async def first(self, statement: ClauseElement, params: Mapping[str, Any]) -> Sequence[Any] | None:
        compiled = self._compile(statement)
        row: Sequence[Any] | None = await self._conn.fetchrow(compiled.sql, *compiled.args(params))
        return row

    async def scalar(self, statement: ClauseElement, params: Mapping[str, Any]) -> Any:
        compiled = self._compile(statement)
        return await self._conn.fetchval(compiled.sql, *compiled.args(params))

    async def rowcount(self, statement: ClauseElement, params: Mapping[str, Any]) -> int:
        compiled = self._compile(statement)
        status: str = await self._conn.execute(compiled.sql, *compiled.args(params))
        return int(status.rsplit(" ", 1)[-1])

    def transaction(self) -> Any:
        """The asyncpg transaction block on this connection."""
        return self._conn.transaction()


_SESSION_ENDED_SQLSTATES: Final = ("57P01", "57P02", "57P03", "57P04", "57P05")
"""The server ended the session: admin shutdown (``pg_terminate_backend``), crash shutdown, cannot connect now,
database dropped, idle session timeout. The connection is gone although its socket may not be closed yet."""


def connection_broken(exc: BaseException) -> bool:
    """Whether ``exc`` leaves its connection unusable, whatever class asyncpg raised it as.

    The link broke, the server ended the session (a terminated backend answers ``57P01`` and then closes), or
    asyncpg's protocol state is lost: a connection whose server went away between two statements can still look
    open for a moment and then refuses the next one with ``InternalClientError: cannot switch to state 12``. Such a
    connection is never pooled again, and the request answers 503. A statement that merely timed out is not
    "broken" in this sense (see ``_PooledConnection``), nor is a value asyncpg could not encode (``DataError``).
    """
    if isinstance(exc, asyncpg.exceptions.DataError | TimeoutError):
        return False
    if isinstance(exc, OSError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    return getattr(exc, "sqlstate", None) in _SESSION_ENDED_SQLSTATES


def statement_unsent(exc: BaseException) -> bool:
    """Whether ``exc`` was raised before the statement left for the server, so even a write may run again.

    asyncpg checks that the connection is open and idle before it writes a statement; a connection found closed or
    mid-failure at that point never carried the statement.
    """
    message = str(exc)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return message.startswith("cannot switch to state")
    return type(exc) is asyncpg.InterfaceError and message == "connection is closed"


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's wrappers (``DBAPIError.orig`` and its cause)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
        return exc.__cause__ or exc
    return exc


def connect_failure(settings: DatabaseSettings, exc: BaseException) -> str | None:
    """One line saying why connecting to the configured database failed; None when ``exc`` is about something else.

    It names the server (host and port, never the password) and the reason in words: "cannot reach PostgreSQL at
    127.0.0.1:5999: connection refused", "cannot connect to PostgreSQL at 127.0.0.1:5432 (database flux, user flux):
    database "flux" does not exist", "cannot open SQLite database /x/y.db: unable to open database file".
    """
    url = make_url(settings.url)
    cause = _driver_error(exc)
    if url.get_backend_name() == "sqlite":
        if isinstance(cause, sqlite3.Error | OSError):
            return f"cannot open SQLite database {url.database or ':memory:'}: {cause}"
        return None
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    if isinstance(cause, TimeoutError):
        return f"cannot reach {where}: no answer within {settings.connect_timeout:g} s (DB_CONNECT_TIMEOUT)"
    if isinstance(cause, socket.gaierror):
        return f"cannot reach {where}: unknown host ({cause.strerror})"
    if isinstance(cause, OSError):
        return f"cannot reach {where}: {_os_reason(cause)}"
    if isinstance(cause, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"cannot connect to {where} (database {url.database}, user {url.username}): {cause}"
    return None


def _os_reason(exc: OSError) -> str:
    """``connection refused`` rather than ``[Errno 111] Connect call failed ('127.0.0.1', 5999)``.

    A host with several addresses fails with one ``Multiple exceptions: [Errno 111] ..., [Errno 111] ...`` error;
    when every address failed the same way, that one reason is given.
    """
    codes = {exc.errno} if exc.errno else {int(code) for code in re.findall(r"\[Errno (\d+)\]", str(exc))}
    return os.strerror(codes.pop()).lower() if len(codes) == 1 else str(exc)


@asynccontextmanager
async def connect_once(
    settings: DatabaseSettings, connect_args: Mapping[str, Any] | None = None
) -> AsyncIterator[AsyncConnection]:
    """One SQLAlchemy connection outside any pool, for migrations and schema checks.

    Failing to connect raises ``DatabaseUnreachableError`` with :func:`connect_failure`'s one line (the CLI prints
    it instead of a traceback); a PostgreSQL server that does not answer fails after ``connect_timeout``.
    ``connect_args`` go to the driver on top of that.
    """
    defaults = (
        {"timeout": settings.connect_timeout} if make_url(settings.url).get_backend_name() == "postgresql" else {}
    )
    engine = create_async_engine(settings.url, poolclass=NullPool, connect_args=defaults | dict(connect_args or {}))
    try:
        conn = await _connect(engine, settings)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def _connect(engine: AsyncEngine, settings: DatabaseSettings) -> AsyncConnection:
    try:
        return await engine.connect()
    except Exception as exc:
        message = connect_failure(settings, exc)
        if message is None:
            raise
        raise DatabaseUnreachableError(message) from exc


class _PooledConnection:
    """``async with``: borrow an asyncpg connection for the block (a class: cheaper than a generator per request).

    A connection whose statement timed out on the client side or that is broken (``connection_broken``) is closed
    rather than pooled again: on a stalled network asyncpg's cancel request cannot get through either, and the next
    request would wait for that cancellation and then read a late answer. A broken connection also retires every
    other pooled connection (the server restarted, terminated backends, or the network between dropped them): each
    is replaced on its next use instead of failing one request apiece. Returning a connection is never allowed to fail a
    block that succeeded: the statement's outcome stands, and a connection that cannot be returned is closed.

    A request cancelled mid-statement (a shutdown's grace period is over) is different: the link is fine and asyncpg
    has sent the server a cancel request. Closing the socket at once would leave the statement running on the server,
    to commit later although the client was told it failed, so the release waits (a connect timeout at most) for the
    server to acknowledge the cancel; asyncpg closes the connection if it does not.
    """

    __slots__ = ("_conn", "_db")

    def __init__(self, db: "Database") -> None:
        self._db = db
        self._conn: Any = None

    async def __aenter__(self) -> Connection:
        self._conn = await self._db.acquire()
        return _AsyncpgConnection(self._conn, self._db._compiled, self._db._pg_dialect, self._db.statements)

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        conn, self._conn = self._conn, None
        if isinstance(exc, StatementError):
            exc = exc.cause
        broken = exc is not None and connection_broken(exc)
        if broken or isinstance(exc, TimeoutError):
            with contextlib.suppress(asyncpg.InterfaceError):  # asyncpg pooled it already if it saw the link close
                conn.terminate()  # back to the pool as an empty slot: the next acquire opens a fresh connection
            if broken:  # its pool-mates most likely went the same way (a restart, a sweep of terminations)
                await self._db.expire()
        try:
            if isinstance(exc, asyncio.CancelledError):
                await self._db.release(conn, wait_at_most=self._db.settings.connect_timeout)
            else:
                await self._db.release(conn)
        except Exception:  # noqa: BLE001 (asyncpg terminated it on the way; the statement's outcome stands)
            return


class PoolStats(NamedTuple):
    """A pool's connections: open, serving a request, at most; requests waiting for one (None: not counted)."""

    connections: int
    in_use: int
    max_size: int
    waiting: int | None


class Database:
    """The pool of one worker: created with the app, opened at start-up, closed at shutdown."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        url = make_url(settings.url)
        self.dialect = url.get_backend_name()
        self._pool: asyncpg.Pool | None = None
        self.waiting = 0
        """Requests waiting for a pooled asyncpg connection (a free one, or one being opened), for /metrics."""
        self.statements = StatementCount()
        self._compiled: dict[int, tuple[ClauseElement, _Compiled]] = {}
        self._pg_dialect = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._sqlite: SqliteConnection | None = None

    @property
    def is_postgres(self) -> bool:
        """Whether this is the PostgreSQL backend (asyncpg pool, advisory locks, SQLSTATE codes)."""
        return self.dialect == "postgresql"

    async def start(self) -> None:
        """Open the asyncpg pool, or the SQLite connection.

        PostgreSQL's connections are made lazily, so a down database does not block. SQLite's is opened before
        anything else in the worker reads the file, as switching a new file to WAL needs it alone for a moment; a
        file that cannot be opened is left to the first request (503), as a down PostgreSQL is.
        """
        if not self.is_postgres:
            with contextlib.suppress(sqlite3.Error):
                self._sqlite_connection()
        elif self._pool is None:
            s = self.settings
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=s.pool_size,
                max_inactive_connection_lifetime=s.pool_recycle,
                timeout=s.connect_timeout,
                command_timeout=s.command_timeout,
                statement_cache_size=_STATEMENT_CACHE_SIZE,
                server_settings={
                    "application_name": "flux-dao",
                    "timezone": "UTC",
                    "statement_timeout": str(int(s.statement_timeout * 1000)),
                },
                init=self._on_postgres_connect,
                reset=self._on_postgres_release,
            )

    async def dispose(self) -> None:
        """Close every pooled connection, telling the server goodbye (shutdown).

        uvicorn runs this after its grace period, when any request still running has been cancelled and its
        connection is on its way back (see ``_PooledConnection``). A pool that cannot close within two connect
        timeouts (an unreachable server) has every connection terminated instead, so shutdown never hangs.
        """
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=2 * self.settings.connect_timeout)
            except TimeoutError:  # close() terminated every connection on its way out
                logging.getLogger("flux_dao").warning("database connections did not close in time: terminated")
            self._pool = None
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    def reading(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads: one round trip per statement, no transaction."""
        if self.is_postgres:
            return _PooledConnection(self)
        return self._sqlite_connection()

    def writing(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for one write statement, atomic on its own (no transaction around it on either backend)."""
        if self.is_postgres:
            return _PooledConnection(self)
        return self._sqlite_connection()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection whose statements commit together when the block ends, or not at all if it raises.

        For the writes that must be one unit: a batch, a write and its idempotency record. PostgreSQL: a pooled
        connection in a transaction (READ COMMITTED: each statement sees what committed before it, and the
        conditional writes check their version in the statement). SQLite: the worker's connection holds the write
        lock from the start (``BEGIN IMMEDIATE``) and no other request's statement runs on it until the end.
        """
        if not self.is_postgres:
            async with self._sqlite_connection().transaction() as conn:
                yield conn
            return
        async with _PooledConnection(self) as conn:
            assert isinstance(conn, _AsyncpgConnection)  # noqa: S101 (what _PooledConnection hands out)
            async with conn.transaction():
                yield conn

    def _sqlite_connection(self) -> SqliteConnection:
        """The worker's SQLite connection, opened on first use (a missing folder fails the request, not start-up)."""
        if self._sqlite is None:
            s = self.settings
            self._sqlite = SqliteConnection(
                s.url,
                synchronous=s.sqlite_synchronous.value,
                statement_timeout=s.statement_timeout,
                patience=s.connect_timeout,
                count=self.statements,
            )
        return self._sqlite

    async def acquire(self) -> Any:
        """A pooled asyncpg connection; waits at most ``pool_timeout`` for one (then ``TimeoutError``)."""
        if self._pool is None:
            await self.start()
        pool: Any = self._pool
        if pool.get_idle_size():  # a connected, free connection is queued: taking it cannot wait
            return await pool.acquire()
        self.waiting += 1
        try:
            return await pool.acquire(timeout=self.settings.pool_timeout)
        finally:
            self.waiting -= 1

    async def expire(self) -> None:
        """Retire every pooled connection: idle ones are replaced when next taken, busy ones when given back."""
        if self._pool is not None:
            await self._pool.expire_connections()

    async def release(self, conn: Any, wait_at_most: float | None = None) -> None:
        """Give a connection back to the pool (taking at most ``wait_at_most`` seconds, else asyncpg closes it)."""
        if self._pool is not None:
            await self._pool.release(conn, timeout=wait_at_most)

    def pool_stats(self) -> PoolStats:
        """This worker's pool right now, for /metrics."""
        if self._pool is not None:
            size = self._pool.get_size()
            return PoolStats(size, size - self._pool.get_idle_size(), self.settings.pool_size, self.waiting)
        if not self.is_postgres:  # one SQLite connection, busy only inside a statement: never while /metrics runs
            return PoolStats(int(self._sqlite is not None), 0, 1, None)
        return PoolStats(0, 0, self.settings.pool_size, 0)

    @staticmethod
    async def _on_postgres_connect(conn: asyncpg.Connection) -> None:
        for type_name in ("json", "jsonb"):
            await conn.set_type_codec(
                type_name, encoder=json_text, decoder=msgspec.json.decode, schema="pg_catalog", format="text"
            )

    @staticmethod
    async def _on_postgres_release(conn: asyncpg.Connection) -> None:
        """Replaces asyncpg's default reset (a round trip per release): flux-dao sets no session state."""
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")


async def read_retrying(db: Database, run: Callable[[Connection], Awaitable[T]]) -> T:
    """Run reads on one connection; one that turns out broken runs again on a new one, ``READ_ATTEMPTS`` in all.

    Reads are safe to repeat, the first request after a recovery should not fail, and a sweep of terminated
    sessions can catch the new connection too. Any other failure (and the last) is raised as it came.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            async with db.reading() as conn:
                return await run(conn)
        except Exception as exc:
            if attempt < READ_ATTEMPTS and connection_broken(exc):
                continue
            raise
    raise AssertionError  # pragma: no cover (the loop always returns or raises)
