"""``Idempotency-Key`` (the IETF httpapi draft, as Stripe uses it): a retried write runs once, repeats replay.

A write that carries the header runs in a transaction with the statement that stores its answer (status, the
headers a client acts on, body), so "written" and "answered" commit together. A repeat with the same key and the
same request (method, target, caller, body: the fingerprint) gets the stored answer back with
``Idempotent-Replayed: true`` and writes nothing; the same key on another request is 422; a repeat while the first
still runs is 409 with ``Retry-After``. Keys belong to the service key that sent them (all callers share one space
when the API runs without keys). Answers the client should not see again are not kept: a 503 (the database was
unavailable) or a crash releases the key, so the retry runs for real.
"""

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from litestar import Request, Response

from flux_dao.errors import DatabaseUnavailableError, FieldError, FluxDaoError, InvalidInputError
from flux_dao.http.auth import KEY_NAME_STATE
from flux_dao.http.headers import RawHeaders
from flux_dao.http.problems import PROBLEM_MEDIA_TYPE, problem_for, problem_response
from flux_dao.store import atomically
from flux_dao.store.db import Connection, Database
from flux_dao.store.idempotency import Claim, IdempotencyRecords, Record, StoredAnswer

__all__ = ("KEY_HEADER", "REPLAYED_HEADER", "Idempotency", "Write")

KEY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
_KEY: Final = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")
"""1 to 255 printable ASCII characters, not starting or ending with a space."""
_KEPT_HEADERS: Final = ("location", "etag")
_PURGE_SECONDS: Final = 60.0
_RELEASE_SECONDS: Final = 1.0

Write = Callable[[Connection], Awaitable[Response[Any]]]
"""A write handler's work as steps on one transaction's connection, and the response it makes."""

logger = logging.getLogger(__name__)


class Idempotency:
    """Runs writes that carry an ``Idempotency-Key``; purges expired records in the background."""

    def __init__(self, records: IdempotencyRecords, db: Database) -> None:
        self.records = records
        self.db = db
        self._purger: asyncio.Task[None] | None = None
        self._unreleased: set[Claim] = set()
        """Keys whose release failed (the database was unreachable): released again in the background."""

    @staticmethod
    def key(request: Request[Any, Any, Any]) -> str | None:
        """The request's key, None without one; a malformed one is a 422 naming the header."""
        key = RawHeaders(request.scope).get(KEY_HEADER)
        if key is not None and not _KEY.match(key):
            message = "must be 1 to 255 printable ASCII characters, without leading or trailing spaces"
            raise InvalidInputError([FieldError(KEY_HEADER, message)])
        return key

    async def run(
        self,
        request: Request[Any, Any, Any],
        key: str,
        write: Write,
        refine: Callable[[FluxDaoError], FluxDaoError] | None = None,
    ) -> Response[Any]:
        """Run ``write`` once for ``key``: its answer now and to every repeat, or the refusal of a repeat.

        ``refine`` adds what the caller knows to an error before it is answered and stored (a batch: which operation).
        """
        key_name = str(request.scope.get("state", {}).get(KEY_NAME_STATE, ""))
        fingerprint = await _fingerprint(request, key_name)
        claim = await self.records.claim(key_name, key, fingerprint)
        if isinstance(claim, Record):
            return _repeat(claim, fingerprint, key)
        try:
            answer = await atomically(self.db, lambda conn: self._answered(conn, write, claim))
        except (DatabaseUnavailableError, asyncio.CancelledError):
            await self._release(claim)
            raise
        except FluxDaoError as exc:  # refused (404, 409, 412, 422...): that is the answer
            answer = _stored(problem_for(request, refine(exc) if refine is not None else exc))
            try:
                await self.records.answer(claim, answer)
            except Exception:
                await self._release(claim)
                raise
        except BaseException:
            await self._release(claim)
            raise
        return _response(answer, replayed=False)

    async def _answered(self, conn: Connection, write: Write, claim: Claim) -> StoredAnswer:
        answer = _stored(await write(conn))
        await self.records.answer_on(conn, claim, answer)
        return answer

    async def _release(self, claim: Claim) -> None:
        """Free the key for a retry.

        If even that fails (the database is unreachable: often why the write failed), the background task tries
        again every second, so a retry is not told "in progress" for a whole lease.
        """
        try:
            await asyncio.shield(self.records.release(claim))
        except Exception:  # noqa: BLE001 (whatever it was, the key must not stay claimed)
            self._unreleased.add(claim)

    async def start(self) -> None:
        """Start the background work: releasing keys that could not be released, purging expired records."""
        self._purger = asyncio.get_running_loop().create_task(self._tend_forever())

    async def stop(self) -> None:
        """Stop purging."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None

    async def _tend_forever(self) -> None:
        last_purge = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(_RELEASE_SECONDS)
            for claim in list(self._unreleased):
                with contextlib.suppress(Exception):  # still unreachable: the next round tries again
                    await self.records.release(claim)
                    self._unreleased.discard(claim)
            if asyncio.get_running_loop().time() - last_purge < _PURGE_SECONDS:
                continue
            last_purge = asyncio.get_running_loop().time()
            with contextlib.suppress(DatabaseUnavailableError):  # the next round tries again
                purged = await self.records.purge()
                if purged:
                    logger.debug("purged %d expired idempotency records", purged)


async def _fingerprint(request: Request[Any, Any, Any], key_name: str) -> str:
    """What makes two requests "the same": method, target (path and query), caller and body bytes."""
    scope = request.scope
    parts = [
        scope["method"].encode(),
        scope.get("raw_path") or scope["path"].encode(),
        scope.get("query_string", b""),
        key_name.encode(),
        await request.body(),
    ]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _repeat(record: Record, fingerprint: str, key: str) -> Response[Any]:
    if record.fingerprint != fingerprint:
        detail = f"The Idempotency-Key {key!r} was used for another request (method, path or body differ)."
        return problem_response("idempotency-key-reused", detail)
    if record.answer is None:
        detail = f"The request with Idempotency-Key {key!r} is still running; retry shortly."
        return problem_response("idempotency-in-progress", detail, headers={"Retry-After": "1"})
    return _response(record.answer, replayed=True)


def _stored(response: Response[Any]) -> StoredAnswer:
    """What a repeat must receive of ``response``: its status, kept headers and media type, its body as bytes."""
    content = response.content
    body = b"" if content is None else content if isinstance(content, bytes) else msgspec.json.encode(content)
    headers = {name: value for name, value in response.headers.items() if name.lower() in _KEPT_HEADERS}
    media_type = str(response.media_type)
    if body:
        headers["Content-Type"] = PROBLEM_MEDIA_TYPE if media_type == PROBLEM_MEDIA_TYPE else "application/json"
    return StoredAnswer(response.status_code or 200, headers, body)


def _response(answer: StoredAnswer, *, replayed: bool) -> Response[Any]:
    headers = dict(answer.headers)
    media_type = headers.pop("Content-Type", "application/json")
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(content=answer.body or None, status_code=answer.status, headers=headers, media_type=media_type)
