"""Alembic, driven from the manifest-built metadata.

``migrations/env.py`` is two lines that call :func:`run_env`; everything else is here: upgrade under a PostgreSQL
advisory lock (replicas starting together migrate once), autogenerate from the manifest, and the head/diff checks
that ``/ready`` and the tests use.
"""

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from advanced_alchemy.types import GUID
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from flux_dao.config import Settings
from flux_dao.db import connect_once

__all__ = (
    "ADVISORY_LOCK_KEY",
    "alembic_config",
    "compare_type",
    "init_migrations",
    "make_migration",
    "migration_heads",
    "run_env",
    "schema_diff",
    "upgrade",
)

ADVISORY_LOCK_KEY: Final = 0x666C7578  # "flux"
"""PostgreSQL advisory lock held while migrating, so concurrent starts migrate one at a time."""

ENV_PY: Final = '''"""Alembic environment: flux-dao builds the metadata from the manifest beside this folder."""

from flux_dao.migrations import run_env

run_env()
'''

SCRIPT_MAKO: Final = '''"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""
from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
${imports if imports else ""}
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''


def compare_type(
    context: MigrationContext, _inspected: Any, _column: Any, _inspected_type: Any, metadata_type: Any
) -> bool | None:
    """Alembic's type comparison, minus one false positive: SQLite reflects a GUID's BINARY(16) as NUMERIC(16)."""
    if context.dialect.name == "sqlite" and isinstance(metadata_type, GUID):
        return False
    return None  # alembic's default comparison


def init_migrations(folder: Path) -> None:
    """Create an alembic folder (env.py, script.py.mako, versions/) if it does not exist yet."""
    (folder / "versions").mkdir(parents=True, exist_ok=True)
    for name, text in (("env.py", ENV_PY), ("script.py.mako", SCRIPT_MAKO)):
        path = folder / name
        if not path.exists():
            path.write_text(text, encoding="utf-8")


def alembic_config(settings: Settings) -> Config:
    """An alembic ``Config`` for the manifest's migrations folder and the configured database."""
    config = Config()
    config.set_main_option("script_location", str(settings.migrations_dir))
    config.set_main_option("version_path_separator", "os")
    config.attributes["flux_settings"] = settings
    return config


def migration_heads(folder: Path) -> frozenset[str] | None:
    """The head revision(s) of a migrations folder, or None when the manifest has none."""
    if not (folder / "env.py").is_file():
        return None
    config = Config()
    config.set_main_option("script_location", str(folder))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to ``revision`` (creates the SQLite file if needed)."""
    command.upgrade(alembic_config(settings), revision)


def make_migration(settings: Settings, message: str) -> str | None:
    """Autogenerate a revision from the manifest; returns its path, or None when nothing changed.

    The comparison runs against a scratch SQLite database brought to the current head, never against
    ``DATABASE_URL``: making a migration must not touch (or need) a real database, and a revision rendered in
    batch mode runs on SQLite and PostgreSQL alike.
    """
    init_migrations(settings.migrations_dir)
    with tempfile.TemporaryDirectory() as scratch_dir:
        url = f"sqlite+aiosqlite:///{Path(scratch_dir) / 'scratch.db'}"
        scratch = replace(settings, database=replace(settings.database, url=url))
        upgrade(scratch)
        config = alembic_config(scratch)

        def skip_empty(_context: Any, _revision: Any, directives: list[Any]) -> None:
            if directives[0].upgrade_ops.is_empty():
                directives.clear()

        config.attributes["process_revision_directives"] = skip_empty
        scripts = command.revision(config, message=message, autogenerate=True)
    created = [script.path for script in (scripts if isinstance(scripts, list) else [scripts]) if script is not None]
    return created[0] if created else None


def schema_diff(settings: Settings) -> list[Any]:
    """What autogenerate would change between the database and the manifest (empty when in step)."""
    from flux_dao.generator import build_resources  # noqa: PLC0415 (keeps `flux-dao migrate` light)
    from flux_dao.manifest import load_manifest  # noqa: PLC0415

    metadata = build_resources(load_manifest(settings.manifest_path)).metadata

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
        return list(compare_metadata(context, metadata))

    async def run() -> list[Any]:
        async with connect_once(settings.database) as conn:
            return await conn.run_sync(compare)

    return asyncio.run(run())


def run_env() -> None:
    """Body of ``migrations/env.py``: run alembic online against the configured database."""
    from alembic import context  # noqa: PLC0415 (only importable while alembic runs env.py)

    from flux_dao.generator import build_resources  # noqa: PLC0415
    from flux_dao.manifest import load_manifest  # noqa: PLC0415

    config = context.config
    settings: Settings = config.attributes.get("flux_settings") or Settings.from_env()
    metadata = build_resources(load_manifest(settings.manifest_path)).metadata
    directives = config.attributes.get("process_revision_directives")

    def migrate(connection: Connection) -> None:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                compare_type=compare_type,
                render_as_batch=True,  # portable revisions: plain ALTERs on PostgreSQL, table copies on SQLite
                process_revision_directives=directives,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_postgres:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                connection.commit()

    async def run() -> None:
        async with connect_once(settings.database) as conn:
            await conn.run_sync(migrate)

    asyncio.run(run())
