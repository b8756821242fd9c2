"""Whether the live database still matches the manifest, for ``/ready``, without reflecting it on every probe.

A look (reflect the manifest's tables, compare them with the manifest-built metadata) costs a few dozen catalog
queries, so a worker looks when it starts, then again only when ``/ready`` sees the database's migration revision
change (the probe waits for that look: its answer is about the new revision) or the last look is older than
``FLUX_DAO_SCHEMA_RECHECK`` seconds (looked at again in the background: probes answer from the last look meanwhile,
so a slow catalog never makes a probe time out). Looks run one at a time, on a connection of their own (not the
request pool), bounded by the database timeouts.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from flux_dao.config import Settings
from flux_dao.store.drift import Difference, drift_message
from flux_dao.store.migrations import database_drift, inspect_schema

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
        self._task: asyncio.Task[None] | None = None
        """The start-up look, or the last background one."""

    async def start(self) -> None:
        """Look once in the background as the worker starts (start-up never waits for it); log what it finds."""
        self._task = asyncio.create_task(self._quiet_look("at start-up"))

    async def stop(self) -> None:
        """Cancel a look still running."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def current(self, revisions: frozenset[str]) -> list[Difference]:
        """The differences for ``revisions`` (as ``/ready`` just read them).

        A revision not looked at yet (a migration ran, or the first look has not finished) is looked at now; an
        expired look is redone in the background. Raises whatever reaching the database raised (``TimeoutError``
        when a look outlasts the timeouts).
        """
        if revisions != self._seen:
            async with self._lock:
                if revisions != self._seen:
                    await self._look()
        elif self._expired() and not self._lock.locked() and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._quiet_look("in the background"))
        return self.differences

    def _expired(self) -> bool:
        recheck = self.settings.schema_recheck
        return recheck > 0 and time.monotonic() - self._looked_at >= recheck

    async def _quiet_look(self, when: str) -> None:
        try:
            async with self._lock:
                await self._look()
        except Exception as exc:  # noqa: BLE001 (the database is down: /ready looks again and says so)
            logger.warning("could not compare the database schema with the manifest %s: %r", when, exc)

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
            return {"command_timeout": db.command_timeout}
        return {"timeout": db.connect_timeout}  # SQLite's wait for a lock
