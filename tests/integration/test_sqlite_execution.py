"""SQLite's execution path (issue #10, ``flux_dao/store/sqlite.py``): what a user of the embedded default notices.

Since #10 the service runs SQLite on the standard library's ``sqlite3``, one connection per worker, statements on
the event loop, instead of SQLAlchemy's aiosqlite engine. These tests hold it to what that promises:

- **Storage parity**: rows written the way earlier versions and migrations write them (a SQLAlchemy engine over the
  manifest-built tables, or SQL relying on the server defaults) read back identically through the API, and rows the
  API writes are byte for byte what that engine writes for the same values.

Budget: about 2 s (two app starts on migrated files).
"""

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flux_dao.http.app import create_app
from flux_dao.manifest.loader import load_manifest
from flux_dao.schema.tables import build_tables
from flux_dao.store.migrations import upgrade
from tests.conftest import API_KEY, KEY_HEADER, MANIFEST, make_settings
from tests.factories import API

pytestmark = pytest.mark.sqlite


def _json_text(value: Any) -> str:
    """JSON the way earlier versions handed it to SQLAlchemy: msgspec, which encodes the UUIDs of uuid lists."""
    return msgspec.json.encode(value).decode()


# --- storage parity ---------------------------------------------------------------------------------------------------

USER_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
GOAL_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c")
PARENT_GOAL_ID = uuid.UUID("6f1c2b3a-4d5e-4f60-8172-839405a6b7c8")
TASK_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d")
PATTERN_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5e")
NOTIFICATION_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5f")
PLUS_TWO = timezone(timedelta(hours=2))

ENGINE_ROWS: dict[str, list[dict[str, Any]]] = {
    "users": [
        {
            "id": USER_ID,
            "email": "ünïcode@example.com",
            "onboarded": True,
            "profile": {"name": "Zoë", "age": 31, "weights": [70.5, None, 1e-7], "nested": {"ok": False}},
            "notification_preferences": None,
            "created_at": datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        }
    ],
    "goals": [
        {
            "id": PARENT_GOAL_ID,
            "user_id": USER_ID,
            "title": "Parent",
            "status": "pipeline",
            "target_weeks": 6,
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        },
        {
            "id": GOAL_ID,
            "user_id": USER_ID,
            "title": "Run a MARATHON",
            "description": None,
            "class_tags": ["health", "ünïcode", ""],
            "status": "completed",
            "parent_goal_id": PARENT_GOAL_ID,
            "pipeline_order": -3,
            "activated_at": datetime(2026, 3, 1, 10, 0, tzinfo=PLUS_TWO),  # stored as 08:00 UTC
            "completed_at": datetime(2026, 6, 1, 0, 0, 0, 1, tzinfo=UTC),
            "target_weeks": 12,
            "plan_json": {"weeks": [{"km": 5.5}, {"km": 10}], "note": None},
            "created_at": datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
        },
    ],
    "tasks": [
        {
            "id": TASK_ID,
            "user_id": USER_ID,
            "goal_id": GOAL_ID,
            "title": "ÜBUNGEN: 6 sets",
            "description": "line one\nline two",
            "status": "rescheduled",
            "scheduled_at": datetime(2026, 3, 2, 6, 30, 0, 123456, tzinfo=UTC),
            "duration_minutes": 45,
            "trigger_type": "location",
            "location_trigger": "track",
            "reminder_sent_at": datetime(2026, 3, 2, 6, 0, tzinfo=UTC),
            "whatsapp_sent_at": None,
            "call_sent_at": None,
            "completed_at": None,
            "recurrence_rule": "FREQ=WEEKLY;BYDAY=TU",
            "shared_with_goal_ids": [GOAL_ID, PARENT_GOAL_ID],
            "created_at": datetime(2026, 1, 3, tzinfo=UTC),
        }
    ],
    "patterns": [
        {
            "id": PATTERN_ID,
            "user_id": USER_ID,
            "pattern_type": "skips-mondays",
            "description": None,
            "data": {"weekday": 0, "ratio": 0.75},
            "confidence": 0.1 + 0.2,  # 0.30000000000000004: a float that does not round-trip through fewer digits
            "created_at": datetime(2026, 1, 4, tzinfo=UTC),
            "updated_at": datetime(2026, 1, 5, 12, 0, 0, 5, tzinfo=UTC),
        }
    ],
    "notification_log": [
        {
            "id": NOTIFICATION_ID,
            "task_id": TASK_ID,
            "channel": "whatsapp",
            "sent_at": datetime(2026, 3, 2, 6, 0, 1, tzinfo=UTC),
            "response": None,
            "responded_at": None,
        }
    ],
}
"""One row of every resource written through SQLAlchemy, every field type, nulls and non-UTC datetimes included."""

