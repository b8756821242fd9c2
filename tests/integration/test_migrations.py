import asyncio
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flux_dao.config import Settings
from flux_dao.store.drift import harmless_in_database
from flux_dao.store.migrations import (
    compare_server_default,
    downgrade,
    head_drift,
    live_drift,
    migration_heads,
    schema_diff,
    upgrade,
)
from tests import factories
from tests.conftest import ROOT, make_settings, run_sql, sql_uuid

T = TypeVar("T")
TABLES = {"users", "goals", "tasks", "conversations", "patterns", "notification_log"}


Snapshot = tuple[str | None, dict[str, list[tuple[str, str, bool]]]]


def read_database(settings: Settings, read: Callable[[Any], T]) -> T:
    """``read(connection)`` on a connection of its own to the settings' database."""

    async def run() -> T:
        engine = create_async_engine(settings.database.url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def inspect_database(settings: Settings) -> Snapshot:
    def read(connection: Any) -> Snapshot:
        revision = MigrationContext.configure(connection).get_current_revision()
        inspector = sa.inspect(connection)
        tables = {
            name: [(c["name"], str(c["type"]), bool(c["nullable"])) for c in inspector.get_columns(name)]
            for name in inspector.get_table_names()
        }
        return revision, tables

    return read_database(settings, read)


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
    from flux_dao.store.migrations import ENV_PY, SCRIPT_MAKO

    folder = ROOT / "migrations"
    assert (folder / "env.py").read_text() == ENV_PY
    assert (folder / "script.py.mako").read_text() == SCRIPT_MAKO


# --- the drift checks report nothing on what the project's own migrations build ------------------------------------


def test_the_migrations_head_matches_the_manifest(settings: Settings) -> None:
    assert head_drift(settings) == []


def test_the_live_drift_check_reports_nothing_on_a_migrated_database(settings: Settings) -> None:
    assert live_drift(settings) == []


@pytest.mark.parametrize(
    ("reported", "manifest"),
    [
        ("(false)", "false"),  # SQLite keeps the DDL's parentheses
        ("(CURRENT_TIMESTAMP)", "CURRENT_TIMESTAMP"),
        ("'active'::text", "active"),  # PostgreSQL adds casts
        ("'-1'::integer", "-1"),
        ("'it''s'::character varying(20)", "it's"),
        ("gen_random_uuid()", "gen_random_uuid()"),
    ],
)
def test_server_defaults_compare_equal_however_the_database_spells_them(reported: str, manifest: str) -> None:
    assert compare_server_default(None, None, None, reported, None, manifest) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reported", "manifest"), [("'active'::text", "pending"), (None, "gen_random_uuid()"), ("6", None), ("(0)", "1")]
)
def test_different_server_defaults_are_a_difference(reported: str | None, manifest: str | None) -> None:
    assert compare_server_default(None, None, None, reported, None, manifest) is True  # type: ignore[arg-type]


# --- the id defaults and default indexes revision ------------------------------------------------------------------


PREVIOUS = "c9f00535a8ea"
SOME_ID = "01900000-0000-7000-8000-0000000000aa"


def inspect_table(settings: Settings, table: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """A table's indexes (name -> columns) and column server defaults (name -> reported default)."""

    def read(connection: Any) -> tuple[dict[str, list[str]], dict[str, Any]]:
        inspector = sa.inspect(connection)
        found = {i["name"]: list(i["column_names"]) for i in inspector.get_indexes(table)}
        return found, {c["name"]: c.get("default") for c in inspector.get_columns(table)}

    return read_database(settings, read)


def test_filter_fields_without_an_index_of_their_own_get_one(settings: Settings) -> None:
    assert inspect_table(settings, "conversations")[0]["ix_conversations_context_type"] == ["context_type"]
    assert inspect_table(settings, "notification_log")[0]["ix_notification_log_channel"] == ["channel"]
    assert "ix_users_email" not in inspect_table(settings, "users")[0]  # unique: its constraint serves lookups


def test_the_revision_upgrades_and_downgrades_a_database_with_rows(fresh_url: str) -> None:
    settings = make_settings(fresh_url)
    upgrade(settings, PREVIOUS)
    user_id = sql_uuid(fresh_url, SOME_ID)
    run_sql(fresh_url, f"INSERT INTO users (id, email) VALUES ({user_id}, 'kept@example.com')")  # noqa: S608
    assert inspect_table(settings, "users")[1]["id"] is None

    assert upgrade(settings).after == tuple(migration_heads(ROOT / "migrations") or ())
    assert schema_diff(settings) == []
    assert inspect_table(settings, "users")[1]["id"] is not None
    assert "ix_conversations_context_type" in inspect_table(settings, "conversations")[0]
    assert run_sql(fresh_url, "SELECT email FROM users") == [("kept@example.com",)]

    assert downgrade(settings, PREVIOUS).after == (PREVIOUS,)
    assert inspect_table(settings, "users")[1]["id"] is None
    assert "ix_conversations_context_type" not in inspect_table(settings, "conversations")[0]
    assert run_sql(fresh_url, "SELECT email FROM users") == [("kept@example.com",)]
    assert upgrade(settings).before == (PREVIOUS,)
    assert schema_diff(settings) == []


def test_a_row_inserted_by_sql_without_an_id_gets_a_random_uuid_the_api_serves(client: Any, settings: Settings) -> None:
    run_sql(
        settings.database.url,
        "INSERT INTO users (email, onboarded) VALUES ('by-sql@example.com', true)",
        "INSERT INTO users (email) VALUES ('by-sql-2@example.com')",
    )
    page = client.get(f"{factories.API}/users", params={"email": "by-sql@example.com"}).json()
    assert page["total"] == 1
    row = page["items"][0]
    assert uuid.UUID(row["id"]).version == 4
    fetched = client.get(f"{factories.API}/users/{row['id']}")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["email"] == "by-sql@example.com"
    assert fetched.json()["onboarded"] is True
    other = client.get(f"{factories.API}/users", params={"email": "by-sql-2@example.com"}).json()["items"][0]
    assert other["id"] != row["id"]
    assert other["onboarded"] is False


def test_the_live_check_leaves_alone_what_does_not_change_the_api() -> None:
    column = sa.Column("note", sa.Text(), nullable=True)
    required = sa.Column("code", sa.Text(), nullable=False)
    assert harmless_in_database(("remove_column", None, "tasks", column))
    assert harmless_in_database(("remove_index", sa.Index("ix_tasks_title")))
    assert harmless_in_database(("modify_default", None, "tasks", "status", {}, None, "done"))
    assert not harmless_in_database(("remove_column", None, "tasks", required))  # inserts would fail
    assert not harmless_in_database(("add_column", None, "tasks", column))
    assert not harmless_in_database(("modify_nullable", None, "tasks", "title", {}, True, False))
