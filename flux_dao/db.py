"""The database engine: one pool per worker, tuned per backend.

Reads run on an AUTOCOMMIT view of the same pool, so a single SELECT is one round trip (no BEGIN/COMMIT); writes run
in a transaction. SQLite gets the pragmas that make it a safe embedded default: foreign keys on (off by default!),
WAL so readers never block the writer, and a busy timeout instead of instant "database is locked" errors.
"""

from typing import Any

import msgspec
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from flux_dao.config import DatabaseSettings

__all__ = ("Database",)

_SQLITE_PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def _json_serializer(value: Any) -> str:
    """Encode JSON columns with msgspec, which handles the UUIDs of ``list`` of uuid fields that ``json`` cannot."""
    return msgspec.json.encode(value).decode()


class Database:
    """The engines for one worker; created eagerly, connected lazily, disposed at shutdown."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.dialect = make_url(settings.url).get_backend_name()
        self.engine: AsyncEngine = create_async_engine(settings.url, **self._engine_options())
        self.read_engine: AsyncEngine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", self._on_sqlite_connect)

    @property
    def is_postgres(self) -> bool:
        """Whether this is the PostgreSQL backend (advisory locks, SQLSTATE codes)."""
        return self.dialect == "postgresql"

    def _engine_options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "json_serializer": _json_serializer,
            "json_deserializer": msgspec.json.decode,
            "pool_size": s.pool_size,
            "max_overflow": 0,
            "pool_timeout": s.pool_timeout,
            "pool_recycle": s.pool_recycle,
        }
        if self.dialect == "postgresql":
            options["connect_args"] = {
                "timeout": s.connect_timeout,
                "server_settings": {"application_name": "flux-dao", "timezone": "UTC"},
            }
        elif self.dialect == "sqlite":
            options["connect_args"] = {"timeout": s.connect_timeout}
        return options

    def _on_sqlite_connect(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in (*_SQLITE_PRAGMAS, f"PRAGMA busy_timeout={int(self.settings.connect_timeout * 1000)}"):
            cursor.execute(pragma)
        cursor.close()

    async def dispose(self) -> None:
        """Close every pooled connection (shutdown)."""
        await self.engine.dispose()