EXPECTED_JSON: dict[tuple[str, uuid.UUID], dict[str, Any]] = {
    ("users", USER_ID): {
        "id": str(USER_ID),
        "email": "ünïcode@example.com",
        "onboarded": True,
        "profile": {"name": "Zoë", "age": 31, "weights": [70.5, None, 1e-7], "nested": {"ok": False}},
        "notification_preferences": None,
        "created_at": "2025-12-31T23:59:59.999999Z",
    },
    ("goals", GOAL_ID): {
        "id": str(GOAL_ID),
        "user_id": str(USER_ID),
        "title": "Run a MARATHON",
        "description": None,
        "class_tags": ["health", "ünïcode", ""],
        "status": "completed",
        "parent_goal_id": str(PARENT_GOAL_ID),
        "pipeline_order": -3,
        "activated_at": "2026-03-01T08:00:00Z",
        "completed_at": "2026-06-01T00:00:00.000001Z",
        "target_weeks": 12,
        "plan_json": {"weeks": [{"km": 5.5}, {"km": 10}], "note": None},
        "created_at": "2026-01-02T03:04:05.600000Z",
    },
    ("tasks", TASK_ID): {
        "id": str(TASK_ID),
        "user_id": str(USER_ID),
        "goal_id": str(GOAL_ID),
        "title": "ÜBUNGEN: 6 sets",
        "description": "line one\nline two",
        "status": "rescheduled",
        "scheduled_at": "2026-03-02T06:30:00.123456Z",
        "duration_minutes": 45,
        "trigger_type": "location",
        "location_trigger": "track",
        "reminder_sent_at": "2026-03-02T06:00:00Z",
        "whatsapp_sent_at": None,
        "call_sent_at": None,
        "completed_at": None,
        "recurrence_rule": "FREQ=WEEKLY;BYDAY=TU",
        "shared_with_goal_ids": [str(GOAL_ID), str(PARENT_GOAL_ID)],
        "created_at": "2026-01-03T00:00:00Z",
    },
    ("patterns", PATTERN_ID): {
        "id": str(PATTERN_ID),
        "user_id": str(USER_ID),
        "pattern_type": "skips-mondays",
        "description": None,
        "data": {"weekday": 0, "ratio": 0.75},
        "confidence": 0.30000000000000004,
        "created_at": "2026-01-04T00:00:00Z",
        "updated_at": "2026-01-05T12:00:00.000005Z",
    },
    ("notification_log", NOTIFICATION_ID): {
        "id": str(NOTIFICATION_ID),
        "task_id": str(TASK_ID),
        "channel": "whatsapp",
        "sent_at": "2026-03-02T06:00:01Z",
        "response": None,
        "responded_at": None,
    },
}
PATHS = {table: table.replace("_", "-") for table in ENGINE_ROWS}
"""Each table's path under /api/v1."""


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[TestClient, sa.Engine, sa.MetaData]]:  # type: ignore[type-arg]
    """A migrated SQLite file, served by the app and open in a sync SQLAlchemy engine over the manifest's tables."""
    settings = make_settings(f"sqlite:///{tmp_path / 'parity.db'}")
    upgrade(settings)
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'parity.db'}", json_serializer=_json_text, json_deserializer=msgspec.json.decode
    )
    metadata = build_tables(load_manifest(MANIFEST))
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            client.headers[KEY_HEADER] = API_KEY
            yield client, engine, metadata
    finally:
        engine.dispose()


