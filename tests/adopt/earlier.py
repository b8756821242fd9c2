"""The earlier Flux service's PostgreSQL database, rebuilt as a test fixture for ``flux-dao adopt``.

``adopt`` migrates such a database in place, so its tests need one that looks like what the earlier FastAPI service
left behind: the schema of ``earlier_schema.sql`` (from /work/shared/notes/earlier_service.md §2) and rows written the
way that service wrote them (§3). ``earlier_rows`` reads them back in the earlier API's shapes, normalised by
``canonical`` so they compare directly with what flux-dao's HTTP API answers after adoption.
"""

# ruff: noqa: S608 (SQL from this file's constants and the ids it made, no outside input)

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg

from tests.conftest import PG_DSN, _pg_admin

SCHEMA_SQL: Final = Path(__file__).with_name("earlier_schema.sql")

# Every column of each table, in the order the earlier API's response listed them (§3.2: every column is in the
# response). Parents come before children, so this is also an insert order.
EARLIER_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "users": ("id", "email", "onboarded", "profile", "notification_preferences", "created_at"),
    "goals": (
        "id",
        "user_id",
        "title",
        "description",
        "class_tags",
        "status",
        "parent_goal_id",
        "pipeline_order",
        "activated_at",
        "completed_at",
        "target_weeks",
        "plan_json",
        "created_at",
    ),
    "tasks": (
        "id",
        "user_id",
        "goal_id",
        "title",
        "description",
        "status",
        "scheduled_at",
        "duration_minutes",
        "trigger_type",
        "location_trigger",
        "reminder_sent_at",
        "whatsapp_sent_at",
        "call_sent_at",
        "completed_at",
        "recurrence_rule",
        "shared_with_goal_ids",
        "created_at",
    ),
    "conversations": ("id", "user_id", "langgraph_thread_id", "context_type", "last_message_at", "created_at"),
    "patterns": ("id", "user_id", "pattern_type", "description", "data", "confidence", "created_at", "updated_at"),
    "notification_log": ("id", "task_id", "channel", "sent_at", "response", "responded_at"),
}
TABLES: Final = tuple(EARLIER_FIELDS)
MATERIALIZED_VIEWS: Final = ("user_weekly_stats", "missed_by_category")

# The object the earlier test factory and migration backfill put in users.notification_preferences (§2).
BACKFILL_PREFERENCES: Final[Mapping[str, Any]] = {
    "phone_number": None,
    "whatsapp_opted_in": False,
    "reminder_lead_minutes": 10,
    "escalation_window_minutes": 2,
}

_NAMESPACE: Final = uuid.UUID("5b0c1f1e-14ad-4d0b-9e11-ea71e2f1a000")
_EPOCH: Final = datetime(2026, 2, 23, 9, 0, tzinfo=UTC)
_ISO_INSTANT: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


def earlier_id(table: str, user: int, label: str = "") -> str:
    """The fixed id ``fill_earlier`` gives a row, so tests can name rows (``earlier_id("goals", 0, "child")``).

    Labels: goals health, child, pipeline, untagged, career; tasks run, stretch, interview, dentist, attic, groceries,
    read, call_mum; conversations onboarding, goal, task, reschedule; patterns streak, avoidance, morning;
    notification_log run_push, stretch_whatsapp, stretch_call, interview_call, groceries_unsent. Users have no label.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{table}/{user}/{label}"))


def canonical(value: Any) -> Any:
    """``value`` as flux-dao's HTTP API writes it in JSON, so earlier rows and flux-dao answers compare with ``==``.

    flux-dao answers datetimes in UTC with a ``Z`` and six fractional digits only when the microseconds are not zero
    (``2030-01-01T04:30:00Z``, ``2030-01-01T02:30:00.120000Z``), uuids as lowercase strings, lists and JSON objects
    as they are. Strings holding an ISO-8601 instant with an offset are rewritten the same way, so ``canonical`` can be
    applied to either side (or both) and is idempotent.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            msg = f"a naive datetime has no instant to compare: {value!r}"
            raise ValueError(msg)
        at = value.astimezone(UTC)
        fraction = f".{at.microsecond:06d}" if at.microsecond else ""
        return f"{at:%Y-%m-%dT%H:%M:%S}{fraction}Z"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return canonical(datetime.fromisoformat(value)) if _ISO_INSTANT.fullmatch(value) else value
    if isinstance(value, Mapping):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [canonical(item) for item in value]
    return value


def admin_dsn(name: str) -> str:
    """A plain asyncpg DSN for database ``name`` on the server of ``tests.conftest.PG_DSN``."""
    return f"{PG_DSN.rsplit('/', 1)[0]}/{name}"


