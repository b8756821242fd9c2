import asyncio
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flux_dao.config import Settings
from flux_dao.migrations import migration_heads, schema_diff, upgrade
from tests import factories
from tests.conftest import ROOT

TABLES = {"users", "goals", "tasks", "conversations", "patterns", "notification_log"}


Snapshot = tuple[str | None, dict[str, list[tuple[str, str, bool]]]]


def inspect_database(settings: Settings) -> Snapshot:
    def read(connection: Any) -> Snapshot:
        revision = MigrationContext.configure(connection).get_current_revision()
        inspector = sa.inspect(connection)
        tables = {
            name: [(c["name"], str(c["type"]), bool(c["nullable"])) for c in inspector.get_columns(name)]
            for name in inspector.get_table_names()
        }
        return revision, tables

    async def run() -> Snapshot:
        engine = create_async_engine(settings.database.url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_migration_head_matches_the_manifest(settings: Settings) -> None:
    assert schema_diff(settings) == []


def test_project_migrations_have_a_single_head() -> None:
    heads = migration_heads(ROOT / "migrations")
    assert heads is not None
    assert len(heads) == 1


def test_settings_use_the_project_migrations(settings: Settings) -> None:
    assert settings.migrations_dir.resolve() == (ROOT / "migrations").resolve()


def test_migrated_database_is_at_the_head_with_the_six_tables(settings: Settings) -> None:
    revision, tables = inspect_database(settings)
    assert {revision} == set(migration_heads(ROOT / "migrations") or ())
    assert set(tables) >= TABLES | {"alembic_version"}


def test_upgrading_twice_is_a_no_op(settings: Settings) -> None:
    before = inspect_database(settings)
    upgrade(settings)
    upgrade(settings)
    assert inspect_database(settings) == before


def test_upgrade_keeps_existing_rows(client: Any, settings: Settings) -> None:
    user = factories.user(client)
    upgrade(settings)
    response = client.get(f"{factories.API}/users/{user['id']}")
    assert response.status_code == 200
    assert response.json() == user


def test_service_is_ready_after_upgrade(client: Any, settings: Settings) -> None:
    upgrade(settings)
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_the_project_migration_folder_holds_the_files_flux_dao_writes():
    from flux_dao.migrations import ENV_PY, SCRIPT_MAKO

    folder = ROOT / "migrations"
    assert (folder / "env.py").read_text() == ENV_PY
    assert (folder / "script.py.mako").read_text() == SCRIPT_MAKO
