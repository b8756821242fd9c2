"""SQLite (the embedded default), run the way the PostgreSQL path runs: SQL text compiled once, executed directly.

Each worker holds **one** connection of the standard library's ``sqlite3`` and runs every statement on it, on the
event loop's own thread. A primary-key lookup takes SQLite microseconds; handing each statement to a thread (the
aiosqlite way, through SQLAlchemy's async adaptation) cost a worker far more than that in thread switches and GIL
hand-overs, and made a queue of every request. Running between two awaits also makes a worker's writes serial by
construction: nothing in the worker can interleave with a statement, so no write ever waits for another of its own.

What makes that safe:

- **Autocommit**: a statement is its own transaction (a single write is one statement), so it never holds SQLite's
  lock across an await. The writes that must commit together (a batch, a write and its idempotency record) take the
  lock first (``BEGIN IMMEDIATE``, ``transaction``) and the worker's other requests wait before their next
  statement until the COMMIT, so none of theirs lands inside.
- **Other workers** (``serve --workers N``) are other processes with their own connections; SQLite's lock serializes
  their writes. ``busy_timeout`` is 0, so a busy database never puts the event loop to sleep inside SQLite: the
  statement, which did nothing (a write takes the lock before it changes a page), is tried again after an
  ``asyncio.sleep``, for at most ``DB_CONNECT_TIMEOUT`` seconds, then answered 503 with Retry-After.
- **Long statements** are interrupted by a progress handler once they run longer than ``DB_STATEMENT_TIMEOUT`` (503),
  as PostgreSQL's ``statement_timeout`` ends them there: the bound on how long one statement holds the loop.
- **WAL** lets readers in other workers run beside the writer; ``synchronous`` is ``NORMAL`` by default
  (``DB_SQLITE_SYNCHRONOUS``): under WAL a commit is atomic and consistent either way, and ``NORMAL`` skips the fsync
  per commit, so a power loss (not a crash of the process) can undo the last commits before the next checkpoint.
  ``FULL`` makes every answered write durable, at one fsync per write.

Values are converted by the column types' own SQLAlchemy processors, so a database file written by either path (or by
migrations, which still run through SQLAlchemy) reads back the same.
"""

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from flux_dao.query.conditions import SQLITE_LOWER
from flux_dao.store.codecs import json_text

__all__ = ("SqliteConnection", "sqlite_path")

_BUSY: Final = frozenset({"SQLITE_BUSY", "SQLITE_BUSY_RECOVERY", "SQLITE_BUSY_SNAPSHOT", "SQLITE_BUSY_TIMEOUT"})
_FIRST_PAUSE: Final = 0.0005
_LONGEST_PAUSE: Final = 0.004
_PROGRESS_STEPS: Final = 20_000
"""SQLite virtual-machine steps between two looks at the clock (a lookup by id takes about a hundred)."""
_STATEMENT_CACHE: Final = 512
_CHECKPOINT_SECONDS: Final = 1.0

Processor = Callable[[Any], Any]


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


DIALECT: Final = SQLiteDialect_pysqlite(
    paramstyle="named", dbapi=sqlite3, json_serializer=json_text, json_deserializer=msgspec.json.decode
)
"""SQLAlchemy's SQLite dialect, used only to compile statements and to convert values; it never connects."""


def sqlite_path(url: str) -> tuple[str, bool]:
    """What ``sqlite3.connect`` takes for a SQLAlchemy SQLite URL: the path (or ``:memory:``), and whether it is a URI.

    ``sqlite:///file:name?mode=ro&uri=true`` is a SQLite URI, as SQLAlchemy's pysqlite dialect reads it.
    """
    parsed = make_url(url)
    path = parsed.database or ":memory:"
    if parsed.query.get("uri") == "true":
        options = "&".join(f"{key}={value}" for key, value in parsed.query.items() if key != "uri")
        return (f"{path}?{options}" if options else path), True
    return path, False


