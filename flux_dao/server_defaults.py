"""SQL expressions the database evaluates as column defaults, spelled for each backend.

Migrations refer to :func:`random_uuid` by this module's name (autogenerate renders it so), so both stay stable.
"""

import uuid
from typing import Any, Final

import sqlalchemy as sa
from advanced_alchemy.types import GUID
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ("SQLITE_RANDOM_UUID", "RandomUUID", "random_uuid")

SQLITE_RANDOM_UUID: Final = (
    "CAST(randomblob(6) || char(64 + (random() & 15)) || randomblob(1)"
    " || substr(CAST(char(128 + (random() & 63)) AS BLOB), 2) || randomblob(7) AS BLOB)"
)
"""16 random bytes with the UUIDv4 version (byte 6: ``0x4_``) and variant (byte 8: ``0b10______``) bits: the
``BINARY(16)`` form a GUID takes on SQLite. ``char(64..79)`` is one ASCII byte; ``char(128..191)`` encodes as two
UTF-8 bytes, the second of which is ``0x80..0xBF``. SQLite has no ``unhex()`` before 3.41."""


class RandomUUID(sa.sql.expression.ColumnElement[uuid.UUID]):
    """A new random (version 4) UUID, made by the database: ``gen_random_uuid()`` on PostgreSQL (built in since 13)."""

    type = GUID()
    inherit_cache = True


def random_uuid() -> RandomUUID:
    """The ``server_default`` of every ``id`` column, so rows inserted by SQL tools get an id too."""
    return RandomUUID()


@compiles(RandomUUID, "postgresql")
def _postgresql(_element: RandomUUID, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "gen_random_uuid()"


@compiles(RandomUUID, "sqlite")
def _sqlite(_element: RandomUUID, _compiler: SQLCompiler, **_kw: Any) -> str:
    return SQLITE_RANDOM_UUID


@compiles(RandomUUID)
def _other(_element: RandomUUID, compiler: SQLCompiler, **_kw: Any) -> str:
    if compiler.dialect.name == "default":  # str(): messages and debugging
        return "random_uuid()"
    msg = f"flux-dao has no random UUID expression for the {compiler.dialect.name} database"
    raise CompileError(msg)
