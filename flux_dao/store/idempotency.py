"""Idempotency records: each ``Idempotency-Key``'s first answer, in the database (every worker and restart sees it).

A record is claimed (inserted without an answer) before its request runs, in a statement of its own, so a repeat
that arrives meanwhile finds it and is told the first is still running. The answer is stored by the statement that
follows the write, in the write's transaction: a write that committed always has its answer, and one that rolled
back left none. A record claimed by a worker that died before answering is taken over once ``LEASE`` has passed.
"""

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from flux_dao.errors import ConflictError, DatabaseUnavailableError
from flux_dao.schema.system import IDEMPOTENCY_TABLE
from flux_dao.store.db import Connection, Database
from flux_dao.store.integrity import Violation, classify

__all__ = ("LEASE", "Claim", "IdempotencyRecords", "Record", "StoredAnswer")

LEASE: Final = timedelta(seconds=60)
"""How long a claimed record without an answer stays "in progress": past that, its worker is taken to have died
(a request's statements are bounded by ``DB_STATEMENT_TIMEOUT``, far below it)."""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer as sent: status, the headers a repeat must see again, and the body's bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """A key this request holds: it runs, and answers or releases it."""

    key_name: str
    key: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Record:
    """A key already claimed: its fingerprint and, once the first request finished, its answer."""

    fingerprint: str
    answer: StoredAnswer | None


class IdempotencyRecords:
    """The statements on the records table, compiled once per worker."""

    def __init__(self, metadata: sa.MetaData, db: Database, ttl: timedelta) -> None:
        table = metadata.tables[IDEMPOTENCY_TABLE]
        self.db = db
        self.ttl = ttl
        c = table.c
        key = [c.key_name == sa.bindparam("key_name"), c.key == sa.bindparam("key")]
        insert = (postgresql.insert if db.is_postgres else sqlite.insert)(table)
        self._claim = insert.on_conflict_do_nothing(index_elements=[c.key_name, c.key]).returning(c.key)
        self._read = sa.select(c.fingerprint, c.status, c.headers, c.body, c.started_at, c.expires_at).where(*key)
        fresh = {
            "fingerprint": sa.bindparam("fingerprint"),
            "status": None,
            "headers": None,
            "body": None,
            "started_at": sa.bindparam("started_at", type_=c.started_at.type),
            "expires_at": sa.bindparam("expires_at", type_=c.expires_at.type),
        }
        # taken over only if it is still the record that was read (another repeat may be taking it over too)
        self._take_over = (
            sa.update(table)
            .where(*key, c.started_at == sa.bindparam("was_started", type_=c.started_at.type))
            .values(fresh)
            .returning(c.key)
        )
        self._answer = (
            sa.update(table)
            .where(*key, c.started_at == sa.bindparam("started_at", type_=c.started_at.type))
            .values(status=sa.bindparam("status"), headers=sa.bindparam("headers"), body=sa.bindparam("body"))
        )
        # only the claim that was made (another request may have taken an abandoned key over since)
        self._release = sa.delete(table).where(
            *key, c.status.is_(None), c.started_at == sa.bindparam("started_at", type_=c.started_at.type)
        )
        self._purge = sa.delete(table).where(c.expires_at < sa.bindparam("now", type_=c.expires_at.type))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A connection for the records' own statements; the database unreachable or not migrated is a 503."""
        try:
            async with self.db.writing() as conn:
                yield conn
        except DatabaseUnavailableError:
            raise
        except Exception as exc:
            if classify(exc) not in {Violation.UNAVAILABLE, Violation.RETRYABLE, Violation.SCHEMA}:
                raise  # anything else is a bug, and answers 500 as one
            detail = f"The database is unavailable ({type(exc).__name__}); retry shortly."
            raise DatabaseUnavailableError(detail) from exc

    async def claim(self, key_name: str, key: str, fingerprint: str) -> Claim | Record:
        """Claim ``key`` for a request about to run, or the record that holds it already.

        An expired record, or one whose request has not answered within ``LEASE``, is claimed afresh.
        """
        now = datetime.now(UTC)
        params: dict[str, Any] = {
            "key_name": key_name,
            "key": key,
            "fingerprint": fingerprint,
            "status": None,
            "headers": None,
            "body": None,
            "started_at": now,
            "expires_at": now + self.ttl,
        }
        claim = Claim(key_name, key, now)
        async with self._connection() as conn:
            if await conn.first(self._claim, params) is not None:
                return claim
            found = await conn.first(self._read, params)
            if found is None:  # purged between the two statements: claim it again
                return claim if await conn.first(self._claim, params) is not None else await self._held(conn, params)
            fingerprint_, status, headers, body, started_at, expires_at = found
            abandoned = status is None and started_at + LEASE < now
            if expires_at < now or abandoned:
                taken = await conn.first(self._take_over, params | {"was_started": started_at})
                if taken is not None:
                    return claim
                return await self._held(conn, params)
            return _record(fingerprint_, status, headers, body)

    async def _held(self, conn: Connection, params: dict[str, Any]) -> Record:
        """The record another request just claimed or took over: running, so it has no answer yet."""
        found = await conn.first(self._read, params)
        return Record(str(found[0]) if found else params["fingerprint"], None)

    async def answer_on(self, conn: Connection, claim: Claim, answer: StoredAnswer) -> None:
        """Store ``answer`` on ``conn``: in the transaction of the write it answers.

        Raises:
            ConflictError: the claim is no longer this request's (it ran past ``LEASE`` and a repeat took the key
                over): the write must roll back rather than run twice.
        """
        params = {
            "key_name": claim.key_name,
            "key": claim.key,
            "started_at": claim.started_at,
            "status": answer.status,
            "headers": msgspec.json.encode(answer.headers).decode(),
            "body": answer.body,
        }
        if await conn.rowcount(self._answer, params) != 1:
            detail = f"The request with Idempotency-Key {claim.key!r} ran too long and a repeat took it over."
            raise ConflictError(detail)

    async def answer(self, claim: Claim, answer: StoredAnswer) -> None:
        """Store ``answer`` of a request that wrote nothing (it was refused: 404, 409, 412...)."""
        async with self._connection() as conn:
            with contextlib.suppress(ConflictError):  # taken over: the repeat's answer stands
                await self.answer_on(conn, claim, answer)

    async def release(self, claim: Claim) -> None:
        """Forget a claim whose request failed without an answer worth keeping (503, a crash): it may run again."""
        async with self._connection() as conn:
            params = {"key_name": claim.key_name, "key": claim.key, "started_at": claim.started_at}
            await conn.rowcount(self._release, params)

    async def purge(self) -> int:
        """Delete the records past their expiry; how many."""
        async with self._connection() as conn:
            return await conn.rowcount(self._purge, {"now": datetime.now(UTC)})


def _record(fingerprint: str, status: int | None, headers: str | None, body: bytes | None) -> Record:
    if status is None:
        return Record(fingerprint, None)
    kept: dict[str, str] = msgspec.json.decode(headers or "{}")
    return Record(fingerprint, StoredAnswer(int(status), kept, bytes(body or b"")))