class _Statement:
    """One Core statement compiled for SQLite: its SQL text and the converters of its parameters and columns."""

    __slots__ = ("compiled", "processors", "results", "sql", "static")

    def __init__(self, statement: ClauseElement) -> None:
        compiled: SQLCompiler = statement.compile(dialect=DIALECT)  # type: ignore[assignment]
        self.compiled = compiled
        self.sql = compiled.string
        self.processors: dict[str, Processor] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(DIALECT).bind_processor(DIALECT)
            if processor is not None:
                self.processors[name] = processor
        self.static = not compiled.post_compile_params and all(b.value is None for b in compiled.bind_names)
        """Only named parameters and no IN lists: the SQL text is final and the caller's values go in as they are."""
        columns = getattr(statement, "exported_columns", ())
        self.results = tuple(
            (position, processor)
            for position, column in enumerate(columns)
            if (processor := column.type.dialect_impl(DIALECT).result_processor(DIALECT, None)) is not None
        )

    def bound(self, params: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        """The SQL text and parameters to run it with: IN lists expanded, values converted for SQLite."""
        if self.static:
            sql, values, processors = self.sql, params, self.processors
        else:  # IN lists (one placeholder per value) or values embedded in an ad-hoc statement
            state = self.compiled.construct_expanded_state(params)
            sql, values, processors = state.statement, state.parameters, {**self.processors, **state.processors}
        if processors:
            values = dict(values)
            for name, processor in processors.items():
                if name in values:
                    values[name] = processor(values[name])
        return sql, values

    def rows(self, rows: list[Any]) -> list[Any]:
        """Rows with their values converted back (datetimes, UUIDs, JSON, booleans), as SQLAlchemy reads them."""
        if not self.results:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for position, processor in self.results:
                values[position] = processor(values[position])
            converted.append(values)
        return converted


class _Checkpointer:
    """Copies the WAL back into the database from a thread of its own, once a second while there is work.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold, which here is a request on the
    event loop: every few hundred writes one of them waited for a thousand pages to be written and synced. This
    thread's connection does it instead (``sqlite3`` releases the interpreter lock while SQLite works), PASSIVE: it
    never waits for readers or the writer, and what it could not copy is copied on a later round.
    """

    def __init__(self, path: str, *, uri: bool) -> None:
        self._conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False, uri=uri)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flux-dao-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped.wait(_CHECKPOINT_SECONDS):
                with contextlib.suppress(sqlite3.OperationalError):  # busy: another worker is checkpointing
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            self._conn.close()

    def stop(self) -> None:
        """Stop after the round in progress; the last connection to close checkpoints what is left."""
        self._stopped.set()
        self._thread.join(timeout=_CHECKPOINT_SECONDS * 5)


