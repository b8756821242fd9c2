"""Reading the change feed: pages after a position, a head no later commit can slip under, and the purge.

**Positions and commit order.** Triggers give every change a position from one counter (PostgreSQL's sequence,
SQLite's AUTOINCREMENT) as it is written, after the row's lock was taken, so two changes of one row get positions in
the order they committed. On SQLite there is one writer at a time: every position below the last one written is
committed or was never kept. On PostgreSQL a transaction can take a position and commit after another that took a
later one, so "everything after N" read too early would skip it for good. The feed therefore hands out positions
only up to a *settled head*. Each look reads the last position handed out (the sequence's ``last_value``, outside
any transaction), then takes a transaction id of its own (``pg_current_xact_id()``, in a statement of its own that
commits at once): that id is newer than the id of every transaction that could hold a position up to the one read,
since a write takes its transaction id before its position. Once a later look's snapshot shows the oldest
transaction still running (``pg_snapshot_xmin``) past that id, all of those have committed or rolled back, and the
head moves to the position read. (A snapshot's ``xmax`` is no such bound: it is the newest *ended* transaction's id
plus one, and a running transaction with a newer id is in neither it nor ``xmin``.) A look where nothing new was
handed out costs one statement; otherwise three and a transaction id (the third sees whether the new positions
have settled already). A transaction left open anywhere on the cluster holds the head back (the feed waits, it never
skips).

**Retention.** Changes older than the retention are deleted from the oldest up, and the newest position deleted is
kept (``flux_dao_changes_purged``): reading after an older position is 410, never a silent gap.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec
import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy.dialects import sqlite

from flux_dao.errors import ChangesExpiredError, DatabaseUnavailableError
from flux_dao.query.changes import ChangeStatements
from flux_dao.schema.resources import Resource
from flux_dao.schema.tables import utcnow
from flux_dao.store.db import Connection, Database, read_retrying
from flux_dao.store.integrity import Violation, classify

__all__ = ("Change", "ChangeLog", "ChangePage", "SettledHead")

logger = logging.getLogger("flux_dao")

T = TypeVar("T")

TICK: Final = 0.02
"""Seconds between two looks at the head while someone waits for changes (long polls, streams)."""
_SETTLE: Final = 0.25
"""How long a read without ``wait`` gives the transactions running now to finish before it answers."""
_MAX_PENDING: Final = 256
_IDLE: Final = 5.0
"""Seconds the head watcher keeps looking after its last waiter left."""
PURGE_BATCH: Final = 10_000
"""Changes one purge transaction deletes at most (a short lock on SQLite, a bounded transaction on PostgreSQL)."""
PURGE_EVERY: Final = 60.0
"""Seconds between two purges of each worker (each deletes what has aged out since; running together is harmless)."""
_SQLITE: Final = sqlite.dialect()


class Change(msgspec.Struct, kw_only=True):
    """One committed insert, update or delete of a resource row."""

    position: int
    resource: str
    op: str
    id: str
    committed_at: datetime
    row: Any
    """The row after the change (a delete: before it), as ``GET /{resource}/{id}`` answers it."""


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Changes in position order, and the position to read after next time."""

    items: list[Change]
    next: int


Decoder = Callable[[Any], msgspec.Struct]


def _postgres_decoder(resource: Resource) -> Decoder:
    """``to_json``'s text straight into the Read struct (ISO timestamps, UUID strings: msgspec parses both).

    A row written by a session in another time zone (a tool's plain SQL) has its timestamps in that zone's offset:
    they are the same instants, given in UTC as the API gives them.
    """
    decoder: msgspec.json.Decoder[msgspec.Struct] = msgspec.json.Decoder(resource.schemas.read)
    stamps = tuple(c.name for c in resource.table.columns if isinstance(c.type, sa.DateTime | DateTimeUTC))

    def decode(text: str) -> msgspec.Struct:
        row = decoder.decode(text)
        for name in stamps:
            value = getattr(row, name)
            if value is not None and value.utcoffset():
                setattr(row, name, value.astimezone(UTC))
        return row

    return decode


def _sqlite_decoder(resource: Resource) -> Decoder:
    """The trigger's JSON object: values as the SQLite columns hold them (ids in hex), converted as SQLAlchemy does."""
    steps: list[tuple[str, Callable[[Any], Any] | None, bool]] = []
    for name in resource.entity.read_columns:
        column = resource.table.c[name]
        kind = column.type
        impl = kind.load_dialect_impl(_SQLITE) if isinstance(kind, sa.TypeDecorator) else kind
        binary = isinstance(impl, sa.LargeBinary | sa.BINARY | sa.VARBINARY)
        steps.append((name, kind.dialect_impl(_SQLITE).result_processor(_SQLITE, None), binary))
    read = resource.schemas.read

    def decode(values: Mapping[str, Any]) -> msgspec.Struct:
        out = []
        for name, process, binary in steps:
            value = values.get(name)
            if binary and value is not None:
                value = bytes.fromhex(value)
            out.append(value if process is None else process(value))
        return read(*out)

    return decode


