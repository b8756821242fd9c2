"""id columns get a database default; filter and reference fields get an index

id: gen_random_uuid() on PostgreSQL, 16 random bytes with the UUIDv4 bits on SQLite (flux_dao.server_defaults),
so rows inserted by SQL tools get an id. The indexes are the ones the manifest now adds by default.

Revision ID: 824be8037c25
Revises: c9f00535a8ea
Create Date: 2026-11-29 21:09:41.548653
"""
from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text

import flux_dao.server_defaults

revision: str = '824be8037c25'
down_revision: str | Sequence[str] | None = 'c9f00535a8ea'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TABLES = ('users', 'goals', 'tasks', 'conversations', 'patterns', 'notification_log')
INDEXES = {'conversations': 'context_type', 'notification_log': 'channel'}


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('id',
                   existing_type=advanced_alchemy.types.guid.GUID(length=16),
                   server_default=flux_dao.server_defaults.random_uuid(),
                   existing_nullable=False)
            if table in INDEXES:
                batch_op.create_index(batch_op.f(f'ix_{table}_{INDEXES[table]}'), [INDEXES[table]], unique=False)


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table in INDEXES:
                batch_op.drop_index(batch_op.f(f'ix_{table}_{INDEXES[table]}'))
            batch_op.alter_column('id',
                   existing_type=advanced_alchemy.types.guid.GUID(length=16),
                   server_default=None,
                   existing_nullable=False)