class SqliteConnection:
    """The worker's one SQLite connection, with statements compiled once; also its own ``async with``.

    Reads and writes use it alike: see the module docstring for why that is safe.
    """

    __slots__ = ("_cache", "_checkpointer", "_conn", "_deadline", "_owner", "_patience", "_timeout", "_turn", "count")

    def __init__(self, url: str, *, synchronous: str, statement_timeout: float, patience: float, count: Any) -> None:
        path, uri = sqlite_path(url)
        self._conn = sqlite3.connect(
            path,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=_STATEMENT_CACHE,
            uri=uri,
        )
        self._cache: dict[int, tuple[ClauseElement, _Statement]] = {}
        self._timeout = statement_timeout
        self._patience = patience
        self._deadline = 0.0
        self._owner: asyncio.Task[Any] | None = None
        """The request whose transaction holds the connection; other requests' statements wait for its end."""
        self._turn = asyncio.Lock()
        self.count = count
        try:
            self._conn.create_function(SQLITE_LOWER, 1, _lower, deterministic=True)  # icontains folds all Unicode
            # switching a new database to WAL needs it to itself for a moment: the one wait allowed inside SQLite
            self._conn.execute(f"PRAGMA busy_timeout={int(patience * 1000)}")
            pragmas = (
                "foreign_keys=ON",
                "journal_mode=WAL",
                f"synchronous={synchronous.upper()}",
                "busy_timeout=0",
                "wal_autocheckpoint=0",  # the checkpointer thread does it, off the event loop
            )
            for pragma in pragmas:
                self._conn.execute(f"PRAGMA {pragma}")
            if statement_timeout > 0:
                self._conn.set_progress_handler(self._overdue, _PROGRESS_STEPS)
            self._checkpointer = _Checkpointer(path, uri=uri)
        except BaseException:
            self._conn.close()
            raise

    async def __aenter__(self) -> "SqliteConnection":
        return self

    async def __aexit__(self, _type: object, _exc: object, _tb: object) -> None:
        return None

    def close(self) -> None:
        """Close the connection (shutdown); a statement cannot be running, as they all run on this thread."""
        self._checkpointer.stop()
        self._conn.close()

    def _overdue(self) -> bool:
        return time.monotonic() > self._deadline  # True interrupts the statement (SQLITE_INTERRUPT)

    def _statement(self, statement: ClauseElement) -> _Statement:
        self.count.sent += 1
        hit = self._cache.get(id(statement))
        if hit is not None and hit[0] is statement:
            return hit[1]
        compiled = _Statement(statement)
        if compiled.static:  # the repository's cached statements; ad-hoc ones are compiled per use
            self._cache[id(statement)] = (statement, compiled)  # holding the statement keeps its id unique
        return compiled

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator["SqliteConnection"]:
        """Statements that commit together: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` if the block raises).

        The write lock is taken at the start, so nothing in the block waits for another worker's writer. Until the
        end, this worker's other requests wait before their next statement (``_run``), so none of them lands inside
        this transaction, whatever the block awaits. ``write=False`` is a plain ``BEGIN``: reads from one snapshot
        (an export) that other processes' writers do not wait for.
        """
        async with self._turn:
            await self._execute("BEGIN IMMEDIATE" if write else "BEGIN", {})
            self._owner = asyncio.current_task()
            try:
                yield self
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._owner = None

    async def _run(self, statement: ClauseElement, params: Mapping[str, Any]) -> tuple[_Statement, sqlite3.Cursor]:
        """Execute, trying again while another process holds SQLite's write lock (see the module docstring)."""
        if self._owner is not None and self._owner is not asyncio.current_task():
            async with self._turn:  # another request's transaction holds the connection: after it
                pass
        compiled = self._statement(statement)
        sql, values = compiled.bound(params)
        return compiled, await self._execute(sql, values)

    async def _execute(
        self, sql: str, values: Mapping[str, Any], many: Sequence[Mapping[str, Any]] | None = None
    ) -> sqlite3.Cursor:
        pause, give_up = _FIRST_PAUSE, None
        while True:
            self._deadline = time.monotonic() + self._timeout
            try:
                return self._conn.execute(sql, values) if many is None else self._conn.executemany(sql, many)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorname not in _BUSY:
                    raise
                now = time.monotonic()
                give_up = give_up or now + self._patience
                if now >= give_up:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    async def all(self, statement: ClauseElement, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row."""
        compiled, cursor = await self._run(statement, params)
        return compiled.rows(cursor.fetchall())

    async def first(self, statement: ClauseElement, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row, or None; the statement runs to its end (a write's RETURNING commits only then)."""
        compiled, cursor = await self._run(statement, params)
        rows = cursor.fetchall()
        return compiled.rows(rows[:1])[0] if rows else None

    async def scalar(self, statement: ClauseElement, params: Mapping[str, Any]) -> Any:
        """The first column of the first row."""
        row = await self.first(statement, params)
        return None if row is None else row[0]

    async def rowcount(self, statement: ClauseElement, params: Mapping[str, Any]) -> int:
        """Run a DML statement; how many rows it matched."""
        _, cursor = await self._run(statement, params)
        return cursor.rowcount

    async def many(self, statement: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a DML statement once per parameter set in one ``executemany`` (bulk loads); how many rows it matched.

        The statement must be static (named parameters only, no IN lists): one SQL text for every set.
        """
        if self._owner is not None and self._owner is not asyncio.current_task():
            async with self._turn:
                pass
        compiled = self._statement(statement)
        values = [compiled.bound(params)[1] for params in rows]
        cursor = await self._execute(compiled.sql, {}, values)
        return cursor.rowcount
