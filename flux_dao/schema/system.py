"""The engine's own tables, beside the manifest's: built into the same ``MetaData``, so migrations carry them.

Their names start with ``flux_dao_``, which the manifest may not use for a resource.
"""

from typing import Final

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC

from flux_dao.manifest.names import SYSTEM_PREFIX

__all__ = ("IDEMPOTENCY_TABLE", "add_system_tables")

IDEMPOTENCY_TABLE: Final = f"{SYSTEM_PREFIX}idempotency_keys"


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
