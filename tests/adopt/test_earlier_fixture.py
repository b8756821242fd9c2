"""The earlier-database fixture itself: adopt's tests are only as good as the database they adopt."""

# ruff: noqa: S608 (SQL from this file's constants and the ids it made, no outside input)

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.adopt.earlier import (
    MATERIALIZED_VIEWS,
    TABLES,
    canonical,
    create_earlier_database,
    earlier_id,
    earlier_rows,
    fill_earlier,
)
from tests.conftest import run_sql

pytestmark = pytest.mark.postgres


def query(dsn: str, *statements: str) -> list[tuple[Any, ...]]:
    """``run_sql`` typed for comparisons: the rows of the last statement."""
    return run_sql(dsn, *statements)


def pairs(dsn: str, statement: str) -> dict[Any, Any]:
    """A two-column query as a dict, first column to second."""
    return dict(query(dsn, statement))


PER_USER = {"users": 1, "goals": 5, "tasks": 8, "conversations": 4, "patterns": 3, "notification_log": 5}


@pytest.fixture(scope="module")
def earlier() -> Iterator[str]:
    with create_earlier_database() as dsn:
        fill_earlier(dsn)
        yield dsn


@pytest.fixture(scope="module")
def rows(earlier: str) -> dict[str, list[dict[str, Any]]]:
    return earlier_rows(earlier)


