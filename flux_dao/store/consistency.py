"""Consistency tokens: the primary's WAL position after a request's writes, and the one a client has seen.

A write answers ``X-Flux-Consistency: <position>`` (PostgreSQL's ``pg_lsn`` text, such as ``0/16B3748``). A read
that sends it back is served by a standby only once that standby has replayed that far, so an agent always reads
its own writes even when reads go to a standby (``flux_dao.store.standby``). Tokens are positions in the primary's
WAL, so they mean the same to every replica of flux-dao: no state is kept between requests.
"""

import re
from contextvars import ContextVar
from typing import Final

import sqlalchemy as sa

__all__ = ("CONSISTENCY", "WRITTEN_POSITION", "Consistency", "format_position", "parse_position")

_POSITION: Final = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")

WRITTEN_POSITION: Final = sa.text(
    "SELECT (CASE WHEN current_setting('synchronous_commit') = 'off' THEN pg_current_wal_insert_lsn()"
    " ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint"
)
"""Read right after a write committed: a position at or past its commit record. A synchronous commit has written
its WAL out, so the written position is enough (and, unlike the insert position, it never points past a page
header a standby has no record for); an asynchronous commit's record may not be written yet."""


class Consistency:
    """One request's consistency: the position its client has seen (``seen``) and its own writes' (``written``)."""

    __slots__ = ("malformed", "seen", "written")

    def __init__(self, seen: int | None = None, *, malformed: bool = False) -> None:
        self.seen = seen
        self.malformed = malformed
        """The request sent a token that is not one (refused once the request is known to be allowed)."""
        self.written: int | None = None

    def wrote(self, position: int) -> None:
        """Note a committed write's position (the furthest one, when a request writes more than once)."""
        self.written = position if self.written is None else max(self.written, position)


CONSISTENCY: Final[ContextVar[Consistency | None]] = ContextVar("flux_dao_consistency", default=None)
"""The request being served's consistency (set by ``flux_dao.http.consistency`` when read routing is on)."""


def parse_position(text: str) -> int | None:
    """The position ``0/16B3748`` names, or None when ``text`` is not one."""
    match = _POSITION.fullmatch(text.strip())
    return None if match is None else (int(match[1], 16) << 32) | int(match[2], 16)


def format_position(position: int) -> str:
    """``position`` as PostgreSQL writes a ``pg_lsn``."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