class SettledHead:
    """Where the head may move, from successive looks at the last position handed out and at the transactions.

    Each look records a mark: the last position handed out, with a bound: a transaction id taken after that
    position was read, plus one. Once a later snapshot's ``xmin`` (the oldest transaction still running) reaches a
    mark's bound, every transaction that could hold a position up to the mark's has ended, and the head moves to it.
    Without transactions to wait for (SQLite: one writer at a time) the last position is the head.
    """

    def __init__(self) -> None:
        self.head = 0
        self.newest = -1
        """The last position handed out at the latest look (-1 before the first)."""
        self._marks: deque[tuple[int, int]] = deque()

    @property
    def waiting(self) -> bool:
        """Whether positions were handed out that the head has not reached yet."""
        return bool(self._marks)

    def written(self, high: int) -> int:
        """Take in the last position written where nothing is left to wait for (SQLite); the head after it."""
        self.newest = high
        self.head = max(self.head, high)
        return self.head

    def saw(self, high: int, xmin: int, bound: int | None) -> int:
        """Take in one look; the head after it.

        ``high`` is the last position handed out, ``xmin`` the oldest transaction running, ``bound`` the first id
        that need not have ended before ``high`` settles (None: no new mark, ``high`` is no newer than the last).
        """
        if bound is not None and high > self.newest:
            self.newest = high
            self._marks.append((high, bound))
            if len(self._marks) > _MAX_PENDING:  # a long transaction: keep every other mark (a later head, no loss)
                kept = list(self._marks)
                self._marks = deque([*kept[:-1:2], kept[-1]])
        while self._marks and self._marks[0][1] <= xmin:
            self.head = max(self.head, self._marks.popleft()[0])
        return self.head


