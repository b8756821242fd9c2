"""Alembic, driven from the manifest-built metadata.

``migrations/env.py`` is two lines that call :func:`run_env`; everything else is here: upgrade under a PostgreSQL
advisory lock (replicas starting together migrate once), autogenerate from the manifest, the revision moves of the
``migrations`` commands, and the comparisons that catch schema drift (manifest vs. the schema the migrations produce,
manifest vs. the live database) for ``check``, ``serve`` and ``/ready``.
"""

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import sqlalchemy as sa
from advanced_alchemy.types import GUID
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from flux_dao.config import DatabaseSettings, Settings
from flux_dao.server_defaults import RandomUUID
from flux_dao.store.change_triggers import sync_change_triggers
from flux_dao.store.db import connect_once
from flux_dao.store.drift import Difference, describe, harmless_in_database

__all__ = (
    "ADVISORY_LOCK_KEY",
    "Move",
    "Schema",
    "alembic_config",
    "compare_server_default",
    "compare_type",
    "current_revisions",
    "database_drift",
    "downgrade",
    "head_drift",
    "init_migrations",
    "inspect_schema",
    "live_drift",
    "make_migration",
    "manifest_metadata",
    "migration_heads",
    "read_schema",
    "render_item",
    "revisions",
    "run_env",
    "schema_diff",
    "spelled_default",
    "unadopted_tables",
    "upgrade",
)

ADVISORY_LOCK_KEY: Final = 0x666C7578  # "flux"
"""PostgreSQL advisory lock held while migrating, so concurrent starts migrate one at a time."""

