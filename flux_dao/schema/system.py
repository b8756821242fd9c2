"""The engine's own tables, beside the manifest's: built into the same ``MetaData``, so migrations carry them.

Their names start with ``flux_dao_``, which the manifest may not use for a resource.
"""

from typing import Final

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC

from flux_dao.manifest.names import SYSTEM_PREFIX

__all__ = ("CHANGES_PURGED_TABLE", "CHANGES_TABLE", "IDEMPOTENCY_TABLE", "add_system_tables")

IDEMPOTENCY_TABLE: Final = f"{SYSTEM_PREFIX}idempotency_keys"
CHANGES_TABLE: Final = f"{SYSTEM_PREFIX}changes"
CHANGES_PURGED_TABLE: Final = f"{SYSTEM_PREFIX}changes_purged"

_POSITION: Final = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""A 64-bit position; on SQLite an INTEGER PRIMARY KEY, the rowid: one more than the largest, and the purge always
keeps the newest change, so a position is never given twice. (Not AUTOINCREMENT: its bookkeeping row cost each
write a third of what the change itself did.)"""
_ROW: Final = sa.JSON()
"""JSON text on both (PostgreSQL's ``json``, not ``jsonb``): the feed prints rows as they were made, never queries
them."""


def add_system_tables(metadata: sa.MetaData) -> None:
    """Add the engine's tables to ``metadata``."""
    sa.Table(
        IDEMPOTENCY_TABLE,
        metadata,
        # one key per service key name ('' when the service runs without keys)
        sa.Column("key_name", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, comment="sha256 of method, target, key name, body"),
        sa.Column("status", sa.Integer(), nullable=True, comment="the stored answer's status; null while running"),
        sa.Column("headers", sa.Text(), nullable=True, comment="the stored answer's replayed headers (a JSON object)"),
        sa.Column("body", sa.LargeBinary(), nullable=True, comment="the stored answer's body"),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("expires_at", DateTimeUTC(timezone=True), nullable=False, index=True),
        comment="Idempotency-Key records: each key's first answer, replayed to its repeats until expires_at.",
    )
    sa.Table(
        CHANGES_TABLE,
        metadata,
        sa.Column("position", _POSITION, primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("op", sa.String(6), nullable=False, comment="insert, update or delete"),
        sa.Column("row_id", sa.String(36), nullable=False),
        sa.Column(
            "committed_at",
            DateTimeUTC(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
            comment="when the writing transaction (PostgreSQL) or statement (SQLite) ran",
        ),
        sa.Column("row", _ROW, nullable=False, comment="the row after the change (a delete: before it)"),
        # no index besides the position: every index is paid by every write. Readers scan positions in order (each
        # change once per reader that follows it), and the purge reads the oldest positions.
        comment="The change feed: one row per inserted, updated or deleted resource row, written by triggers.",
    )
    sa.Table(
        CHANGES_PURGED_TABLE,
        metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("through", sa.BigInteger(), nullable=False, comment="the newest position purged"),
        comment="How far the change feed has been purged (one row): an older position answers 410.",
    )
