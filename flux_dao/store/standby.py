"""Plain reads on a streaming standby, with read-your-writes kept by consistency tokens.

Each worker watches the standby (``DATABASE_READ_URL``) and the primary a few times a second: how far the standby
has replayed, and when the primary was last at that position, which gives the lag in seconds. A read without a
token goes to the standby while it is up and at most ``FLUX_DAO_MAX_REPLICA_LAG`` behind. A read with a token (the
position after the client's own write, ``flux_dao.store.consistency``) goes to the standby only once it has
replayed that far, waiting up to ``FLUX_DAO_READ_WAIT`` (looking every few milliseconds while anyone waits); then
the primary serves it. A standby read that fails for any reason is served by the primary instead, and a standby
that cannot be reached is bypassed until it answers again. Only the repository's plain reads come here: the change
feed, idempotency records and the reads inside writes (diagnosing a failed write, an empty PATCH) use the primary.
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Final, TypeVar

import msgspec
import sqlalchemy as sa

from flux_dao.config import DatabaseSettings
from flux_dao.store.consistency import CONSISTENCY, format_position
from flux_dao.store.db import Connection, Database, connection_broken, read_retrying

__all__ = ("Standby", "StandbyStatus")

T = TypeVar("T")

LOOK_EVERY: Final = 0.1
"""Seconds between two looks at the standby's and the primary's positions."""
FOLLOW_EVERY: Final = 0.005
"""Seconds between two looks while a read waits for the standby to reach its token."""
_HISTORY: Final = 6000
"""Primary positions kept (10 minutes of looks) to tell how long ago the primary was where the standby is."""

_REPLAYED: Final = sa.text("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
_PRIMARY_AT: Final = sa.text("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
_log = logging.getLogger("flux_dao")


class StandbyStatus(msgspec.Struct, omit_defaults=True):
    """The standby as ``/ready`` reports it."""

    state: str
    """``up`` (serving reads), ``lagging`` (further behind than allowed: bypassed) or ``down`` (bypassed)."""
    lag_seconds: float | None = None
    """How long ago the primary was where the standby has replayed to (0 when caught up)."""
    replayed: str | None = None
    """The standby's replay position (``pg_lsn``)."""
    reason: str | None = None
    """Why it is down."""


class Standby:
    """One worker's view of the standby, and where each plain read goes."""

    def __init__(self, primary: Database, settings: DatabaseSettings) -> None:
        self.primary = primary
        self.db = Database(settings)
        self.read_wait = primary.settings.read_wait
        self.max_lag = primary.settings.max_replica_lag
        self.replayed = -1
        """The standby's replay position at the last look (-1: not known yet)."""
        self.up = False
        self.reason = "not looked at yet"
        self._primary_at: deque[tuple[float, int]] = deque(maxlen=_HISTORY)
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._watch: asyncio.Task[None] | None = None
        self._follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the standby's pool and start looking at it; until the first look answers, reads go to the primary.

        Start-up never waits for the standby: a down one only means reads go to the primary.
        """
        await self.db.start()
        self._watch = asyncio.get_running_loop().create_task(self._watching())

    async def stop(self) -> None:
        """Stop looking, answer waiting reads (the primary serves them), close the pool."""
        for task in (self._watch, self._follow):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._release_waiters(False)
        await self.db.dispose()

    def lag(self) -> float | None:
        """Seconds since the primary first stood past the standby's replay position (0: caught up; None: down)."""
        if not self.up:
            return None
        for at, position in self._primary_at:  # oldest first
            if position > self.replayed:
                return monotonic() - at
        return 0.0

    def status(self) -> StandbyStatus:
        """For ``/ready``."""
        if not self.up:
            return StandbyStatus(state="down", reason=self.reason)
        lag = self.lag() or 0.0
        return StandbyStatus(
            state="up" if lag <= self.max_lag else "lagging",
            lag_seconds=round(lag, 3),
            replayed=format_position(self.replayed),
        )

    async def read(self, run: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``run``'s reads on the standby when this request may read there, else (or if it fails) the primary."""
        if await self._serves():
            try:
                async with self.db.reading() as conn:
                    return await run(conn)
            except Exception as exc:  # noqa: BLE001 (a recovery conflict, a restart, a timeout: the primary answers)
                if connection_broken(exc) or isinstance(exc, OSError | TimeoutError):
                    self._down(exc)
        return await read_retrying(self.primary, run)

    async def _serves(self) -> bool:
        consistency = CONSISTENCY.get()
        if not self.up or (consistency is not None and consistency.written is not None):
            return False  # down, or a read after this request's own write
        seen = consistency.seen if consistency is not None else None
        if seen is None:
            lag = self.lag()
            return lag is not None and lag <= self.max_lag
        if self.replayed >= seen:
            return True
        return await self._reached(seen)

    async def _reached(self, seen: int) -> bool:
        """Wait (up to ``read_wait``) for the standby to replay ``seen``."""
        if self.read_wait <= 0:
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (seen, waiter)
        self._waiters.append(entry)
        if self._follow is None or self._follow.done():
            self._follow = asyncio.get_running_loop().create_task(self._following())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), self.read_wait)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def _following(self) -> None:
        """Look at the standby's position every few milliseconds while reads wait for it."""
        while self._waiters:
            try:
                await self._look_at_standby()
            except Exception as exc:  # noqa: BLE001 (down: every waiting read goes to the primary)
                self._down(exc)
                self._release_waiters(False)
                return
            waiting = []
            for seen, waiter in self._waiters:
                if self.replayed >= seen:
                    if not waiter.done():
                        waiter.set_result(True)
                else:
                    waiting.append((seen, waiter))
            self._waiters[:] = waiting
            await asyncio.sleep(FOLLOW_EVERY)

    def _release_waiters(self, reached: bool) -> None:
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(reached)
        self._waiters.clear()

    async def _watching(self) -> None:
        while True:
            await self._look()
            await asyncio.sleep(LOOK_EVERY)

    async def _look(self) -> None:
        """One look at both positions; failures mark the standby down (the primary's only skip a sample)."""
        with contextlib.suppress(Exception):
            async with self.primary.reading() as conn:
                self._primary_at.append((monotonic(), await conn.scalar(_PRIMARY_AT, {})))
        try:
            await self._look_at_standby()
        except Exception as exc:  # noqa: BLE001 (whatever it is, reads go to the primary until it answers)
            self._down(exc)
        while len(self._primary_at) > 1 and self._primary_at[0][1] <= self.replayed:
            self._primary_at.popleft()  # the first position past the standby's is the one that tells the lag

    async def _look_at_standby(self) -> None:
        async with self.db.reading() as conn:
            replayed = await conn.scalar(_REPLAYED, {})
        if replayed is None:  # not in recovery: promoted, or not a standby at all
            self._down(None, "it is not a standby (not in recovery): promoted, or DATABASE_READ_URL is wrong")
            return
        if not self.up:
            _log.info("standby answers again: plain reads go to it")
        self.up, self.reason, self.replayed = True, "", replayed

    def _down(self, exc: BaseException | None, reason: str | None = None) -> None:
        reason = reason or f"{type(exc).__name__}: {exc}"
        if self.up:
            _log.warning("standby bypassed, reads go to the primary: %s", reason)
        self.up, self.reason = False, reason