async def _connect(dsn: str) -> asyncpg.Connection:
    """A connection that reads and writes jsonb as Python values, the way the earlier ORM handed them over.

    The session is in UTC (as the earlier service's was), so user_weekly_stats' weeks do not depend on the server.
    """
    conn = await asyncpg.connect(dsn, timeout=5, server_settings={"timezone": "UTC"})
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


async def _execute(dsn: str, sql: str) -> None:
    conn = await _connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def install_earlier(dsn: str) -> None:
    """Create the earlier schema in the (empty) database at ``dsn``."""
    asyncio.run(_execute(dsn, SCHEMA_SQL.read_text()))


@contextlib.contextmanager
def create_earlier_database() -> Iterator[str]:
    """A fresh database holding the earlier schema (no rows), as an asyncpg DSN; dropped afterwards, even if in use.

    ``WITH (FORCE)`` because a test that fails mid-adoption may leave connections open.
    """
    name = f"flux_dao_earlier_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        dsn = admin_dsn(name)
        install_earlier(dsn)
        yield dsn
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _at(user: int, days: float, micro: int = 0) -> datetime:
    """A fixed instant per user, so every run writes the same rows."""
    return _EPOCH + timedelta(days=7 * user + days, microseconds=micro)


def _user_rows(i: int) -> dict[str, list[tuple[Any, ...]]]:
    """One user's rows in every table, as the earlier service's INSERTs wrote them (columns as in EARLIER_FIELDS)."""
    uid = earlier_id("users", i)

    def goal(label: str) -> str:
        return earlier_id("goals", i, label)

    def task(label: str) -> str:
        return earlier_id("tasks", i, label)

    created = _at(i, 0, 123456)
    monday = _at(i, 14).replace(hour=7)  # scheduled work a fortnight later
    profile = {"name": f"Zoë {i}", "timezone": "Europe/Paris", "tags": ["early-bird"], "work": {"days": [1, 2, 3]}}
    plan = {"weeks": [{"week": 1, "focus": "base", "sessions": 3}, {"week": 2, "focus": "build", "sessions": 4}]}
    users = [(uid, f"user{i}@earlier.example", i % 2 == 0, profile, dict(BACKFILL_PREFERENCES), created)]
    goals: list[tuple[Any, ...]] = [
        (goal("health"), uid, "Get fit", "Three runs a week", ["Health", "Fitness"], "active", None, None,
         _at(i, 1, 500000), None, 6, plan, _at(i, 1, 1)),
        (goal("child"), uid, "Run 5k", None, ["Health"], "abandoned", goal("health"), None,
         None, None, 4, None, _at(i, 1, 2)),
        (goal("pipeline"), uid, "Learn Spanish", None, [], "pipeline", None, 1,
         None, None, 8, {"weeks": []}, _at(i, 1, 3)),
        (goal("untagged"), uid, "Sort the attic", None, None, "completed", None, None,
         _at(i, 2), _at(i, 9, 999999), 6, None, _at(i, 1, 4)),
        (goal("career"), uid, "Change jobs", "Senior role by summer", ["Career"], "pipeline", None, 2,
         None, None, 12, {"milestones": ["cv", "apply"], "ratio": 0.5}, _at(i, 1, 5)),
    ]  # fmt: skip
    reminder = monday - timedelta(minutes=15) + timedelta(microseconds=123456)
    tasks: list[tuple[Any, ...]] = [
        (task("run"), uid, goal("health"), "Morning run", "5 km easy", "done", monday, 30, "time", None,
         reminder, reminder + timedelta(minutes=2, microseconds=1),
         reminder + timedelta(minutes=4, microseconds=120000),
         monday + timedelta(minutes=31, microseconds=654321), "FREQ=DAILY", [goal("pipeline"), goal("career")],
         _at(i, 3, 10)),
        (task("stretch"), uid, goal("health"), "Stretch", None, "missed", monday + timedelta(hours=12), 10, "time",
         None, None, None, None, None, None, [], _at(i, 3, 11)),
        (task("interview"), uid, goal("career"), "Mock interview", None, "missed", monday + timedelta(days=2), 60,
         "location", "leaving home", reminder + timedelta(days=2), None, None, None, None, None, _at(i, 3, 12)),
        (task("dentist"), uid, goal("pipeline"), "Book dentist", None, "missed", monday + timedelta(days=3), 5,
         "time", None, None, None, None, None, None, [goal("health")], _at(i, 3, 13)),
        (task("attic"), uid, goal("untagged"), "Clear the attic", None, "missed", None, 120, "time", None,
         None, None, None, None, None, None, _at(i, 3, 17)),
        (task("groceries"), uid, None, "Groceries", None, "pending", None, None, "location", "near the market",
         None, None, None, None, None, None, _at(i, 3, 14)),
        (task("read"), uid, goal("child"), "Read a chapter", None, "rescheduled", monday + timedelta(days=8), 20,
         "time", None, None, None, None, None, "FREQ=WEEKLY;BYDAY=MO,WE,FR", [], _at(i, 3, 15)),
        (task("call_mum"), uid, None, "Call mum", None, "cancelled", monday + timedelta(days=1, hours=10), 15,
         "time", None, None, None, None, None, None, None, _at(i, 3, 16)),
    ]  # fmt: skip
    conversations = [
        (earlier_id("conversations", i, context), uid, f"thread-{i}-{context}", context, last, _at(i, 4, n))
        for n, (context, last) in enumerate(
            [("onboarding", None), ("goal", _at(i, 4, 777)), ("task", _at(i, 5)), ("reschedule", _at(i, 6, 42))]
        )
    ]
    patterns: list[tuple[Any, ...]] = [
        (earlier_id("patterns", i, "streak"), uid, "completion_streak", "Runs most mornings",
         {"streak_days": 12, "best": 21}, 1.0, _at(i, 5, 1), _at(i, 6, 250000)),
        (earlier_id("patterns", i, "avoidance"), uid, "time_avoidance", None,
         {"hours": [6, 7], "weekday": "Mon"}, 0.0, _at(i, 5, 2), _at(i, 5, 2)),
        (earlier_id("patterns", i, "morning"), uid, "morning_person", None,
         {"ratio": 0.42, "samples": [{"at": "07:00", "done": True}]}, 0.42, _at(i, 5, 3), _at(i, 5, 3)),
    ]  # fmt: skip
    log: list[tuple[Any, ...]] = [
        (earlier_id("notification_log", i, "run_push"), task("run"), "push", reminder, "done",
         reminder + timedelta(minutes=1, microseconds=5)),
        (earlier_id("notification_log", i, "stretch_whatsapp"), task("stretch"), "whatsapp",
         monday + timedelta(hours=12, microseconds=1), "missed", None),
        (earlier_id("notification_log", i, "stretch_call"), task("stretch"), "call",
         monday + timedelta(hours=12, minutes=2), "no_response", None),
        (earlier_id("notification_log", i, "interview_call"), task("interview"), "call",
         reminder + timedelta(days=2), "reschedule", reminder + timedelta(days=2, minutes=3)),
        (earlier_id("notification_log", i, "groceries_unsent"), task("groceries"), "push", None, None, None),
    ]  # fmt: skip
    return {
        "users": users,
        "goals": goals,
        "tasks": tasks,
        "conversations": conversations,
        "patterns": patterns,
        "notification_log": log,
    }


