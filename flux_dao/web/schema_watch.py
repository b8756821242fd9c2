"""Whether the live database still matches the manifest, for ``/ready``, without reflecting it on every probe.

A look (reflect the manifest's tables, compare them with the manifest-built metadata) costs a few dozen catalog
queries, so a worker looks when it starts, then again only when ``/ready`` sees the database's migration revision
change or the last look is older than ``FLUX_DAO_SCHEMA_RECHECK`` seconds. Looks run one at a time, on a connection
of their own (not the request pool), bounded by the database timeouts.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from flux_dao.config import Settings
from flux_dao.drift import Difference, drift_message
from flux_dao.migrations import database_drift, inspect_schema

__all__ = ("SchemaWatch",)

logger = logging.getLogger("flux_dao")


class SchemaWatch:
    """The live database's differences from the manifest, as of the last look."""

    def __init__(self, settings: Settings, metadata: sa.MetaData) -> None:
        self.settings = settings
        self.metadata = metadata
        self.differences: list[Difference] = []
        """What the last look found (empty: in step, or no look yet)."""
        self._seen: frozenset[str] | None = None
        self._looked_at = 0.0
        self._lock = asyncio.Lock()
        self._startup: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Look once in the background as the worker starts (start-up never waits for it); log what it finds."""
        self._startup = asyncio.create_task(self._first_look())

    async def stop(self) -> None:
        """Cancel a start-up look still running."""
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._startup

    async def current(self, revisions: frozenset[str]) -> list[Difference]:
        """The differences, looking again first if ``revisions`` (as ``/ready`` just read them) or time says so.

        Raises whatever reaching the database raised (``TimeoutError`` when a look outlasts the timeouts).
        """
        if self._stale(revisions):
            async with self._lock:
                if self._stale(revisions):
                    await self._look()
        return self.differences

    def _stale(self, revisions: frozenset[str]) -> bool:
        recheck = self.settings.schema_recheck
        expired = recheck > 0 and time.monotonic() - self._looked_at >= recheck
        return revisions != self._seen or expired

    async def _first_look(self) -> None:
        try:
            async with self._lock:
                await self._look()
        except Exception as exc:  # noqa: BLE001 (a database down at start-up: /ready looks again and says so)
            logger.warning("could not compare the database schema with the manifest at start-up: %r", exc)

    async def _look(self) -> None:
        db = self.settings.database
        schema = await asyncio.wait_for(
            inspect_schema(db, self.metadata, connect_args=self._connect_args()),
            timeout=2 * db.connect_timeout + 4 * max(db.statement_timeout, 1.0),
        )
        differences = database_drift(schema.diffs)
        if differences and differences != self.differences:
            logger.error("schema drift: %s", drift_message(differences, "the database"))
        self.differences = differences
        self._seen = frozenset(schema.revisions)
        self._looked_at = time.monotonic()

    def _connect_args(self) -> dict[str, Any]:
        db = self.settings.database
        if make_url(db.url).get_backend_name() == "postgresql":
            command_timeout = db.statement_timeout + db.connect_timeout if db.statement_timeout > 0 else None
            return {"timeout": db.connect_timeout, "command_timeout": command_timeout}
        return {"timeout": db.connect_timeout}