class ChangeLog:
    """The feed of one worker over its ``Database``: pages, the settled head, waiting for news, the purge."""

    def __init__(self, db: Database, metadata: sa.MetaData, resources: Sequence[Resource], retention: float) -> None:
        self.db = db
        self.retention = timedelta(seconds=retention)
        self._s = ChangeStatements(metadata, postgres=db.is_postgres)
        make = _postgres_decoder if db.is_postgres else _sqlite_decoder
        self._decoders = {r.entity.name: make(r) for r in resources if r.entity.changes}
        self.resources = frozenset(self._decoders)
        """The resources the feed records."""
        self.head = 0
        """The settled head as last seen: every change up to it is committed or gone for good."""
        self._marks = SettledHead()
        self._lock = asyncio.Lock()
        self._news = asyncio.Event()
        self._waiters = 0
        self._reading: dict[tuple[int, int, frozenset[str], int], asyncio.Future[ChangePage]] = {}
        self.closing = False
        """Set when the server begins to shut down: waits end at once, streams close."""
        self._watcher: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None

    async def _read(self, run: Callable[[Connection], Awaitable[T]]) -> T:
        """Reads (again on a new connection if it turns out broken); an unreachable database as a domain error."""
        try:
            return await read_retrying(self.db, run)
        except Exception as exc:
            if classify(exc) in {Violation.UNAVAILABLE, Violation.RETRYABLE}:
                detail = f"The database is unavailable ({type(exc).__name__}); retry shortly."
                raise DatabaseUnavailableError(detail) from exc
            raise

    async def look(self) -> int:
        """Look at the head once: read the last position handed out and whether all before it have settled.

        A transaction id is taken only when a new position was handed out since the last look: an idle feed's
        looks cost one statement each.
        """
        async with self._lock:
            s, marks = self._s, self._marks

            async def run(conn: Connection) -> int:
                high = int(await conn.scalar(s.high, {}) or 0)
                if s.snapshot is None or s.running is None:
                    return marks.written(high)
                if high > marks.newest:  # a new mark, bounded by an id of the look's own (it commits at once)
                    row = await conn.first(s.snapshot, {})
                    if row is None:  # pragma: no cover (the statement always answers one row)
                        detail = "The database did not report its snapshot."
                        raise DatabaseUnavailableError(detail)
                    marks.saw(high, int(row[0]), int(row[1]) + 1)
                    # the writes in flight usually end within that round trip: see at once rather than a tick later
                    return marks.saw(high, int(await conn.scalar(s.running, {})), None)
                if marks.waiting:  # nothing new handed out: only see whether the marks have settled
                    return marks.saw(high, int(await conn.scalar(s.running, {})), None)
                return marks.head

            before = self.head
            self.head = await self._read(run)
            if self.head > before:
                self._news.set()
                self._news = asyncio.Event()
            return self.head

    async def settled_head(self, patience: float = _SETTLE) -> int:
        """The head, after giving the transactions running now up to ``patience`` seconds to settle what they hold.

        Only the positions handed out by the first look are waited for: under a steady stream of writes there is
        always a newer one in flight, and the next read will have it.
        """
        deadline = time.monotonic() + patience
        head = await self.look()
        target = self._marks.newest
        pause = 0.001
        while head < target and time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, TICK)
            head = await self.look()
        return head

    async def wait_beyond(self, position: int, seconds: float) -> int:
        """The head once it passes ``position``, or as it is after ``seconds``."""
        deadline = time.monotonic() + seconds
        self._waiters += 1
        try:
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.get_running_loop().create_task(self._watch())
            while self.head <= position and not self.closing and (left := deadline - time.monotonic()) > 0:
                news = self._news
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(news.wait(), left)
            return self.head
        finally:
            self._waiters -= 1

    async def _watch(self) -> None:
        """Look at the head every ``TICK`` while anyone waits (and a little longer), waking them when it moves."""
        idle_since: float | None = None
        while True:
            if self._waiters:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > _IDLE:
                return
            try:
                await self.look()
            except Exception as exc:  # noqa: BLE001 (the database is down: waiters time out; look again later)
                logger.debug("change feed: cannot read the head: %s", exc)
                await asyncio.sleep(1)
            await asyncio.sleep(TICK)

    def close(self) -> None:
        """The server is shutting down: wake every waiter, and let none wait again."""
        self.closing = True
        self._news.set()

    async def start(self) -> None:
        """Start purging changes older than the retention, once a minute (start-up)."""
        self._purger = asyncio.get_running_loop().create_task(self._purge_forever())

    async def stop(self) -> None:
        """Stop watching the head and purging (shutdown)."""
        for task in (self._watcher, self._purger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._watcher = self._purger = None

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(PURGE_EVERY)
            try:
                purged = await self.purge()
            except Exception as exc:  # noqa: BLE001 (the database is down or busy: the next round catches up)
                logger.warning("change feed: purge failed: %s", exc)
            else:
                if purged:
                    logger.info("change feed: purged %d changes older than the retention", purged)

    async def oldest_after(self) -> int:
        """Where reading from the oldest change kept starts: the newest position purged (0: none was)."""
        return int(await self._read(lambda conn: conn.scalar(self._s.purged_through, {})) or 0)

    async def page(self, after: int, upto: int, resources: frozenset[str], limit: int) -> ChangePage:
        """Changes of ``resources`` after ``after`` up to the head ``upto``, oldest first, at most ``limit``.

        ``next`` is the last change's position when the page is full, else ``upto``: every position up to the head
        is settled, so one read found all there are of these resources. Readers asking for the same page at the
        same time (streams woken by the same change) share one read.

        Raises:
            ChangesExpiredError: changes after ``after`` were purged (checked after the read, so a purge running
                alongside cannot leave a silent gap).
        """
        key = (after, upto, resources & self.resources, limit)
        shared = self._reading.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._page(*key))
            self._reading[key] = shared
            shared.add_done_callback(lambda done: self._read_done(key, done))
        return await asyncio.shield(shared)  # one reader leaving (a stream closed) does not cancel the others' read

    def _read_done(self, key: tuple[int, int, frozenset[str], int], done: "asyncio.Future[ChangePage]") -> None:
        self._reading.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every reader may have left before it ended

    async def _page(self, after: int, upto: int, resources: frozenset[str], limit: int) -> ChangePage:
        s = self._s
        names = sorted(resources)

        async def run(conn: Connection) -> tuple[Sequence[Sequence[Any]], int]:
            rows: Sequence[Sequence[Any]] = []
            if names and upto > after:
                params = {"after": after, "upto": upto, "resources": names, "limit": limit}
                rows = await conn.all(s.page, params)
            purged = int(await conn.scalar(s.purged_through, {}) or 0)
            if purged > after:
                oldest = await conn.scalar(s.oldest, {})
                detail = f"Changes up to position {purged} are no longer kept; `after` was {after}."
                raise ChangesExpiredError(detail, oldest=None if oldest is None else int(oldest))
            return rows, purged

        rows, _ = await self._read(run)
        decoders = self._decoders
        items = [
            Change(
                position=row[0],
                resource=row[1],
                op=row[2],
                id=row[3],
                committed_at=row[4],
                row=decoders[row[1]](row[5]),
            )
            for row in rows
        ]
        full = len(items) == limit
        return ChangePage(items, items[-1].position if full else max(after, upto))

    async def purge(self) -> int:
        """Delete the changes older than the retention (settled ones only); returns how many went.

        Oldest first, in rounds of at most ``PURGE_BATCH`` changes, each its own transaction.
        """
        s = self._s
        upto = await self.settled_head()
        cutoff = utcnow() - self.retention

        async def run(conn: Connection) -> int:
            params = {"cutoff": cutoff, "upto": upto, "batch": PURGE_BATCH}
            through = await conn.scalar(s.purge_upto, params)
            if through is None:
                return 0
            deleted = await conn.rowcount(s.purge, {"through": through})
            await conn.rowcount(s.mark_purged, {"through": through})
            return deleted

        total = 0
        while True:
            async with self.db.transaction() as conn:
                deleted = int(await run(conn))
            total += deleted
            if deleted < PURGE_BATCH:
                return total