async def _fill(dsn: str, users: int) -> None:
    per_user = [_user_rows(i) for i in range(users)]
    conn = await _connect(dsn)
    try:
        async with conn.transaction():
            for table, fields in EARLIER_FIELDS.items():
                columns = ", ".join(fields)
                values = ", ".join(f"${n}" for n in range(1, len(fields) + 1))
                rows = [row for rows in per_user for row in rows[table]]
                await conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({values})", rows)
        for view in MATERIALIZED_VIEWS:
            await conn.execute(f"REFRESH MATERIALIZED VIEW {view}")
    finally:
        await conn.close()


def fill_earlier(dsn: str, users: int = 3) -> None:
    """Write ``users`` users with their goals, tasks, conversations, patterns and notifications, then refresh the views.

    Plain INSERTs in the earlier shapes, one row per value the earlier schema allows: every CHECK value, NULL and empty
    arrays, a child goal, NULL goal_id and scheduled_at, microsecond timestamps, confidence 0.0 / 1.0 / 0.42. Per user:
    1 user, 5 goals, 8 tasks, 4 conversations, 3 patterns, 5 notification_log rows; ids from ``earlier_id``.
    """
    asyncio.run(_fill(dsn, users))


async def _read(dsn: str) -> dict[str, list[dict[str, Any]]]:
    conn = await _connect(dsn)
    try:
        result: dict[str, list[dict[str, Any]]] = {}
        for table, fields in EARLIER_FIELDS.items():
            records = await conn.fetch(f"SELECT {', '.join(fields)} FROM {table}")
            rows = [{field: canonical(record[field]) for field in fields} for record in records]
            result[table] = sorted(rows, key=lambda row: row["id"])
        return result
    finally:
        await conn.close()


def earlier_rows(dsn: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the six tables as the earlier API showed it (its response fields), canonical, sorted by id.

    uuids and datetimes are strings (see ``canonical``), arrays are lists, jsonb is Python values and SQL NULL is None.
    """
    return asyncio.run(_read(dsn))