def raw_row(engine: sa.Engine, table: str, row_id: uuid.UUID) -> tuple[Any, ...]:
    """The row exactly as stored: SQLite's own values, no conversion."""
    with engine.connect() as conn:
        row = conn.exec_driver_sql(f"SELECT * FROM {table} WHERE id = ?", (row_id.bytes,)).one()  # noqa: S608
    return tuple(row)


def test_rows_written_through_sqlalchemy_read_back_identically_through_the_api(stored) -> None:
    client, engine, metadata = stored
    with engine.begin() as conn:
        for table, rows in ENGINE_ROWS.items():
            for row in rows:
                conn.execute(metadata.tables[table].insert(), row)
        # a row as an SQL tool or a migration writes it: id, created_at and the defaults are the database's own
        conn.exec_driver_sql("INSERT INTO users (email) VALUES ('sql-tool@example.com')")

    for (table, row_id), expected in EXPECTED_JSON.items():
        response = client.get(f"{API}/{PATHS[table]}/{row_id}")
        assert response.status_code == 200, response.text
        assert response.json() == expected, table

    # the filters compare the stored text and JSON the same way the new path binds its parameters
    found = {
        "tasks?scheduled_at__gte=2026-03-02T06:30:00.123456Z&scheduled_at__lt=2026-03-02T06:30:00.123457Z": TASK_ID,
        f"tasks?shared_with_goal_ids__contains={PARENT_GOAL_ID}": TASK_ID,
        "tasks?title__icontains=übungen: 6": TASK_ID,  # Unicode case folding, as PostgreSQL does
        "goals?class_tags__contains=ünïcode": GOAL_ID,
        "goals?activated_at__gte=2026-03-01T09:59:59%2B02:00&activated_at__lt=2026-03-01T08:00:01Z": GOAL_ID,
        "patterns?confidence__gte=0.30000000000000004&confidence__lte=0.30000000000000004": PATTERN_ID,
        "users?email=ünïcode@example.com": USER_ID,
    }
    for query, row_id in found.items():
        response = client.get(f"{API}/{query}")
        assert response.status_code == 200, (query, response.text)
        assert [item["id"] for item in response.json()["items"]] == [str(row_id)], query

    by_email = client.get(f"{API}/users", params={"email": "sql-tool@example.com"}).json()["items"]
    assert len(by_email) == 1
    tool_row = by_email[0]
    assert uuid.UUID(tool_row["id"]).version == 4  # the database's random UUID, as 16 bytes
    assert (tool_row["onboarded"], tool_row["profile"]) == (False, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tool_row["created_at"]), tool_row  # CURRENT_TIMESTAMP
    assert client.get(f"{API}/users/{tool_row['id']}").json() == tool_row

    # an old row edited through the API changes in the columns sent and nowhere else, byte for byte
    before = raw_row(engine, "tasks", TASK_ID)
    change = {"status": "done", "completed_at": "2026-03-02T07:15:00+01:00"}
    patched = client.patch(f"{API}/tasks/{TASK_ID}", json=change)
    assert patched.status_code == 200, patched.text
    assert patched.json() == {
        **EXPECTED_JSON["tasks", TASK_ID],
        "status": "done",
        "completed_at": "2026-03-02T06:15:00Z",
    }
    after = raw_row(engine, "tasks", TASK_ID)
    changed = {
        name for name, old, new in zip(metadata.tables["tasks"].c.keys(), before, after, strict=True) if old != new
    }
    assert changed == {"status", "completed_at"}
    assert _engine_row(engine, metadata, "tasks", str(TASK_ID))["completed_at"] == datetime(
        2026, 3, 2, 6, 15, tzinfo=UTC
    )


