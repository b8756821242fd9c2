"""``flux-dao adopt`` on a database the earlier Flux service made: planned, applied, refused, interrupted.

Each test builds its own earlier database (tests/adopt/earlier_schema.sql, filled the way the earlier service wrote
rows) and runs the command as an operator would. The acceptance tests themselves run on an adopted database in
``test_the_acceptance_tests_pass_on_an_adopted_database``.
"""

# ruff: noqa: S608 (SQL from this file's constants and ids it made itself, no outside input)

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result
from litestar.testing import TestClient

from flux_dao.http.app import create_app
from flux_dao.ops.cli import main
from flux_dao.store.migrations import live_drift, migration_heads
from tests.adopt.earlier import (
    EARLIER_FIELDS,
    canonical,
    create_earlier_database,
    earlier_id,
    earlier_rows,
    fill_earlier,
)
from tests.conftest import API_KEY, KEY_HEADER, MANIFEST, ROOT, make_settings, run_sql

pytestmark = pytest.mark.postgres

HEAD = ", ".join(sorted(migration_heads(ROOT / "migrations") or ()))


@pytest.fixture
def earlier() -> Iterator[str]:
    """An earlier-service database with its rows, as an asyncpg DSN."""
    with create_earlier_database() as dsn:
        fill_earlier(dsn)
        yield dsn


def _url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def adopt(dsn: str, *args: str) -> Result:
    env = {"FLUX_DAO_DATABASE_URL": _url(dsn), "FLUX_DAO_MANIFEST": str(MANIFEST)}
    return CliRunner().invoke(main, ["adopt", *args], env=env, catch_exceptions=False)


def column_type(dsn: str, table: str, column: str) -> str:
    rows = run_sql(
        dsn,
        f"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '{table}'::regclass "
        f"AND attname = '{column}' AND NOT attisdropped",
    )
    return str(rows[0][0]) if rows else "missing"


def view_rows(dsn: str) -> dict[str, list[str]]:
    """Both materialized views' rows as JSON text (an array column and a jsonb one read the same), sorted."""
    return {
        view: sorted(str(row[0]) for row in run_sql(dsn, f"SELECT to_jsonb(v)::text FROM {view} v"))
        for view in ("user_weekly_stats", "missed_by_category")
    }


def untouched(dsn: str) -> None:
    """The database is as the earlier service left it: no migration history, no flux-dao column, no conversion."""
    assert run_sql(dsn, "SELECT to_regclass('alembic_version'), to_regclass('flux_dao_changes')") == [(None, None)]
    assert column_type(dsn, "goals", "class_tags") == "text[]"
    assert column_type(dsn, "tasks", "version") == "missing"
    assert run_sql(dsn, "SELECT count(*) FROM pg_matviews WHERE matviewname = 'missed_by_category'") == [(1,)]


