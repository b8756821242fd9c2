"""SQLite's execution path (issue #10, ``flux_dao/store/sqlite.py``): what a user of the embedded default notices.

Since #10 the service runs SQLite on the standard library's ``sqlite3``, one connection per worker, statements on
the event loop, instead of SQLAlchemy's aiosqlite engine. These tests hold it to what that promises:

- **Storage parity**: rows written the way earlier versions and migrations write them (a SQLAlchemy engine over the
  manifest-built tables, or SQL relying on the server defaults) read back identically through the API, and rows the
  API writes are byte for byte what that engine writes for the same values.
- **Another process's write lock** (a ``sqlite3`` connection holding ``BEGIN IMMEDIATE``): a write waits for it
  without blocking the worker's event loop, and succeeds once it is released; held past ``DB_CONNECT_TIMEOUT``, the
  write is a 503 ``unavailable`` problem with Retry-After and stores nothing.
- **A statement past ``DB_STATEMENT_TIMEOUT``** is interrupted: a 503 problem (not a 500), and the worker goes on.
- **``DB_SQLITE_SYNCHRONOUS``**: a bad value stops the CLI naming the variable; ``normal`` and ``full`` reach the
  connection.
- **Two workers** taking concurrent creates and patches: every answer 2xx, nothing lost.

Budget: about 15 s (a single-worker server start, 200,000 rows inserted by SQL, the 1 s lock wait, eight short CLI
and app starts); the two-worker test, marked slow, about 10 s more (starting two workers takes most of it).
Measured on a shared 2-core machine.
"""

import contextlib
import re
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flux_dao.config import Settings
from flux_dao.http.app import create_app
from flux_dao.http.plugin import FluxDaoPlugin
from flux_dao.manifest.loader import load_manifest
from flux_dao.query.conditions import SQLITE_LOWER
from flux_dao.schema.tables import build_tables
from flux_dao.store.migrations import upgrade
from tests.conftest import API_KEY, KEY_HEADER, MANIFEST, make_settings
from tests.factories import API
from tests.live import FLUX_DAO, LiveServer, live_server
from tests.problems import assert_problem

pytestmark = pytest.mark.sqlite

CONNECT_TIMEOUT = 1.0
"""DB_CONNECT_TIMEOUT of the single-worker server: how long a write waits for another process's lock."""
STATEMENT_TIMEOUT = 0.01
"""DB_STATEMENT_TIMEOUT of the single-worker server. A lookup runs a few hundred SQLite steps and is never looked
at by the progress handler (every 20,000 steps), so only the deliberately slow statement can reach it."""
SLOW_ROWS = 200_000
PROMPT = 0.3
"""Seconds within which a request to an idle worker is answered even on a busy shared machine (it takes ~2 ms)."""


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
            "updated_at": datetime(2026, 2, 1, 10, 0, 0, 1, tzinfo=UTC),
            "version": 7,
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
            "updated_at": datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
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
            "updated_at": datetime(2026, 1, 3, tzinfo=UTC),
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
            "updated_at": datetime(2026, 3, 2, 6, 0, 1, tzinfo=UTC),
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
        "updated_at": "2026-02-01T10:00:00.000001Z",
        "version": 7,
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
        "updated_at": "2026-01-02T03:04:05.600000Z",
        "version": 1,
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
        "updated_at": "2026-01-03T00:00:00Z",
        "version": 1,
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
        "version": 1,
    },
    ("notification_log", NOTIFICATION_ID): {
        "id": str(NOTIFICATION_ID),
        "task_id": str(TASK_ID),
        "channel": "whatsapp",
        "sent_at": "2026-03-02T06:00:01Z",
        "response": None,
        "responded_at": None,
        "updated_at": "2026-03-02T06:00:01Z",
        "version": 1,
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
        "updated_at": patched.json()["updated_at"],
        "version": 2,
    }
    after = raw_row(engine, "tasks", TASK_ID)
    changed = {
        name for name, old, new in zip(metadata.tables["tasks"].c.keys(), before, after, strict=True) if old != new
    }
    assert changed == {"status", "completed_at", "updated_at", "version"}
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