def test_the_database_is_dropped_afterwards() -> None:
    with create_earlier_database() as dsn:
        name = dsn.rsplit("/", 1)[1]
        assert name.startswith("flux_dao_earlier_")
    assert query(dsn.rsplit("/", 1)[0] + "/postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == []


def test_every_table_is_filled(rows: dict[str, list[dict[str, Any]]]) -> None:
    assert {table: len(rows[table]) for table in TABLES} == {table: 3 * n for table, n in PER_USER.items()}
    for table in TABLES:
        ids = [row["id"] for row in rows[table]]
        assert ids == sorted(ids)


def test_columns_have_the_earlier_types(earlier: str) -> None:
    found = pairs(
        earlier,
        "SELECT table_name || '.' || column_name, udt_name || ' ' || is_nullable || ' ' || "
        "coalesce(column_default, '-') FROM information_schema.columns WHERE table_schema = 'public'",
    )
    assert found["users.id"] == "uuid NO gen_random_uuid()"
    assert found["users.onboarded"] == "bool YES false"
    assert found["goals.class_tags"] == "_text YES -"
    assert found["goals.status"] == "text YES 'active'::text"
    assert found["tasks.shared_with_goal_ids"] == "_uuid YES -"
    assert found["patterns.confidence"] == "float8 YES -"
    assert found["patterns.updated_at"] == "timestamptz YES now()"
    assert "notification_log.created_at" not in found


def test_constraints_have_postgres_default_names(earlier: str) -> None:
    names = {
        name
        for (name,) in query(earlier, "SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace")
    }
    assert {"goals_status_check", "tasks_status_check", "tasks_trigger_type_check", "users_email_key"} <= names
    assert {"conversations_langgraph_thread_id_key", "notification_log_channel_check", "tasks_goal_id_fkey"} <= names
    deletes = pairs(earlier, "SELECT conname, confdeltype::text FROM pg_constraint WHERE contype = 'f'")
    assert deletes["goals_user_id_fkey"] == deletes["tasks_user_id_fkey"] == deletes["patterns_user_id_fkey"] == "c"
    assert deletes["tasks_goal_id_fkey"] == "n"
    assert deletes["goals_parent_goal_id_fkey"] == deletes["conversations_user_id_fkey"] == "a"
    assert deletes["notification_log_task_id_fkey"] == "a"


def test_row_level_security_is_on_with_owner_policies(earlier: str) -> None:
    enabled = pairs(earlier, "SELECT relname, relrowsecurity FROM pg_class WHERE relkind = 'r'")
    assert all(enabled[table] for table in TABLES)
    policies = pairs(earlier, "SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'public'")
    assert policies == {table: f"{table}_own" for table in TABLES}


def test_policies_show_a_user_only_their_rows(earlier: str) -> None:
    """A non-owner role with a JWT subject sees one user's rows; the role lives in a rolled-back transaction."""
    user = earlier_id("users", 1)

    async def run() -> dict[str, int]:
        conn = await asyncpg.connect(earlier, timeout=5)
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("CREATE ROLE flux_dao_earlier_reader NOLOGIN")
            await conn.execute("GRANT USAGE ON SCHEMA auth TO flux_dao_earlier_reader")
            await conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO flux_dao_earlier_reader")
            await conn.execute(f"SET LOCAL request.jwt.claim.sub = '{user}'")
            await conn.execute("SET LOCAL ROLE flux_dao_earlier_reader")
            counts = {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}
            await tx.rollback()
            return counts
        finally:
            await conn.close()

    assert asyncio.run(run()) == PER_USER


def test_both_materialized_views_have_rows(earlier: str) -> None:
    for view in MATERIALIZED_VIEWS:
        assert query(earlier, f"SELECT count(*) FROM {view}")[0][0] > 0
    missed = pairs(earlier, "SELECT class_tags::text, missed_count FROM missed_by_category")
    assert missed == {None: 3, "{}": 3, "{Career}": 3, "{Health,Fitness}": 3}
    user = earlier_id("users", 0)
    stats = "SELECT done_count, total_count, completion_pct::float8 FROM user_weekly_stats"
    week = query(earlier, f"{stats} WHERE user_id = '{user}' ORDER BY week")
    assert week == [(1, 5, 20.0), (0, 1, 0.0)]


def test_the_trigger_moves_patterns_updated_at_on_update(earlier: str) -> None:
    pattern = earlier_id("patterns", 2, "avoidance")
    select = f"SELECT updated_at FROM patterns WHERE id = '{pattern}'"
    ((before,),) = query(earlier, select)
    started = datetime.now(UTC)
    ((after,),) = query(earlier, f"UPDATE patterns SET confidence = confidence WHERE id = '{pattern}'", select)
    assert before < started - timedelta(days=1)
    assert abs(after - started) < timedelta(seconds=5)


def test_rows_have_the_earlier_api_shapes(rows: dict[str, list[dict[str, Any]]]) -> None:
    tasks = {row["id"]: row for row in rows["tasks"]}
    run = tasks[earlier_id("tasks", 0, "run")]
    assert run["shared_with_goal_ids"] == [earlier_id("goals", 0, "pipeline"), earlier_id("goals", 0, "career")]
    assert run["reminder_sent_at"] == "2026-03-09T06:45:00.123456Z"
    assert run["call_sent_at"] == "2026-03-09T06:49:00.243456Z"
    assert tasks[earlier_id("tasks", 0, "groceries")]["scheduled_at"] is None
    goals = {row["id"]: row for row in rows["goals"]}
    assert goals[earlier_id("goals", 0, "child")]["parent_goal_id"] == earlier_id("goals", 0, "health")
    assert goals[earlier_id("goals", 0, "pipeline")]["class_tags"] == []
    assert goals[earlier_id("goals", 0, "untagged")]["class_tags"] is None
    user = next(row for row in rows["users"] if row["id"] == earlier_id("users", 0))
    assert user["notification_preferences"]["reminder_lead_minutes"] == 10
    assert user["profile"]["work"] == {"days": [1, 2, 3]}
    assert sorted(row["confidence"] for row in rows["patterns"])[::3] == [0.0, 0.42, 1.0]


@pytest.mark.parametrize(
    "value",
    [
        datetime(2030, 1, 1, 4, 30, tzinfo=UTC),
        datetime(2030, 1, 1, 4, 30, 0, 123456, tzinfo=UTC),
        datetime(2030, 1, 1, 4, 30, 0, 120000, tzinfo=UTC),
        datetime(2030, 1, 1, 6, 30, 0, 1, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_canonical_datetimes_are_what_flux_dao_answers(value: datetime) -> None:
    """flux-dao's responses are msgspec JSON of UTC datetimes (checked through the e2e test client)."""
    expected = msgspec.json.decode(msgspec.json.encode(value.astimezone(UTC)))
    assert canonical(value) == expected
    assert canonical(value.isoformat()) == expected
    assert canonical(expected) == expected