def test_dry_run_prints_the_plan_in_groups_and_changes_nothing(earlier: str, tmp_path: Path) -> None:
    result = adopt(earlier, "--dry-run", "--revision-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"(head {HEAD})" in out
    assert "Safe to change (" in out
    assert "Changes data representation (3):" in out
    assert "goals.class_tags: text[] becomes JSON (jsonb)" in out
    assert "tasks.shared_with_goal_ids: uuid[] becomes JSON (jsonb)" in out
    assert "materialized view missed_by_category: reads goals.class_tags: dropped before the conversion" in out
    assert "conversations.user_id: foreign key to users: ON DELETE NO ACTION becomes CASCADE" in out
    assert "goals.parent_goal_id: foreign key to goals: ON DELETE NO ACTION becomes SET NULL" in out
    assert "notification_log.updated_at: added as timestamp with time zone" in out
    assert "goals.status: becomes NOT NULL" in out
    assert "Would lose data: nothing" in out
    assert "trigger trg_patterns_updated_at on patterns: kept" in out
    assert "materialized view user_weekly_stats: reads tasks; kept as it is" in out
    assert "row-level security is on for tasks: tasks_own (ALL, USING (user_id = auth.uid()))" in out
    assert "flux-dao connects as postgres, a superuser or BYPASSRLS role" in out
    assert "dry run: nothing was changed" in out
    untouched(earlier)
    assert list(tmp_path.iterdir()) == []


def test_adopted_database_serves_every_earlier_row_unchanged(earlier: str, tmp_path: Path) -> None:
    before = earlier_rows(earlier)
    views_before = view_rows(earlier)
    result = adopt(earlier, "--yes", "--revision-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"applied: the database is at {HEAD} (head)" in result.output
    (revision,) = tmp_path.iterdir()
    text = revision.read_text()
    assert "ALTER TABLE goals ALTER COLUMN class_tags TYPE jsonb USING to_jsonb(class_tags)" in text
    assert "down_revision = None" in text

    settings = make_settings(_url(earlier))
    assert live_drift(settings) == []
    assert run_sql(earlier, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert earlier_rows(earlier) == before  # the six tables' own columns, straight from the database
    assert view_rows(earlier) == views_before  # recreated, with the same rows (class_tags a JSON array either way)
    assert run_sql(earlier, "SELECT count(*) FROM pg_policies") == [(6,)]
    assert run_sql(earlier, "SELECT count(*) FROM pg_trigger WHERE tgname = 'trg_patterns_updated_at'") == [(1,)]

    with TestClient(create_app(settings)) as client:
        client.headers[KEY_HEADER] = API_KEY
        for table, rows in before.items():
            path = "notification-log" if table == "notification_log" else table
            for row in rows:
                answer = client.get(f"/api/v1/{path}/{row['id']}")
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert {f: canonical(body[f]) for f in EARLIER_FIELDS[table]} == row
                assert body["version"] == 1

        # writes: a PATCH bumps the version and lands in the change feed the adoption installed
        task = before["tasks"][0]["id"]
        patched = client.patch(f"/api/v1/tasks/{task}", json={"status": "done"}, headers={"If-Match": '"1"'})
        assert patched.status_code == 200, patched.text
        assert patched.json()["version"] == 2
        changes = client.get("/api/v1/changes", params={"resources": "tasks"}).json()
        assert [c["id"] for c in changes["items"]] == [task]
        # the earlier ON DELETE rules now are the manifest's: a user with notifications cannot be deleted (RESTRICT)
        user = earlier_id("users", 0)
        assert client.delete(f"/api/v1/users/{user}").status_code == 409
        goal = earlier_id("goals", 0, "child")
        assert client.delete(f"/api/v1/goals/{goal}").status_code == 204


def test_a_second_adopt_finds_nothing_to_do(earlier: str, tmp_path: Path) -> None:
    assert adopt(earlier, "--revision-dir", str(tmp_path)).exit_code == 0
    again = adopt(earlier, "--revision-dir", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert f"is already under flux-dao's migrations (at {HEAD}): nothing to adopt" in again.output
    assert len(list(tmp_path.iterdir())) == 1


def test_rows_that_would_lose_data_are_refused_with_counts_and_ids(earlier: str, tmp_path: Path) -> None:
    odd, empty = earlier_id("goals", 9, "odd"), earlier_id("goals", 9, "empty")
    user = earlier_id("users", 0)
    run_sql(
        earlier,
        "ALTER TABLE goals DROP CONSTRAINT goals_status_check",
        f"INSERT INTO goals (id, user_id, title, status) VALUES ('{odd}', '{user}', 'odd', 'someday')",
        f"INSERT INTO goals (id, user_id, title, status) VALUES ('{empty}', '{user}', 'no status', NULL)",
        f"UPDATE users SET email = repeat('x', 300) WHERE id = '{user}'",
    )
    result = adopt(earlier, "--revision-dir", str(tmp_path))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Would lose data (3):" in out
    assert (
        "goals.status: CHECK: the database allows any value; the manifest allows abandoned, active, completed, "
        "pipeline; every row has one of those. 1 row has a status outside" in out
    )
    assert f"('someday': 1); e.g. id {odd}" in out
    assert f"1 row has no status (NULL); e.g. id {empty}" in out
    assert (
        f"users.email: text becomes character varying(255); every value fits. 1 row has a value longer than 255 "
        f"characters; e.g. id {user}" in out
    )
    assert "refused: nothing was changed" in out
    untouched(earlier)
    assert list(tmp_path.iterdir()) == []


def test_a_view_that_cannot_be_recreated_rolls_the_whole_adoption_back(earlier: str, tmp_path: Path) -> None:
    run_sql(earlier, "CREATE VIEW goal_tags AS SELECT id, unnest(class_tags) AS tag FROM goals")
    result = CliRunner().invoke(
        main,
        ["adopt", "--revision-dir", str(tmp_path)],
        env={"FLUX_DAO_DATABASE_URL": _url(earlier), "FLUX_DAO_MANIFEST": str(MANIFEST)},
    )
    assert result.exit_code == 1
    assert "the adoption failed and nothing was changed" in result.output
    assert "unnest(jsonb)" in result.output
    assert "CREATE VIEW goal_tags" in result.output
    untouched(earlier)
    assert run_sql(earlier, "SELECT count(*) FROM goal_tags")[0][0] > 0
    assert list(tmp_path.iterdir()) == []


def _adopt_process(dsn: str, folder: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "FLUX_DAO_DATABASE_URL": _url(dsn), "FLUX_DAO_MANIFEST": str(MANIFEST)}
    return subprocess.Popen(
        [sys.executable, "-m", "flux_dao", "adopt", "--revision-dir", str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _waiting_backend(dsn: str, deadline: float) -> int:
    while time.monotonic() < deadline:
        rows = run_sql(
            dsn, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        if rows:
            return int(rows[0][0])
        time.sleep(0.05)
    pytest.fail("adopt never reached the locked table")


def test_an_adoption_killed_midway_leaves_the_database_as_it_was_and_runs_again(earlier: str, tmp_path: Path) -> None:
    async def hold_lock() -> tuple[asyncpg.Connection, Any]:
        conn = await asyncpg.connect(earlier, timeout=5)
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE tasks IN ACCESS SHARE MODE")  # ALTER TABLE tasks waits behind it
        return conn, tx

    loop = asyncio.new_event_loop()
    try:
        holder, tx = loop.run_until_complete(hold_lock())
        process = _adopt_process(earlier, tmp_path)
        pid = _waiting_backend(earlier, time.monotonic() + 60)  # adopt is inside its transaction, mid-revision
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        loop.run_until_complete(tx.rollback())
        loop.run_until_complete(holder.close())
    finally:
        loop.close()
    deadline = time.monotonic() + 10  # the server notices the dead client and rolls its transaction back
    while run_sql(earlier, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") != [(0,)]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    untouched(earlier)
    rerun = adopt(earlier, "--revision-dir", str(tmp_path / "again"))
    assert rerun.exit_code == 0, rerun.output
    assert run_sql(earlier, "SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_an_empty_database_has_nothing_to_adopt(fresh_pg: str) -> None:
    result = adopt(fresh_pg)
    assert result.exit_code == 0
    assert "has none of the manifest's tables: nothing to adopt" in result.output


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    with create_earlier_database() as dsn:
        run_sql(dsn, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
        yield dsn


@pytest.mark.sqlite
def test_sqlite_is_not_adopted(tmp_path: Path) -> None:
    env = {"FLUX_DAO_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "FLUX_DAO_MANIFEST": str(MANIFEST)}
    result = CliRunner().invoke(main, ["adopt", "--dry-run"], env=env)
    assert result.exit_code == 1
    assert "adopt works on PostgreSQL databases" in result.output


ACCEPTANCE = ("test_crud.py", "test_task_queries.py", "test_deletes.py", "test_lists.py", "test_errors.py")
ACCEPTANCE += ("test_versions.py", "test_batch.py", "test_query_language.py")
"""The contract's end-to-end tests: every route of the six resources, their errors, versions, batches and queries."""


@pytest.mark.slow
def test_the_acceptance_tests_pass_on_an_adopted_database() -> None:
    """The acceptance tests, run with their PostgreSQL database adopted from the earlier schema (about 40 s).

    ``FLUX_TEST_ADOPTED=1 pytest tests/e2e -m "postgres and not slow"`` runs every fast end-to-end test so (about
    90 s); all pass.
    """
    env = {**os.environ, "FLUX_TEST_ADOPTED": "1"}
    files = [f"tests/e2e/{name}" for name in ACCEPTANCE]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "postgres and not slow", *files],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout
    assert "failed" not in result.stdout


def test_a_policy_over_a_converted_column_is_recreated_as_it_was(earlier: str, tmp_path: Path) -> None:
    run_sql(earlier, "CREATE POLICY goals_tagged ON goals AS RESTRICTIVE FOR SELECT USING (class_tags IS NOT NULL)")
    policy = "SELECT permissive, cmd, roles::text, qual FROM pg_policies WHERE policyname = 'goals_tagged'"
    before = run_sql(earlier, policy)
    result = adopt(earlier, "--revision-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "policy goals_tagged on goals: reads goals.class_tags: dropped before the conversion" in result.output
    assert run_sql(earlier, policy) == before
    assert column_type(earlier, "goals", "class_tags") == "jsonb"


def test_another_tools_migration_history_is_refused_not_taken_for_ours(earlier: str) -> None:
    run_sql(earlier, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    run_sql(earlier, "INSERT INTO alembic_version VALUES ('0a1b2c3d4e5f')")
    result = adopt(earlier, "--dry-run")
    assert result.exit_code == 1
    assert "holds 0a1b2c3d4e5f, which is none of flux-dao's revisions" in result.output
    assert "Traceback" not in result.output


def test_views_come_back_with_their_options_and_text_as_written(earlier: str, tmp_path: Path) -> None:
    run_sql(
        earlier,
        "CREATE VIEW goal_tags_sec WITH (security_invoker = true, security_barrier = true) AS "
        "SELECT id, class_tags FROM goals WHERE title <> 'x :foo'",
    )
    options = "SELECT reloptions::text FROM pg_class WHERE relname = 'goal_tags_sec'"
    before = run_sql(earlier, options)
    result = adopt(earlier, "--revision-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert run_sql(earlier, options) == before
    assert "x :foo" in str(run_sql(earlier, "SELECT pg_get_viewdef('goal_tags_sec'::regclass)")[0][0])


def test_a_check_that_was_never_validated_is_checked_against_the_rows(earlier: str, tmp_path: Path) -> None:
    log = earlier_id("notification_log", 0, "stretch_call")
    run_sql(
        earlier,
        "ALTER TABLE notification_log DROP CONSTRAINT notification_log_channel_check",
        f"UPDATE notification_log SET channel = 'sms' WHERE id = '{log}'",
        "ALTER TABLE notification_log ADD CONSTRAINT notification_log_channel_check "
        "CHECK (channel IN ('push', 'whatsapp', 'call')) NOT VALID",
    )
    result = adopt(earlier, "--revision-dir", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert "call, push, whatsapp (not validated: older rows were never checked)" in result.output
    assert f"1 row has a channel outside call, push, whatsapp ('sms': 1); e.g. id {log}" in result.output
    untouched(earlier)


def test_names_held_by_other_objects_and_columns_the_plan_adds(earlier: str, tmp_path: Path) -> None:
    run_sql(
        earlier, "CREATE INDEX ix_goals_completed_at ON goals (title)", "ALTER TABLE tasks DROP COLUMN trigger_type"
    )
    result = adopt(earlier, "--dry-run")
    assert result.exit_code == 1, result.output
    assert "Cannot be done automatically (1):" in result.output
    assert "the database already has another object named ix_goals_completed_at" in result.output
    assert "tasks.trigger_type: added as text with default 'time'" in result.output  # no guard on a new column
    run_sql(earlier, "DROP INDEX ix_goals_completed_at")
    applied = adopt(earlier, "--revision-dir", str(tmp_path))
    assert applied.exit_code == 0, applied.output
    assert run_sql(earlier, "SELECT DISTINCT trigger_type FROM tasks") == [("time",)]


def test_migrate_on_a_database_another_tool_made_points_at_adopt(earlier: str) -> None:
    env = {"FLUX_DAO_DATABASE_URL": _url(earlier), "FLUX_DAO_MANIFEST": str(MANIFEST)}
    result = CliRunner().invoke(main, ["migrate"], env=env)
    assert result.exit_code == 1
    assert "already has the manifest's tables" in result.output
    assert "flux-dao adopt" in result.output
    untouched(earlier)