# --- one worker, another process holding the write lock, a long statement -------------------------------------------


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``flux-dao serve --workers 1`` on a fresh SQLite file, with short lock and statement limits."""
    folder = tmp_path_factory.mktemp("sqlite-one-worker")
    env = {
        "SERVICE_API_KEYS": API_KEY,
        "DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "DB_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        "FLUX_DAO_SCHEMA_RECHECK": "0",
        "FLUX_DAO_METRICS": "public",
        "FLUX_DAO_LOG_FORMAT": "text",
    }
    url = f"sqlite:///{folder / 'flux_dao.db'}"
    with live_server(url, folder, env=env, args=("--workers", "1")) as server:
        yield server
    assert "Traceback" not in server.output, server.output


@pytest.fixture
def api(one_worker: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{one_worker.base}{API}", headers={KEY_HEADER: API_KEY}, timeout=10) as client:
        yield client


def database_file(server: LiveServer) -> str:
    return str(server.log_path.parent / "flux_dao.db")


@contextlib.contextmanager
def write_lock(path: str) -> Iterator[None]:
    """SQLite's write lock, taken by another process's connection (``BEGIN IMMEDIATE``) until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def statements_sent(server: LiveServer) -> float:
    """The worker's ``flux_dao_db_statements_total``: it grows as a statement is handed to SQLite."""
    text = httpx.get(f"{server.base}/metrics", timeout=5).text
    found = re.search(r"^flux_dao_db_statements_total (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found[1])


def in_thread(
    server: LiveServer, method: str, path: str, body: dict[str, Any]
) -> tuple[threading.Thread, dict[str, Any]]:
    """Send one request from a thread, on its own connection; its response (or error) lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            url = f"{server.base}{API}{path}"
            outcome["response"] = httpx.request(method, url, json=body, headers={KEY_HEADER: API_KEY}, timeout=10)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def new_user(api: httpx.Client) -> dict[str, Any]:
    response = api.post("/users", json={"email": f"{uuid.uuid4().hex[:12]}@example.com"})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_write_waiting_for_another_process_lock_leaves_the_worker_serving(one_worker, api) -> None:
    user = new_user(api)
    with write_lock(database_file(one_worker)):
        locked_at = time.monotonic()
        sent_before = statements_sent(one_worker)
        patch, outcome = in_thread(one_worker, "PATCH", f"/users/{user['id']}", {"onboarded": True})
        deadline = time.monotonic() + 5
        while statements_sent(one_worker) == sent_before:  # the UPDATE reached SQLite and found the lock taken
            assert time.monotonic() < deadline, "the PATCH never reached the database"
            time.sleep(0.01)
        assert patch.is_alive(), outcome

        # while the PATCH waits, the same single worker answers: its wait is an asyncio sleep, not one inside SQLite
        health = httpx.get(f"{one_worker.base}/health", timeout=2)
        fetched = api.get(f"/users/{user['id']}", timeout=2)
        assert health.status_code == 200, health.text
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == user  # the committed row; the PATCH has not happened yet
        assert patch.is_alive(), f"the PATCH ended while the lock was held: {outcome}"
        took = [health.elapsed.total_seconds(), fetched.elapsed.total_seconds()]
        assert max(took) < PROMPT, took

        time.sleep(max(0.0, locked_at + 0.5 - time.monotonic()))  # hold the lock about half a second in all
    released_at = time.monotonic()
    patch.join(timeout=5)

    assert "error" not in outcome, outcome
    response = outcome["response"]
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed == {**user, "onboarded": True, "version": 2, "updated_at": changed["updated_at"]}
    assert time.monotonic() - released_at < 1.0  # it went through soon after the release, not at the time limit
    assert api.get(f"/users/{user['id']}").json()["onboarded"] is True


def test_a_lock_held_past_the_connect_timeout_is_a_503_and_stores_nothing(one_worker, api) -> None:
    user = new_user(api)
    path = database_file(one_worker)
    with write_lock(path):
        patch, patched = in_thread(one_worker, "PATCH", f"/users/{user['id']}", {"onboarded": True})
        post, posted = in_thread(one_worker, "POST", "/users", {"email": "never-stored@example.com"})
        patch.join(timeout=CONNECT_TIMEOUT + 5)
        post.join(timeout=CONNECT_TIMEOUT + 5)

    for outcome in (patched, posted):
        assert "error" not in outcome, outcome
        response = outcome["response"]
        body = assert_problem(response, 503, "unavailable")
        assert response.headers["retry-after"] == "1"
        assert "Traceback" not in body["detail"]
        waited = response.elapsed.total_seconds()
        assert CONNECT_TIMEOUT <= waited < CONNECT_TIMEOUT + 1.5, waited  # DB_CONNECT_TIMEOUT, and not tried again

    assert api.get(f"/users/{user['id']}").json() == user
    assert api.get("/users", params={"email": "never-stored@example.com"}).json()["items"] == []
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email = 'never-stored@example.com'").fetchone() == (0,)


def test_a_statement_past_the_statement_timeout_is_interrupted_with_a_503(one_worker, api) -> None:
    user = new_user(api)
    other = new_user(api)
    kept = api.post("/tasks", json={"user_id": other["id"], "title": "kept"}).json()
    path = database_file(one_worker)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SLOW_ROWS})
            INSERT INTO tasks (id, user_id, title, status, trigger_type, created_at)
            SELECT randomblob(16), X'{uuid.UUID(user["id"]).hex}', 'Slow task ' || i, 'pending', 'time',
                   '2026-01-01 00:00:00.' || printf('%06d', i)
            FROM n
            """  # noqa: S608 (a uuid's hex and a constant)
        )
        # the precondition: the statement the list sends takes many times the limit when nothing interrupts it
        conn.create_function(SQLITE_LOWER, 1, lambda v: v.lower() if isinstance(v, str) else v, deterministic=True)
        started = time.perf_counter()
        conn.execute(f"SELECT count(*) FROM tasks WHERE {SQLITE_LOWER}(title) LIKE '%no such title%'")  # noqa: S608
        uninterrupted = time.perf_counter() - started
    assert uninterrupted > 3 * STATEMENT_TIMEOUT, f"{uninterrupted:.3f} s: too fast to prove an interruption"

    response = api.get("/tasks", params={"title__icontains": "no such title"})
    body = assert_problem(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    assert "Traceback" not in body["detail"]

    # the worker goes on: its connection answers the next requests normally
    assert httpx.get(f"{one_worker.base}/health", timeout=2).status_code == 200
    assert api.get(f"/tasks/{kept['id']}").json() == kept
    listed = api.get("/tasks", params={"user_id": other["id"]}).json()
    assert (listed["total"], [item["id"] for item in listed["items"]]) == (1, [kept["id"]])
    page = api.get("/tasks", params={"user_id": user["id"], "limit": 3, "count": "false"}).json()
    assert len(page["items"]) == 3
    assert page["has_next"] is True
    patched = api.patch(f"/tasks/{kept['id']}", json={"status": "done"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "done"


# --- DB_SQLITE_SYNCHRONOUS --------------------------------------------------------------------------------------------


def test_writes_reach_the_database_file_by_the_checkpointer_not_in_a_request(one_worker, api) -> None:
    """The worker copies its WAL into the database file from a thread of its own, within seconds of the writes;
    the commits themselves never checkpoint (that is how a request used to stall every few hundred writes)."""
    path = database_file(one_worker)
    user = new_user(api)
    probe = sqlite3.connect(path)
    try:
        assert probe.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)  # another connection's own default
        before = Path(path).stat().st_size
        body = {"user_id": user["id"], "description": "x" * 1000}
        created = [api.post("/tasks", json=body | {"title": f"t{n}"}) for n in range(300)]
        assert {response.status_code for response in created} == {201}
        deadline = time.monotonic() + 10
        while Path(path).stat().st_size <= before:  # 300 rows of 1,000+ bytes: new pages, copied into the file
            assert time.monotonic() < deadline, "the WAL was not checkpointed into the database file"
            time.sleep(0.1)
        count = probe.execute("SELECT count(*) FROM tasks WHERE user_id = ?", (uuid.UUID(user["id"]).bytes,))
        assert count.fetchone() == (300,)
    finally:
        probe.close()


@pytest.mark.parametrize("name", ["DB_SQLITE_SYNCHRONOUS", "FLUX_DAO_DB_SQLITE_SYNCHRONOUS"])
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_bad_synchronous_value_stops_the_cli_naming_the_variable(tmp_path: Path, name: str, command: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", name: "off"}
    completed = subprocess.run(
        [str(FLUX_DAO), "--manifest", str(MANIFEST), command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert output.strip() == f"Error: {name} must be one of normal|full, got 'off'", output
    assert not (tmp_path / "x.db").exists()  # stopped before touching the database


@pytest.mark.parametrize(("value", "pragma"), [(None, 1), ("normal", 1), ("full", 2), (" FULL ", 2)])
def test_the_synchronous_setting_reaches_the_connection(tmp_path: Path, value: str | None, pragma: int) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'sync.db'}", "FLUX_DAO_MANIFEST": str(MANIFEST)}
    if value is not None:
        env["DB_SQLITE_SYNCHRONOUS"] = value
    settings = Settings.from_env(env)
    upgrade(settings)
    with TestClient(create_app(settings)) as client:
        db = client.app.plugins.get(FluxDaoPlugin).db

        async def read() -> tuple[int, int, str]:
            async with db.reading() as conn:
                synchronous = await conn.scalar(sa.text("PRAGMA synchronous"), {})
                foreign_keys = await conn.scalar(sa.text("PRAGMA foreign_keys"), {})
                journal = await conn.scalar(sa.text("PRAGMA journal_mode"), {})
            return int(synchronous), int(foreign_keys), str(journal)

        assert client.blocking_portal is not None
        assert client.blocking_portal.call(read) == (pragma, 1, "wal")


# --- two workers ------------------------------------------------------------------------------------------------------

THREADS = 16
TASKS_PER_THREAD = 12


@pytest.mark.slow
def test_two_workers_take_concurrent_creates_and_patches_without_losing_any(tmp_path: Path) -> None:
    """16 threads each create 12 tasks and patch every one (a new connection per request, so both workers
    take writes): 384 writes, every answer 2xx, and the API then lists every task with its patched values."""
    env = {"SERVICE_API_KEYS": API_KEY, "FLUX_DAO_LOG_FORMAT": "text", "LOG_LEVEL": "INFO"}
    with live_server(f"sqlite:///{tmp_path / 'two.db'}", tmp_path, env=env, args=("--workers", "2")) as server:
        base = f"{server.base}{API}"
        headers = {KEY_HEADER: API_KEY}
        user = httpx.post(f"{base}/users", json={"email": "two@example.com"}, headers=headers).json()

        def writer(thread: int) -> list[tuple[str, int, str]]:
            answers = []
            # a new TCP connection per request (none kept alive), so the kernel spreads them over both workers
            client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)
            for n in range(TASKS_PER_THREAD):
                rid = {**headers, "X-Request-ID": f"two-{thread}-{n}"}
                body = {"user_id": user["id"], "title": f"t{thread}-{n}"}
                created = client.post(f"{base}/tasks", json=body, headers=rid)
                answers.append(("POST", created.status_code, created.text))
                if created.status_code != 201:
                    continue
                change = {"status": "done", "title": f"t{thread}-{n} done", "duration_minutes": thread * 100 + n + 1}
                patched = client.patch(f"{base}/tasks/{created.json()['id']}", json=change, headers=rid)
                answers.append(("PATCH", patched.status_code, patched.text))
            client.close()
            return answers

        with ThreadPoolExecutor(THREADS) as pool:
            answers = [answer for batch in pool.map(writer, range(THREADS)) for answer in batch]
        listed = httpx.get(f"{base}/tasks", params={"user_id": user["id"], "limit": 500}, headers=headers).json()
        done = httpx.get(f"{base}/tasks", params={"user_id": user["id"], "status": "done"}, headers=headers).json()
        output = server.output

    failed = [answer for answer in answers if not 200 <= answer[1] < 300]
    assert failed == [], failed[:3]
    assert len(answers) == 2 * THREADS * TASKS_PER_THREAD
    assert listed["total"] == done["total"] == THREADS * TASKS_PER_THREAD
    expected = {
        (f"t{thread}-{n} done", "done", thread * 100 + n + 1)
        for thread in range(THREADS)
        for n in range(TASKS_PER_THREAD)
    }
    assert {(t["title"], t["status"], t["duration_minutes"]) for t in listed["items"]} == expected
    writers = set(re.findall(r"\[(\d+)\] flux_dao.access: .*(?:POST|PATCH).* request_id=two-", output))
    assert len(writers) == 2, f"the writes did not reach both workers: {writers}"
