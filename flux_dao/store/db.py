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
import secrets
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

from flux_dao.config import DatabaseSettings, PreparedStatements
from flux_dao.errors import DatabaseUnreachableError
from flux_dao.store.codecs import json_text
from flux_dao.store.consistency import CONSISTENCY, WRITTEN_POSITION
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
_POOLER_MISSES: Final = ("26000", "42P05")
"""A named prepared statement missing, or already there: what a transaction pooler in between causes (the
statement never ran, so it may be sent again)."""
_REFUSED_STARTUP: Final = "unsupported startup parameter"
"""How pgbouncer refuses a startup setting it does not track (``statement_timeout``)."""


class _UniquelyNamedConnection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, with prepared statement names unique to this process.

    asyncpg numbers its statements per process, so two flux-dao processes behind one transaction pooler would both
    name a statement ``__asyncpg_stmt_1__``, and one could run the other's statement on a shared server connection.
    With a random tag per process, a statement the pooler's server connection does not have is only ever missing
    (an error, after which ``DB_PREPARED_STATEMENTS=auto`` stops naming statements), never someone else's.
    """

    _tag: Final = secrets.token_hex(6)

    def _get_unique_id(self, prefix: str) -> str:
        return f"__flux_{self._tag}{super()._get_unique_id(prefix)[1:]}"


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
    return getattr(exc, "sqlstate", None) in (*_SESSION_ENDED_SQLSTATES, *_POOLER_MISSES)


def statement_unsent(exc: BaseException) -> bool:
    """Whether ``exc`` was raised before the statement left for the server, so even a write may run again.

    asyncpg checks that the connection is open and idle before it writes a statement; a connection found closed or
    mid-failure at that point never carried the statement.
    """
    message = str(exc)
    if getattr(exc, "sqlstate", None) in _POOLER_MISSES:  # refused at parse or bind: it never ran
        return True
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
    url, defaults = make_url(settings.url), dict[str, Any]()
    if url.get_backend_name() == "postgresql":
        # Safe behind a transaction pooler too: statement names no other process uses, and none kept for a later
        # transaction (which the pooler may give another server connection); see ``PreparedStatements``.
        defaults = {"timeout": settings.connect_timeout, "prepared_statement_name_func": _statement_name}
        if settings.prepared_statements is not PreparedStatements.ON:
            url = url.update_query_dict({"prepared_statement_cache_size": "0"})
            defaults["statement_cache_size"] = 0  # asyncpg's own (its type introspection)
    engine = create_async_engine(url, poolclass=NullPool, connect_args=defaults | dict(connect_args or {}))
    try:
        conn = await _connect(engine, settings)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await engine.dispose()


def _statement_name() -> str:
    return f"__flux_{secrets.token_hex(12)}__"


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

    __slots__ = ("_conn", "_db", "_pool", "_writes")

    def __init__(self, db: "Database", *, writes: bool = False) -> None:
        self._db = db
        self._writes = writes
        self._conn: Any = None
        self._pool: Any = None

    async def __aenter__(self) -> Connection:
        self._pool, self._conn = await self._db.acquire()
        return _AsyncpgConnection(self._conn, self._db._compiled, self._db._pg_dialect, self._db.statements)

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        conn, self._conn = self._conn, None
        if isinstance(exc, StatementError):
            exc = exc.cause
        if exc is None and self._writes:
            await self._note_written(conn)
        broken = exc is not None and connection_broken(exc)
        if broken or isinstance(exc, TimeoutError):
            if getattr(exc, "sqlstate", None) in _POOLER_MISSES:
                self._db.pooler_found("a prepared statement was missing on the server")
            with contextlib.suppress(asyncpg.InterfaceError):  # asyncpg pooled it already if it saw the link close
                conn.terminate()  # back to the pool as an empty slot: the next acquire opens a fresh connection
            if broken:  # its pool-mates most likely went the same way (a restart, a sweep of terminations)
                await self._pool.expire_connections()
        try:
            if isinstance(exc, asyncio.CancelledError):
                await self._pool.release(conn, timeout=self._db.settings.connect_timeout)
            else:
                await self._pool.release(conn)
        except Exception:  # noqa: BLE001 (asyncpg terminated it on the way; the statement's outcome stands)
            return

    async def _note_written(self, conn: asyncpg.Connection) -> None:
        """With read routing on, the request's consistency token: the WAL position after its writes committed.

        Without it (the link broke right after the commit) the answer carries no token; the write stands.
        """
        consistency = CONSISTENCY.get()
        if consistency is None or self._db.settings.read_url is None:
            return
        with contextlib.suppress(Exception):
            consistency.wrote(await conn.fetchval(self._db.compiled_sql(WRITTEN_POSITION)))


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
        self.named_statements = settings.prepared_statements is not PreparedStatements.OFF
        """Whether statements are prepared under a name (cached per connection); see ``PreparedStatements``."""
        self._startup_timeout = self.named_statements
        """Whether ``statement_timeout`` goes as a startup setting: not when told a pooler is in between (``off``:
        set it on the role), nor once a pooler refused it."""
        self._closing: set[asyncio.Task[None]] = set()
        self._starting = asyncio.Lock()

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
            async with self._starting:  # one pool, however many requests find none (after a replacement)
                if self._pool is None:
                    self._pool = await self._create_pool()

    async def _create_pool(self) -> asyncpg.Pool:
        s = self.settings
        server_settings = {"application_name": "flux-dao", "timezone": "UTC"}  # both tracked by pgbouncer
        if self._startup_timeout:
            server_settings["statement_timeout"] = str(int(s.statement_timeout * 1000))
        return await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=s.pool_size,
            max_inactive_connection_lifetime=s.pool_recycle,
            timeout=s.connect_timeout,
            command_timeout=s.command_timeout,
            statement_cache_size=_STATEMENT_CACHE_SIZE if self.named_statements else 0,
            server_settings=server_settings,
            connection_class=_UniquelyNamedConnection,
            init=self._on_postgres_connect,
            reset=self._on_postgres_release,
        )

    def pooler_found(self, sign: str) -> None:
        """A transaction pooler sits in between: with ``auto``, stop naming statements (for new connections).

        The pool is replaced; the old one closes once its connections are given back.
        """
        if not self.named_statements or self.settings.prepared_statements is not PreparedStatements.AUTO:
            return
        self.named_statements = False
        logging.getLogger("flux_dao").warning(
            "%s at %s: a transaction pooler is in between, so statements are no longer prepared under a name "
            "and statement_timeout is left to the role (ALTER ROLE ... SET statement_timeout); set "
            "DB_PREPARED_STATEMENTS=off to start that way",
            sign,
            self.settings.display_url,
        )
        self._replace_pool()

    def _replace_pool(self) -> None:
        old, self._pool = self._pool, None
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

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
        for task in list(self._closing):  # pools replaced on finding a pooler
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=2 * self.settings.connect_timeout)
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
            return _PooledConnection(self, writes=True)
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
        async with _PooledConnection(self, writes=True) as conn:
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

    async def acquire(self) -> tuple[Any, Any]:
        """A pooled asyncpg connection and its pool; waits at most ``pool_timeout`` for one (then ``TimeoutError``).

        A server that refuses ``statement_timeout`` as a startup setting is a pooler (pgbouncer): the setting is
        dropped (statements are then limited by the role's ``statement_timeout`` and the client-side
        ``command_timeout``), with ``auto`` statements stop being named, and the connection is made again.
        """
        try:
            return await self._acquire()
        except asyncpg.PostgresError as exc:
            if _REFUSED_STARTUP not in str(exc):
                raise
        if self._startup_timeout:  # else another request saw it first: its new pool sends no such setting
            self._startup_timeout = False
            if self.named_statements and self.settings.prepared_statements is PreparedStatements.AUTO:
                self.pooler_found("the database refused statement_timeout as a startup setting")
            else:
                self._replace_pool()
                logging.getLogger("flux_dao").warning(
                    "%s refused statement_timeout as a startup setting (a pooler such as pgbouncer): set it on "
                    "the role instead (ALTER ROLE ... SET statement_timeout); DB_STATEMENT_TIMEOUT + "
                    "DB_CONNECT_TIMEOUT still bound each statement on this side",
                    self.settings.display_url,
                )
        return await self._acquire()

    async def _acquire(self) -> tuple[Any, Any]:
        if self._pool is None:
            await self.start()
        pool: Any = self._pool
        if pool.get_idle_size():  # a connected, free connection is queued: taking it cannot wait
            return pool, await pool.acquire()
        self.waiting += 1
        try:
            return pool, await pool.acquire(timeout=self.settings.pool_timeout)
        finally:
            self.waiting -= 1

    def compiled_sql(self, statement: ClauseElement) -> str:
        """``statement`` as asyncpg's SQL text (compiled once)."""
        hit = self._compiled.get(id(statement))
        if hit is not None and hit[0] is statement:
            return hit[1].sql
        compiled = _Compiled(statement, self._pg_dialect)
        self._compiled[id(statement)] = (statement, compiled)
        return compiled.sql

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