API_ROWS: dict[str, dict[str, Any]] = {
    "users": {"email": "ÅPI@example.com", "onboarded": True, "profile": {"tags": ["a", None], "n": 1.5}},
    "goals": {
        "title": "Swim",
        "class_tags": ["water"],
        "status": "abandoned",
        "pipeline_order": 2,
        "activated_at": "2026-03-01T10:00:00.5+02:00",
        "plan_json": {"k": [1, 2, 3]},
    },
    "tasks": {
        "title": "Lap ✓",
        "status": "done",
        "scheduled_at": "2026-04-05T06:07:08.090807Z",
        "completed_at": "2026-04-05T07:00:00-05:30",
        "duration_minutes": 30,
        "trigger_type": "time",
        "recurrence_rule": None,
    },
    "patterns": {"pattern_type": "early-bird", "data": {"hour": 6}, "confidence": 0.9999999999999999},
    "notification_log": {"channel": "call", "sent_at": "2026-04-05T06:00:00Z", "response": "ok"},
}
"""One row of every resource created through the API, with every field type."""


def test_rows_created_through_the_api_read_back_identically_through_sqlalchemy(stored) -> None:
    client, engine, metadata = stored
    created: dict[str, dict[str, Any]] = {}

    def post(table: str, **refs: str) -> None:
        response = client.post(f"{API}/{PATHS[table]}", json={**API_ROWS[table], **refs})
        assert response.status_code == 201, response.text
        created[table] = response.json()

    post("users")
    user_id = created["users"]["id"]
    post("goals", user_id=user_id)
    goal_id = created["goals"]["id"]
    post("tasks", user_id=user_id, goal_id=goal_id, shared_with_goal_ids=[goal_id, str(PARENT_GOAL_ID)])
    post("patterns", user_id=user_id)
    post("notification_log", task_id=created["tasks"]["id"])

    for table, answered in created.items():
        row_id = uuid.UUID(answered["id"])
        read = _engine_row(engine, metadata, table, answered["id"])
        # what SQLAlchemy reads is what the API answered: uuids, aware UTC datetimes, JSON, booleans, floats, nulls
        assert _as_json(read) == answered, table
        assert client.get(f"{API}/{PATHS[table]}/{row_id}").json() == answered, table

        # and the bytes stored are the ones SQLAlchemy itself writes for those values
        before = raw_row(engine, table, row_id)
        with engine.begin() as conn:
            conn.execute(metadata.tables[table].update().where(metadata.tables[table].c.id == row_id), read)
        assert raw_row(engine, table, row_id) == before, table

    read_task = _engine_row(engine, metadata, "tasks", created["tasks"]["id"])
    assert read_task["scheduled_at"] == datetime(2026, 4, 5, 6, 7, 8, 90807, tzinfo=UTC)
    assert read_task["completed_at"] == datetime(2026, 4, 5, 12, 30, tzinfo=UTC)
    assert read_task["shared_with_goal_ids"] == [goal_id, str(PARENT_GOAL_ID)]
    assert read_task["user_id"] == uuid.UUID(user_id)
    assert _engine_row(engine, metadata, "patterns", created["patterns"]["id"])["confidence"] == 0.9999999999999999
    assert _engine_row(engine, metadata, "users", user_id)["onboarded"] is True


def _engine_row(engine: sa.Engine, metadata: sa.MetaData, table: str, row_id: str) -> dict[str, Any]:
    columns = metadata.tables[table]
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(columns).where(columns.c.id == uuid.UUID(row_id))).mappings().one())


def _as_json(values: dict[str, Any]) -> Any:
    """Python values as the API's JSON spells them (UTC datetimes end in Z)."""
    return msgspec.json.decode(msgspec.json.encode(values))