ENV_PY: Final = '''"""Alembic environment: flux-dao builds the metadata from the manifest beside this folder."""

from flux_dao.store.migrations import run_env

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


_CAST: Final = re.compile(r"::[a-z_ ]+(?:\([0-9, ]*\))?$")
_SPACE_BESIDE_PUNCTUATION: Final = re.compile(r"\s*([(),|&+])\s*")


def _unwrapped(text: str) -> str:
    """``text`` without parentheses around the whole of it."""
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for position, char in enumerate(text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0 and position < len(text) - 1:
                return text  # "(a) || (b)": the first parenthesis closes early
        text = text[1:-1].strip()
    return text


def spelled_default(default: str | None) -> str | None:
    """A server default as SQL text, without the spelling each database adds when it reports it back.

    SQLite keeps the parentheses of the DDL (``(false)``), PostgreSQL adds casts (``'active'::text``,
    ``'-1'::integer``).
    """
    if default is None:
        return None
    text = _SPACE_BESIDE_PUNCTUATION.sub(r"\1", " ".join(default.split()))
    previous = None
    while text != previous:
        previous = text
        text = _CAST.sub("", _unwrapped(text))
    if len(text) >= 2 and text[0] == text[-1] == "'":  # a quoted literal
        text = text[1:-1].replace("''", "'")
    return text


def compare_server_default(
    _context: MigrationContext,
    _inspected_column: Any,
    _metadata_column: Any,
    inspected_default: str | None,
    _metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool:
    """Whether a column's server default differs from the manifest's, compared as text once both are unwrapped.

    Alembic's own comparison is off by default because of false positives; this one is exact on what flux-dao
    writes (literals, ``CURRENT_TIMESTAMP``, :func:`~flux_dao.server_defaults.random_uuid`).
    """
    return spelled_default(inspected_default) != spelled_default(rendered_metadata_default)


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render :func:`random_uuid` by name in a revision, not as one backend's SQL, so it runs on both."""
    if type_ == "server_default" and isinstance(getattr(obj, "arg", None), RandomUUID):
        autogen_context.imports.add("import flux_dao.server_defaults")
        return "flux_dao.server_defaults.random_uuid()"
    return False  # alembic's own rendering


COMPARISON: Final[dict[str, Any]] = {"compare_type": compare_type, "compare_server_default": compare_server_default}
"""How autogenerate and the drift checks compare a schema with the manifest: the same rules for both."""


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


def _scripts(folder: Path) -> ScriptDirectory | None:
    if not (folder / "env.py").is_file():
        return None
    config = Config()
    config.set_main_option("script_location", str(folder))
    return ScriptDirectory.from_config(config)


def migration_heads(folder: Path) -> frozenset[str] | None:
    """The head revision(s) of a migrations folder, or None when the manifest has none."""
    scripts = _scripts(folder)
    return None if scripts is None else frozenset(scripts.get_heads())


def revisions(folder: Path) -> list[Script]:
    """Every revision of a migrations folder, newest first (empty when there is none)."""
    scripts = _scripts(folder)
    return [] if scripts is None else list(scripts.walk_revisions())


class Schema(NamedTuple):
    """What a database holds: its revision(s) and how its schema differs from the manifest (alembic diffs)."""

    revisions: tuple[str, ...]
    diffs: list[Any]


def read_schema(connection: Connection, metadata: sa.MetaData | None = None) -> Schema:
    """The revision(s) of the database on ``connection`` and, given the manifest's ``metadata``, its diffs from it.

    Only the manifest's tables are read: other tables in the same database are none of flux-dao's business.
    """
    context = MigrationContext.configure(connection)
    current = tuple(sorted(context.get_current_heads()))
    if metadata is None:
        return Schema(current, [])
    tables = set(metadata.tables)
    context = MigrationContext.configure(
        connection,
        opts={**COMPARISON, "include_name": lambda name, kind, _: kind != "table" or name in tables},
    )
    with _quiet("alembic.autogenerate"):  # its "Detected ..." lines would read as if a migration were being made
        return Schema(current, list(compare_metadata(context, metadata)))


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Logger ``name`` says nothing below WARNING for the block: drift is reported in words, not in its lines."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)


async def inspect_schema(
    database: DatabaseSettings, metadata: sa.MetaData | None = None, *, connect_args: dict[str, Any] | None = None
) -> Schema:
    """:func:`read_schema` of ``database``, on a connection of its own."""
    async with connect_once(database, connect_args) as conn:
        return await conn.run_sync(read_schema, metadata)


def current_revisions(settings: Settings) -> tuple[str, ...]:
    """The revision(s) the database is at; empty when it was never migrated (a missing SQLite file stays missing).

    Read where migrations run (``DATABASE_DIRECT_URL`` when set), so migrating never needs the pooler.
    """
    database = settings.database.for_migrations()
    if _missing_sqlite_file(database):
        return ()
    return asyncio.run(inspect_schema(database)).revisions


def _missing_sqlite_file(database: DatabaseSettings) -> bool:
    """Whether ``database`` is a SQLite file that does not exist yet (reading it would create it)."""
    url = sa.engine.make_url(database.url)
    return url.get_backend_name() == "sqlite" and bool(url.database) and not Path(str(url.database)).exists()


class Move(NamedTuple):
    """A database's revision(s) before and after an upgrade or a downgrade."""

    before: tuple[str, ...]
    after: tuple[str, ...]


def unadopted_tables(settings: Settings) -> list[str]:
    """The manifest's tables a database without any migration history already holds: another tool made them.

    Migrating it would try to create them again; ``flux-dao adopt`` is the way in. Empty for a database at some
    revision, or one that has none of the tables.
    """
    database = settings.database.for_migrations()
    if _missing_sqlite_file(database):
        return []
    wanted = [t.name for t in manifest_metadata(settings).sorted_tables]

    def read(connection: Connection) -> list[str]:
        if MigrationContext.configure(connection).get_current_heads():
            return []
        present = set(sa.inspect(connection).get_table_names())
        return [name for name in wanted if name in present]

    async def run() -> list[str]:
        async with connect_once(database) as conn:
            return await conn.run_sync(read)

    return asyncio.run(run())


def _move(settings: Settings, run: Callable[[Config], None]) -> Move:
    before = current_revisions(settings)
    run(alembic_config(settings))
    return Move(before, current_revisions(settings))


def upgrade(settings: Settings, revision: str = "head") -> Move:
    """Bring the database to ``revision`` (creates the SQLite file if needed)."""
    return _move(settings, lambda config: command.upgrade(config, revision))


def downgrade(settings: Settings, revision: str) -> Move:
    """Take the database back to ``revision`` (``base``: before the first one), running each ``downgrade()``."""
    return _move(settings, lambda config: command.downgrade(config, revision))


@contextlib.contextmanager
def _scratch_at_head(settings: Settings) -> Iterator[Connection]:
    """A connection to a throwaway SQLite database brought to the migration head.

    That is the schema the migrations produce, made without touching (or needing) ``DATABASE_URL``. It runs in
    memory on the standard library's ``sqlite3`` directly: through aiosqlite and a file, the thousands of small
    statements of an upgrade and a reflection cost a thread hop and a sync each (3.8 s against 1.6 s for a
    100-resource manifest). alembic's "Running upgrade"
    lines are not logged for it: they would read as if the real database were being migrated.
    """
    engine = sa.create_engine("sqlite://", poolclass=NullPool)  # in memory: it lives as long as its one connection
    try:
        with engine.connect() as connection:
            config = alembic_config(settings)
            config.attributes["connection"] = connection
            with _quiet("alembic"):
                command.upgrade(config, "head")
            connection.commit()
            yield connection
    finally:
        engine.dispose()


def make_migration(settings: Settings, message: str) -> str | None:
    """Autogenerate a revision from the manifest; returns its path, or None when nothing changed.

    The comparison runs against a scratch SQLite database brought to the current head, never against
    ``DATABASE_URL``: making a migration must not touch (or need) a real database, and a revision rendered in
    batch mode runs on SQLite and PostgreSQL alike.
    """
    init_migrations(settings.migrations_dir)
    with _scratch_at_head(settings) as connection:
        config = alembic_config(settings)
        config.attributes["connection"] = connection

        def skip_empty(_context: Any, _revision: Any, directives: list[Any]) -> None:
            if directives[0].upgrade_ops.is_empty():
                directives.clear()

        config.attributes["process_revision_directives"] = skip_empty
        scripts = command.revision(config, message=message, autogenerate=True)
    created = [script.path for script in (scripts if isinstance(scripts, list) else [scripts]) if script is not None]
    return created[0] if created else None


def manifest_metadata(settings: Settings) -> sa.MetaData:
    """The manifest-built metadata, built once per process for a manifest file as it is now."""
    stat = settings.manifest_path.stat()
    return _metadata_of(settings.manifest_path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _metadata_of(path: Path, _mtime_ns: int, _size: int) -> sa.MetaData:
    from flux_dao.manifest import load_manifest  # noqa: PLC0415
    from flux_dao.schema import build_resources  # noqa: PLC0415 (keeps `flux-dao migrate` light)

    return build_resources(load_manifest(path)).metadata


def head_drift(settings: Settings) -> list[Difference] | None:
    """How the manifest differs from the schema its migrations produce; None when it has no migrations yet."""
    if migration_heads(settings.migrations_dir) is None:
        return None
    metadata = manifest_metadata(settings)
    with _scratch_at_head(settings) as connection:
        schema = read_schema(connection, metadata)
    return describe(schema.diffs, "the migrations")


def database_drift(diffs: list[Any]) -> list[Difference]:
    """The live database's differences from the manifest that matter to the API, in words."""
    items = [item for diff in diffs for item in (diff if isinstance(diff, list) else [diff])]
    return describe([item for item in items if not harmless_in_database(item)], "the database")


def live_drift(settings: Settings) -> list[Difference]:
    """How the database differs from the manifest, in the ways that matter to the API (read where migrations run)."""
    return database_drift(schema_diff(settings))


def schema_diff(settings: Settings) -> list[Any]:
    """What autogenerate would change between the database and the manifest (empty when in step)."""
    database = settings.database.for_migrations()
    return asyncio.run(inspect_schema(database, manifest_metadata(settings))).diffs


def run_env() -> None:
    """Body of ``migrations/env.py``: run alembic online against the configured database."""
    from alembic import context  # noqa: PLC0415 (only importable while alembic runs env.py)

    config = context.config
    settings: Settings = config.attributes.get("flux_settings") or Settings.from_env()
    directives = config.attributes.get("process_revision_directives")
    built = manifest_metadata(settings)
    metadata = built if directives is not None else None  # only autogenerate compares

    def migrate(connection: Connection) -> None:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                **COMPARISON,
                render_item=render_item,
                render_as_batch=True,  # portable revisions: plain ALTERs on PostgreSQL, table copies on SQLite
                process_revision_directives=directives,
            )
            with context.begin_transaction():
                context.run_migrations()
                if directives is None:  # a real upgrade or downgrade, not autogenerate's comparison
                    sync_change_triggers(connection, built)
        finally:
            if is_postgres:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                connection.commit()

    given: Connection | None = config.attributes.get("connection")  # a scratch database's (``_scratch_at_head``)
    if given is not None:
        migrate(given)
        return

    async def run() -> None:  # straight to PostgreSQL: the advisory lock is a session's, which a pooler drops
        async with connect_once(settings.database.for_migrations()) as conn:
            await conn.run_sync(migrate)

    asyncio.run(run())
