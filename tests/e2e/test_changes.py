"""The change feed (issue #12): ``GET /api/v1/changes`` and ``GET /api/v1/changes/stream``, on both backends.

Every kind of write (API creates, patches, deletes, bulk creates, upserts, batches, the bulk status update, rows
removed or nulled by ``ON DELETE CASCADE / SET NULL``, and plain SQL from another tool) must appear exactly once, in
commit order, its ``row`` what ``GET /{res}/{id}`` answers (a delete: the row before). Then how ``after``/``next``
page, the filters and their 422s, long polls, scopes, retention (410 ``changes-expired``), ``changes: false``,
Server-Sent Events on a live server, and the OpenAPI document.

The session app's database is shared by every test of the session, so each test starts from ``after=now`` and reads
what it made with :func:`settle`: a marker write made last, read with long polls until it shows, proves every change
before it is in the pages (on PostgreSQL a transaction open anywhere on the cluster can hold the settled head back
for a while; the feed waits rather than skip, and so do these tests).
"""

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from flux_dao.config import Settings
from flux_dao.http.app import create_app
from flux_dao.http.plugin import FluxDaoPlugin
from flux_dao.store import changes as changes_store
from flux_dao.store.migrations import upgrade
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, fresh_database, make_settings, run_sql, sql_uuid
from tests.factories import API
from tests.live import LiveServer, live_server
from tests.manifests import project_copy
from tests.problems import assert_problem

CHANGES = f"{API}/changes"
STREAM = f"{API}/changes/stream"
PATHS = {
    "users": "users",
    "goals": "goals",
    "tasks": "tasks",
    "conversations": "conversations",
    "patterns": "patterns",
    "notification_log": "notification-log",
}
"""Each recorded resource's name (as changes name it) and its path."""
CHANGE_KEYS = {"position", "resource", "op", "id", "committed_at", "row"}
MAX_POSITION = 2**63 - 1

TASKS_READER = "tasks-reader-0123456789"
WRITER_ONLY = "writer-only-0123456789"
KEYS_FILE = f"""
tasks_reader:
  key_sha256: {hashlib.sha256(TASKS_READER.encode()).hexdigest()}
  scopes: [tasks:read]
writer_only:
  key_sha256: {hashlib.sha256(WRITER_ONLY.encode()).hexdigest()}
  scopes: [tasks:write, goals:write]
"""

Row = dict[str, Any]
Change = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------------------------------


def read(client: Any, **params: Any) -> Row:
    """One ``GET /changes`` that must answer 200; each item checked for its shape."""
    response = client.get(CHANGES, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"items", "next"}, body
    assert isinstance(body["next"], int)
    for item in body["items"]:
        assert set(item) == CHANGE_KEYS, item
        assert isinstance(item["position"], int)
        assert item["resource"] in PATHS, item
        assert item["op"] in {"insert", "update", "delete"}, item
        assert item["id"] == item["row"]["id"], item
        committed = datetime.fromisoformat(item["committed_at"])
        if committed.tzinfo is None:
            committed = committed.replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - committed) < timedelta(hours=1), item
    positions = [item["position"] for item in body["items"]]
    assert positions == sorted(set(positions)), positions
    after = params.get("after")
    if isinstance(after, int) or (isinstance(after, str) and after.isdigit()):
        assert all(p > int(after) for p in positions), (after, positions)
        assert body["next"] >= int(after)
    if positions:
        assert body["next"] >= positions[-1]
    return body  # type: ignore[no-any-return]


def head(client: Any) -> int:
    """The feed's head once every write made so far has settled: the position of a marker write made now.

    Not just ``after=now``: on PostgreSQL a transaction open anywhere on the cluster holds the settled head back, and
    ``after=now`` then answers a head before writes already acknowledged (they come later, never lost).
    """
    now = read(client, after="now")
    assert now["items"] == []
    return _through_marker(client, now["next"])[-1]["position"]  # type: ignore[no-any-return]


def walk(client: Any, after: int, **params: Any) -> tuple[list[Change], int]:
    """Every change after ``after`` that the feed hands out now, page by page; and the last ``next``."""
    items: list[Change] = []
    position = after
    for _ in range(10_000):
        body = read(client, after=position, **params)
        items += body["items"]
        assert body["next"] >= position
        if not body["items"]:
            return items, body["next"]
        position = body["next"]
    message = "the feed never ran dry"
    raise AssertionError(message)


def marker(client: Any) -> Row:
    return factories.user(client, email=f"marker-{uuid.uuid4().hex}@example.com")


def settle(client: Any, after: int) -> list[Change]:
    """The changes after ``after``, up to a marker write made now (the marker's own change left out).

    Long polls until the marker shows: every position before it has then settled, so nothing before it can appear
    later. The marker must appear exactly once, last, as an insert of ``users``.
    """
    return _through_marker(client, after)[:-1]


def _through_marker(client: Any, after: int) -> list[Change]:
    """The changes after ``after`` through a marker write made now (its insert last)."""
    mark = marker(client)
    items: list[Change] = []
    position = after
    deadline = time.monotonic() + 60
    while not any(item["id"] == mark["id"] for item in items):
        assert time.monotonic() < deadline, f"the marker never appeared after {after}: {items}"
        body = read(client, after=position, wait=10)
        items += body["items"]
        position = body["next"]
    assert items[-1]["resource"] == "users", items[-1]
    assert items[-1]["op"] == "insert", items[-1]
    assert items[-1]["row"] == mark
    assert [item["id"] for item in items].count(mark["id"]) == 1
    return items


def ops(items: list[Change]) -> list[tuple[str, str, str]]:
    return [(item["resource"], item["op"], item["id"]) for item in items]


def position_of(items: list[Change], row_id: str) -> int:
    """The position of the one change of ``row_id`` in ``items``."""
    (position,) = (item["position"] for item in items if item["id"] == row_id)
    return position  # type: ignore[no-any-return]


def get(client: Any, resource: str, row_id: str) -> Row:
    response = client.get(f"{API}/{PATHS[resource]}/{row_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def gone(client: Any, resource: str, row_id: str) -> None:
    assert_problem(client.get(f"{API}/{PATHS[resource]}/{row_id}"), 404, "not-found")


def assert_rows_are_current(client: Any, items: list[Change]) -> None:
    """Each row's last change shows what ``GET`` answers now (a delete: the row is gone)."""
    last: dict[tuple[str, str], Change] = {}
    for item in items:
        last[item["resource"], item["id"]] = item
    for (resource, row_id), item in last.items():
        if item["op"] == "delete":
            gone(client, resource, row_id)
        else:
            assert item["row"] == get(client, resource, row_id), item


def error_fields(problem: Row) -> list[str]:
    return [error["field"] for error in problem.get("errors") or []]


def assert_422_naming(response: Any, field: str) -> None:
    problem = assert_problem(response, 422, "validation-error")
    assert field in error_fields(problem), problem


def as_key(key: str) -> dict[str, str]:
    return {KEY_HEADER: key}


def plugin_of(client: Any) -> FluxDaoPlugin:
    return client.app.plugins.get(FluxDaoPlugin)  # type: ignore[no-any-return]


def purge(client: Any) -> int:
    """Run the app's own purge now (it runs once a minute by itself), through the app's event loop."""
    plugin = plugin_of(client)
    assert client.blocking_portal is not None
    return int(client.blocking_portal.call(plugin.changes.purge))


def purge_through(client: Any, position: int) -> None:
    """``purge`` until every change up to ``position`` is gone (after ``position - 1`` is 410): it removes only
    settled changes, and a fresh app's feed may not see the head settle at once (on PostgreSQL a transaction open
    elsewhere on the cluster holds it back)."""
    deadline = time.monotonic() + 30
    while True:
        purge(client)
        if client.get(CHANGES, params={"after": position - 1}).status_code == 410:
            return
        assert time.monotonic() < deadline, f"changes up to {position} were not purged"
        time.sleep(0.1)


# --- every kind of write appears exactly once ------------------------------------------------------------------------


def test_create_patch_and_delete_appear_once_each_in_order(client):
    start = head(client)
    user = factories.user(client, profile={"name": "Ada", "tags": ["a", "b"]})
    goal = factories.goal(client, user["id"], class_tags=["health"], plan_json={"weeks": [1, 2]})
    patched = client.patch(f"{API}/goals/{goal['id']}", json={"title": "Run two marathons", "status": "completed"})
    assert patched.status_code == 200, patched.text
    patched_goal = patched.json()
    assert get(client, "goals", goal["id"]) == patched_goal
    deleted = client.delete(f"{API}/goals/{goal['id']}")
    assert deleted.status_code == 204, deleted.text

    items = settle(client, start)
    assert ops(items) == [
        ("users", "insert", user["id"]),
        ("goals", "insert", goal["id"]),
        ("goals", "update", goal["id"]),
        ("goals", "delete", goal["id"]),
    ]
    assert items[0]["row"] == user == get(client, "users", user["id"])
    assert items[1]["row"] == goal
    assert items[2]["row"] == patched_goal
    assert items[3]["row"] == patched_goal  # the row before the delete
    gone(client, "goals", goal["id"])


def test_a_write_to_every_resource_appears_under_its_name(client):
    start = head(client)
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    task = factories.task(client, user["id"], goal_id=goal["id"], shared_with_goal_ids=[goal["id"]])
    conversation = factories.conversation(client, user["id"])
    pattern = factories.pattern(client, user["id"], data={"k": [1, 2.5, None]}, confidence=0.5)
    note = factories.notification(client, task["id"], sent_at="2030-01-02T03:04:05.123456Z")

    items = settle(client, start)
    expected = [
        ("users", user),
        ("goals", goal),
        ("tasks", task),
        ("conversations", conversation),
        ("patterns", pattern),
        ("notification_log", note),
    ]
    assert ops(items) == [(resource, "insert", row["id"]) for resource, row in expected]
    for item, (resource, row) in zip(items, expected, strict=True):
        assert item["row"] == row == get(client, resource, row["id"]), resource


def test_bulk_create_appears_as_one_insert_per_row_in_the_order_sent(client):
    user = factories.user(client)
    start = head(client)
    sent = [{"user_id": user["id"], "title": f"bulk {n}", "duration_minutes": n + 1} for n in range(5)]
    response = client.post(f"{API}/tasks/bulk", json=sent)
    assert response.status_code == 201, response.text
    rows = response.json()

    items = settle(client, start)
    assert ops(items) == [("tasks", "insert", row["id"]) for row in rows]
    assert [item["row"] for item in items] == rows
    assert_rows_are_current(client, items)


def test_upsert_appears_as_an_insert_then_as_an_update(client):
    start = head(client)
    address = f"upsert-{uuid.uuid4().hex[:12]}@example.com"
    first = client.post(f"{API}/users", params={"on_conflict": "email"}, json={"email": address})
    assert first.status_code in {200, 201}, first.text
    second = client.post(
        f"{API}/users", params={"on_conflict": "email"}, json={"email": address, "onboarded": True, "profile": {"n": 1}}
    )
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]

    items = settle(client, start)
    row_id = first.json()["id"]
    assert ops(items) == [("users", "insert", row_id), ("users", "update", row_id)]
    assert items[0]["row"] == first.json()
    assert items[1]["row"] == second.json() == get(client, "users", row_id)


def test_batch_operations_appear_in_operation_order(client):
    user = factories.user(client)
    doomed = factories.task(client, user["id"], title="doomed")
    start = head(client)
    operations = [
        {"op": "create", "resource": "goals", "body": {"user_id": user["id"], "title": "Swim"}, "ref": "g"},
        {"op": "create", "resource": "tasks", "body": {"user_id": user["id"], "goal_id": "$g.id", "title": "t"}},
        {"op": "update", "resource": "goals", "id": "$g.id", "body": {"status": "completed"}},
        {"op": "delete", "resource": "tasks", "id": doomed["id"]},
        {"op": "update", "resource": "users", "id": user["id"], "body": {"onboarded": True}},
    ]
    response = client.post(f"{API}/batch", json={"operations": operations})
    assert response.status_code == 200, response.text
    goal, task, completed, _, onboarded = (result["row"] for result in response.json()["results"])

    items = settle(client, start)
    assert ops(items) == [
        ("goals", "insert", goal["id"]),
        ("tasks", "insert", task["id"]),
        ("goals", "update", goal["id"]),
        ("tasks", "delete", doomed["id"]),
        ("users", "update", user["id"]),
    ]
    assert [item["row"] for item in items] == [goal, task, completed, doomed, onboarded]
    assert_rows_are_current(client, items)


def test_a_failed_batch_leaves_nothing_in_the_feed(client):
    user = factories.user(client)
    start = head(client)
    operations = [
        {"op": "create", "resource": "goals", "body": {"user_id": user["id"], "title": "kept?"}},
        {"op": "update", "resource": "users", "id": user["id"], "body": {"onboarded": True}},
        {"op": "delete", "resource": "tasks", "id": "01900000-0000-7000-8000-0000000000ff"},
    ]
    response = client.post(f"{API}/batch", json={"operations": operations})
    assert_problem(response, 404, "not-found")
    assert settle(client, start) == []


def test_refused_writes_and_replayed_requests_leave_nothing_in_the_feed(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    start = head(client)
    assert_problem(client.post(f"{API}/users", json={"email": user["email"]}), 409, "duplicate")
    bulk = [{"user_id": user["id"], "title": "fine"}, {"user_id": user["id"], "title": ""}]
    assert client.post(f"{API}/tasks/bulk", json=bulk).status_code == 422
    missing = [{"user_id": user["id"], "title": "fine"}, {"user_id": "01900000-0000-7000-8000-0000000000ff"}]
    assert client.post(f"{API}/tasks/bulk", json=missing).status_code in {409, 422}
    stale = client.patch(f"{API}/tasks/{task['id']}", json={"title": "x"}, headers={"If-Match": '"7"'})
    assert_problem(stale, 412, "precondition-failed")
    assert_problem(client.delete(f"{API}/tasks/01900000-0000-7000-8000-0000000000ff"), 404, "not-found")
    key = {"Idempotency-Key": f"changes-{uuid.uuid4().hex}"}
    first = client.post(f"{API}/goals", json={"user_id": user["id"], "title": "once"}, headers=key)
    again = client.post(f"{API}/goals", json={"user_id": user["id"], "title": "once"}, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    patch_key = {"Idempotency-Key": f"changes-{uuid.uuid4().hex}"}
    for _ in range(2):
        response = client.patch(f"{API}/tasks/{task['id']}", json={"status": "done"}, headers=patch_key)
        assert response.status_code == 200, response.text

    items = settle(client, start)
    assert ops(items) == [("goals", "insert", first.json()["id"]), ("tasks", "update", task["id"])]
    assert items[1]["row"] == get(client, "tasks", task["id"])
    assert items[1]["row"]["version"] == 2


def test_bulk_status_update_appears_as_one_update_per_task(client):
    user = factories.user(client)
    tasks = [factories.task(client, user["id"], title=f"t{n}") for n in range(4)]
    untouched = factories.task(client, user["id"], title="untouched")
    start = head(client)
    ids = [t["id"] for t in tasks]
    body = {"task_ids": [*ids, "01900000-0000-7000-8000-0000000000ff"], "new_status": "missed"}
    response = client.post(f"{API}/tasks/bulk-update-state", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"updated_count": 4}

    items = settle(client, start)
    assert sorted(ops(items)) == sorted(("tasks", "update", row_id) for row_id in ids)
    assert untouched["id"] not in {item["id"] for item in items}
    assert {item["row"]["status"] for item in items} == {"missed"}
    assert_rows_are_current(client, items)


def test_deleting_a_user_shows_the_rows_its_cascade_removed(client):
    user = factories.user(client)
    other = factories.user(client)
    goal = factories.goal(client, user["id"])
    with_goal = factories.task(client, user["id"], goal_id=goal["id"])
    loose = factories.task(client, user["id"])
    pattern = factories.pattern(client, user["id"], pattern_type="streak")
    conversation = factories.conversation(client, user["id"])
    kept = factories.task(client, other["id"])
    before = {
        ("users", user["id"]): get(client, "users", user["id"]),
        ("goals", goal["id"]): goal,
        ("tasks", with_goal["id"]): with_goal,
        ("tasks", loose["id"]): loose,
        ("patterns", pattern["id"]): pattern,
        ("conversations", conversation["id"]): conversation,
    }
    start = head(client)
    response = client.delete(f"{API}/users/{user['id']}")
    assert response.status_code == 204, response.text

    items = settle(client, start)
    deletes = [item for item in items if item["op"] == "delete"]
    assert sorted((d["resource"], d["id"]) for d in deletes) == sorted(before), ops(items)
    # ON DELETE SET NULL of tasks.goal_id may run before the task's own cascade: then it shows as an update of that
    # task (goal_id null) before its delete. Nothing else may appear.
    extra = [item for item in items if item["op"] != "delete"]
    assert all(item["resource"] == "tasks" and item["id"] == with_goal["id"] for item in extra), ops(items)
    assert all(item["op"] == "update" and item["row"]["goal_id"] is None for item in extra), extra
    for item in items:
        if item["op"] == "delete":
            expected = before[item["resource"], item["id"]]
            if extra and item["id"] == with_goal["id"]:
                expected = {**expected, "goal_id": None}
            assert item["row"] == expected, item
    assert kept["id"] not in {item["id"] for item in items}
    for resource, row_id in before:
        gone(client, resource, row_id)


def test_deleting_a_goal_shows_its_tasks_goal_id_set_null(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    child = factories.goal(client, user["id"], title="sub-goal", parent_goal_id=goal["id"])
    tasks = [factories.task(client, user["id"], goal_id=goal["id"], title=f"t{n}") for n in range(2)]
    other = factories.task(client, user["id"], title="no goal")
    start = head(client)
    response = client.delete(f"{API}/goals/{goal['id']}")
    assert response.status_code == 204, response.text

    items = settle(client, start)
    assert sorted(ops(items)) == sorted(
        [
            ("goals", "delete", goal["id"]),
            ("goals", "update", child["id"]),
            *(("tasks", "update", t["id"]) for t in tasks),
        ]
    )
    (deleted,) = (item for item in items if item["op"] == "delete")
    assert deleted["row"] == goal
    for item in items:
        if item["op"] == "update":
            field = "parent_goal_id" if item["resource"] == "goals" else "goal_id"
            assert item["row"][field] is None, item
    assert_rows_are_current(client, items)
    assert other["id"] not in {item["id"] for item in items}


def test_writes_made_with_plain_sql_appear(client, settings):
    url = settings.database.url
    start = head(client)
    user_id = str(uuid.uuid4())
    literal = sql_uuid(url, user_id)
    run_sql(url, f"INSERT INTO users (id, email) VALUES ({literal}, 'sql-{user_id}@example.com')")  # noqa: S608
    inserted = get(client, "users", user_id)
    run_sql(url, f"UPDATE users SET onboarded = true, version = version + 1 WHERE id = {literal}")  # noqa: S608
    updated = get(client, "users", user_id)
    task = factories.task(client, user_id)
    run_sql(url, f"DELETE FROM tasks WHERE id = {sql_uuid(url, task['id'])}")  # noqa: S608

    items = settle(client, start)
    assert ops(items) == [
        ("users", "insert", user_id),
        ("users", "update", user_id),
        ("tasks", "insert", task["id"]),
        ("tasks", "delete", task["id"]),
    ]
    assert items[0]["row"] == inserted
    assert items[1]["row"] == updated
    assert updated["onboarded"] is True
    assert items[2]["row"] == task == items[3]["row"]


def test_a_rolled_back_plain_sql_write_never_appears(client, settings):
    url = settings.database.url
    start = head(client)
    user = factories.user(client)
    literal = sql_uuid(url, user["id"])
    if url.startswith("sqlite"):
        statements = ["BEGIN", f"UPDATE users SET onboarded = 1 WHERE id = {literal}", "ROLLBACK"]  # noqa: S608
    else:
        statements = ["BEGIN", f"UPDATE users SET onboarded = true WHERE id = {literal}", "ROLLBACK"]  # noqa: S608
    run_sql(url, *statements)
    items = settle(client, start)
    assert ops(items) == [("users", "insert", user["id"])]
    assert get(client, "users", user["id"])["onboarded"] is False


# --- after / next ----------------------------------------------------------------------------------------------------


def _some_changes(client: Any) -> tuple[int, list[Change]]:
    """A head, then ten changes of users, goals, tasks and notification-log after it."""
    start = head(client)
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    tasks = [factories.task(client, user["id"], goal_id=goal["id"], title=f"t{n}") for n in range(3)]
    factories.notification(client, tasks[0]["id"])
    client.patch(f"{API}/tasks/{tasks[1]['id']}", json={"status": "done"}).raise_for_status()
    client.patch(f"{API}/goals/{goal['id']}", json={"title": "renamed"}).raise_for_status()
    client.delete(f"{API}/tasks/{tasks[2]['id']}").raise_for_status()
    factories.notification(client, tasks[1]["id"], channel="call")
    return start, settle(client, start)


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_following_next_in_small_pages_neither_repeats_nor_skips(client, limit):
    start, everything = _some_changes(client)
    assert len(everything) == 10
    pages = []
    position = start
    while True:
        body = read(client, after=position, limit=limit)
        assert len(body["items"]) <= limit
        if len(body["items"]) == limit:
            assert body["next"] == body["items"][-1]["position"]  # a full page goes on right after its last change
        pages.append(body["items"])
        if not body["items"]:
            break
        position = body["next"]
    found = [item for page in pages for item in page]
    assert found[:-1] == everything
    assert (found[-1]["resource"], found[-1]["op"]) == ("users", "insert")  # the marker of settle()
    assert body["next"] == found[-1]["position"]


def test_after_now_answers_no_items_and_the_head(client):
    _, everything = _some_changes(client)
    after_marker = read(client, after=everything[-1]["position"])
    (mark,) = after_marker["items"]  # only the marker of settle() is after the last change made
    now = read(client, after="now")
    assert now == {"items": [], "next": mark["position"]}
    assert read(client, after=now["next"]) == {"items": [], "next": now["next"]}
    # nothing new: next stays where it is, also for a filter and a long poll of no time
    assert read(client, after=now["next"], resources="tasks") == {"items": [], "next": now["next"]}
    assert read(client, after=now["next"], wait=0) == {"items": [], "next": now["next"]}
    task_user = factories.user(client)
    task = factories.task(client, task_user["id"])
    items = settle(client, now["next"])
    assert ops(items) == [("users", "insert", task_user["id"]), ("tasks", "insert", task["id"])]


def test_an_after_beyond_the_head_answers_nothing_and_keeps_next(client):
    now = head(client)
    for after in (now + 1, now + 1000, MAX_POSITION):
        assert read(client, after=after) == {"items": [], "next": after}
    assert read(client, after=str(MAX_POSITION).zfill(19)) == {"items": [], "next": MAX_POSITION}


def test_resources_filters_by_name_or_path(client):
    start, everything = _some_changes(client)
    upto = everything[-1]["position"]

    def only(*names: str) -> list[Change]:
        return [item for item in everything if item["resource"] in names]

    cases = {
        "tasks": only("tasks"),
        "notification-log": only("notification_log"),
        "notification_log": only("notification_log"),
        "tasks,goals": only("tasks", "goals"),
        "goals,notification-log": only("goals", "notification_log"),
        "tasks,tasks": only("tasks"),
    }
    for resources, expected in cases.items():
        assert expected, resources
        found, last = walk(client, start, resources=resources)
        assert found == expected, resources
        assert last >= upto, resources
        paged, _ = walk(client, start, resources=resources, limit=1)
        assert paged == expected, resources
    assert walk(client, start, resources="conversations")[0] == []


def test_a_filtered_next_moves_past_changes_of_other_resources(client):
    start = head(client)
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    items = settle(client, start)
    body = read(client, after=start, resources="tasks")
    assert body["items"] == []
    assert body["next"] >= position_of(items, goal["id"])
    task = factories.task(client, user["id"])
    settle(client, body["next"])
    (found,) = read(client, after=body["next"], resources="tasks")["items"]
    assert (found["id"], found["row"]) == (task["id"], task)


@pytest.mark.parametrize("resources", ["nope", "tasks,nope", "flux_dao_changes", "Tasks", "tasks,", "task"])
def test_a_resource_the_feed_does_not_record_is_422_naming_resources(client, resources):
    assert_422_naming(client.get(CHANGES, params={"resources": resources}), "resources")


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", "1" * 20, str(MAX_POSITION + 1), "1e3", "0x10", "NOW", "٣"])
def test_a_malformed_after_is_422_naming_after(client, after):
    assert_422_naming(client.get(CHANGES, params={"after": after}), "after")


@pytest.mark.parametrize(("name", "value"), [("wait", "31"), ("wait", "-1"), ("wait", "soon"), ("limit", "0")])
def test_wait_and_limit_out_of_bounds_are_422(client, name, value):
    assert_422_naming(client.get(CHANGES, params={name: value}), name)


@pytest.mark.parametrize("limit", ["1001", "-5", "ten"])
def test_a_limit_over_1000_is_422(client, limit):
    assert_422_naming(client.get(CHANGES, params={"limit": limit, "after": "now"}), "limit")


def test_the_largest_limit_and_wait_are_accepted(client):
    now = head(client)  # the position of a marker: reading from just before it finds it at once
    began = time.monotonic()
    body = read(client, after=now - 1, limit=1000, wait=30)
    assert time.monotonic() - began < 5
    assert [item["position"] for item in body["items"]] == [now]
    assert body["next"] == now


# --- long polls ------------------------------------------------------------------------------------------------------


def test_a_long_poll_with_nothing_new_answers_empty_after_the_wait(client):
    now = head(client)
    began = time.monotonic()
    body = read(client, after=now, wait=1)
    elapsed = time.monotonic() - began
    assert body == {"items": [], "next": now}
    assert 0.9 <= elapsed < 4, elapsed


@pytest.mark.slow
def test_a_five_second_long_poll_with_nothing_new_waits_five_seconds(client):
    now = head(client)
    began = time.monotonic()
    body = read(client, after=now, wait=5)
    elapsed = time.monotonic() - began
    assert body == {"items": [], "next": now}
    assert 4.9 <= elapsed < 8, elapsed


def _poll_in_thread(client: Any, **params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def poll() -> None:
        began = time.monotonic()
        try:
            result["body"] = read(client, **params)
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            result["error"] = exc
        result["elapsed"] = time.monotonic() - began

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread, result


def test_a_change_made_during_a_long_poll_ends_it_early_with_that_change(client):
    user = factories.user(client)
    now = head(client)
    thread, result = _poll_in_thread(client, after=now, wait=20)
    time.sleep(0.5)
    assert thread.is_alive(), result
    task = factories.task(client, user["id"], title="wake up")
    thread.join(timeout=25)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert 0.5 <= result["elapsed"] < 6, result["elapsed"]  # well before the 20 s wait
    (item,) = result["body"]["items"]
    assert (item["resource"], item["op"], item["row"]) == ("tasks", "insert", task)
    assert result["body"]["next"] == item["position"]


def test_a_long_poll_after_now_waits_for_the_next_change(client):
    user = factories.user(client)
    settle(client, head(client))  # the user's own change is behind the head by the time the poll starts
    thread, result = _poll_in_thread(client, after="now", wait=20, resources="tasks")
    time.sleep(0.5)
    assert thread.is_alive(), result
    task = factories.task(client, user["id"], title="from now on")
    thread.join(timeout=25)
    assert "error" not in result, result.get("error")
    assert result["elapsed"] < 6, result["elapsed"]
    assert [(c["resource"], c["op"], c["id"]) for c in result["body"]["items"]] == [("tasks", "insert", task["id"])]


def test_a_filtered_long_poll_is_not_woken_by_another_resource(client):
    user = factories.user(client)
    now = head(client)
    thread, result = _poll_in_thread(client, after=now, wait=2, resources="tasks")
    time.sleep(0.3)
    goal = factories.goal(client, user["id"])
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert result["body"]["items"] == []
    assert result["elapsed"] >= 1.9, result["elapsed"]
    items = settle(client, now)
    # next went past the goal's change (unless a transaction elsewhere on the cluster held the head back meanwhile)
    assert now <= result["body"]["next"] <= position_of(items, goal["id"])


def test_a_long_poll_for_a_plain_sql_write_wakes(client, settings):
    url = settings.database.url
    now = head(client)
    thread, result = _poll_in_thread(client, after=now, wait=20, resources="users")
    time.sleep(0.3)
    user_id = str(uuid.uuid4())
    run_sql(url, f"INSERT INTO users (id, email) VALUES ({sql_uuid(url, user_id)}, 'poll-{user_id}@x.org')")  # noqa: S608
    thread.join(timeout=25)
    assert "error" not in result, result.get("error")
    assert result["elapsed"] < 6, result["elapsed"]
    (item,) = result["body"]["items"]
    assert (item["op"], item["id"], item["row"]) == ("insert", user_id, get(client, "users", user_id))


# --- scopes ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("change_keys") / "keys.yaml"
    path.write_text(KEYS_FILE)
    return path


@pytest.fixture(scope="module")
def scoped_app(settings: Settings, keys_file: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """A second app on the session's database, with the scoped keys of KEYS_FILE beside the full-access key."""
    with TestClient(create_app(replace(settings, keys_file=keys_file)), raise_server_exceptions=False) as app:
        yield app


@pytest.fixture
def scoped(client: TestClient, scoped_app: TestClient) -> TestClient:  # type: ignore[type-arg]
    """``scoped_app``; ``client`` (the same database) wipes what the test wrote."""
    return scoped_app


def test_a_tasks_reader_follows_only_tasks_by_default(client, scoped):
    start = head(client)
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    task = factories.task(client, user["id"], goal_id=goal["id"])
    everything = settle(client, start)
    assert {item["resource"] for item in everything} == {"users", "goals", "tasks"}
    reader = as_key(TASKS_READER)
    response = scoped.get(CHANGES, params={"after": start, "wait": 10}, headers=reader)
    assert response.status_code == 200, response.text
    assert response.json()["items"] == [item for item in everything if item["resource"] == "tasks"]
    assert ops(response.json()["items"]) == [("tasks", "insert", task["id"])]
    explicit = scoped.get(CHANGES, params={"after": start, "resources": "tasks", "wait": 10}, headers=reader)
    assert explicit.json()["items"] == response.json()["items"]
    assert scoped.get(CHANGES, params={"after": "now"}, headers=reader).status_code == 200


@pytest.mark.parametrize("resources", ["goals", "tasks,goals", "notification-log", "users"])
def test_a_tasks_reader_asking_for_another_resource_is_403_naming_its_scope(scoped, resources):
    response = scoped.get(CHANGES, params={"resources": resources, "after": "now"}, headers=as_key(TASKS_READER))
    problem = assert_problem(response, 403, "forbidden")
    wanted = next(name for name in resources.split(",") if name != "tasks")
    scope = f"{wanted.replace('-', '_')}:read"
    assert problem["scope"] == scope, problem


@pytest.mark.parametrize("params", [{}, {"after": "now"}, {"resources": "tasks"}, {"wait": "1"}])
def test_a_key_without_any_read_scope_is_403(scoped, params):
    response = scoped.get(CHANGES, params=params, headers=as_key(WRITER_ONLY))
    problem = assert_problem(response, 403, "forbidden")
    assert problem["scope"].endswith(":read"), problem


def test_no_key_is_401_and_a_full_key_reads_everything(scoped):
    assert_problem(scoped.get(CHANGES, headers={KEY_HEADER: ""}), 401, "unauthorized")
    assert_problem(scoped.get(CHANGES, headers=as_key("not-a-key-at-all-000")), 401, "unauthorized")
    assert scoped.get(CHANGES, params={"after": "now"}, headers=as_key(API_KEY)).status_code == 200


# --- retention -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, 604800.0), ("1", 1.0), ("90", 90.0), ("15m", 900.0), ("24h", 86400.0), ("7d", 604800.0)]
)
def test_the_retention_is_read_from_the_environment(raw, seconds):
    env = {"DATABASE_URL": "sqlite+aiosqlite:///unused.db"}
    if raw is not None:
        env["FLUX_DAO_CHANGES_RETENTION"] = raw
    assert Settings.from_env(env).changes_retention == seconds


@pytest.mark.parametrize("raw", ["0", "-5", "abc", "3651d"])
def test_a_retention_that_is_no_duration_is_refused_naming_the_variable(raw):
    env = {"DATABASE_URL": "sqlite+aiosqlite:///unused.db", "FLUX_DAO_CHANGES_RETENTION": raw}
    with pytest.raises(ValueError, match="FLUX_DAO_CHANGES_RETENTION"):
        Settings.from_env(env)


@pytest.fixture
def expiring(fresh_url: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """An app on a database of its own whose feed keeps changes one second."""
    settings = make_settings(fresh_url, changes_retention=1.0)
    upgrade(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as app:
        app.headers[KEY_HEADER] = API_KEY
        yield app


def test_changes_past_the_retention_are_purged_and_an_older_after_is_410(expiring):
    app = expiring
    user = factories.user(app)
    patched = app.patch(f"{API}/users/{user['id']}", json={"onboarded": True}).json()
    old = _through_marker(app, 0)
    assert ops(old[:2]) == [("users", "insert", user["id"]), ("users", "update", user["id"])]
    assert old[1]["row"] == patched
    # without after: from the oldest change kept, which is the first this database ever had
    assert read(app) == {"items": old, "next": old[-1]["position"]}
    time.sleep(1.3)
    assert purge(app) == 2  # the user's two changes; the marker, the newest of all, is kept however old
    task = factories.task(app, user["id"])
    assert purge(app) == 1  # now the marker goes; the task's change is younger than the retention
    young = _through_marker(app, old[-1]["position"])
    assert ops(young[:1]) == [("tasks", "insert", task["id"])]

    assert read(app)["items"] == young  # without after: from the oldest kept
    oldest = young[0]["position"]
    for after in (0, old[0]["position"], old[1]["position"]):
        problem = assert_problem(app.get(CHANGES, params={"after": after}), 410, "changes-expired")
        assert problem["oldest"] == oldest, problem
        assert problem["title"] == "Changes no longer kept"
        # a long poll and a filter answer the same: never a silent gap
        assert_problem(app.get(CHANGES, params={"after": after, "wait": 1}), 410, "changes-expired")
        assert_problem(app.get(CHANGES, params={"after": after, "resources": "goals"}), 410, "changes-expired")
    # the newest purged position is where the kept ones go on from
    assert read(app, after=old[-1]["position"])["items"] == young
    assert read(app, after="now")["next"] == young[-1]["position"]
    assert get(app, "users", user["id"]) == patched  # the purge removes changes, never rows


def test_a_purge_deletes_in_rounds_of_its_batch_until_none_is_old(expiring, monkeypatch):
    monkeypatch.setattr(changes_store, "PURGE_BATCH", 3)  # nine of the ten changes: rounds of 3, 3, 3 and 0
    app = expiring
    user = factories.user(app)
    for n in range(8):
        factories.task(app, user["id"], title=f"round {n}")
    old = _through_marker(app, 0)
    assert len(old) == 10
    time.sleep(1.3)
    assert purge(app) == 9  # all but the newest
    assert read(app) == {"items": old[-1:], "next": old[-1]["position"]}
    assert_problem(app.get(CHANGES, params={"after": old[-3]["position"]}), 410, "changes-expired")
    assert read(app, after=old[-2]["position"])["items"] == old[-1:]  # the newest purged: where the kept go on


def test_the_newest_change_is_kept_however_old_so_positions_go_on_from_it(expiring):
    app = expiring
    user = factories.user(app)
    items = _through_marker(app, 0)
    assert len(items) == 2
    time.sleep(1.3)
    assert purge(app) == 1  # the user's change; the marker, the newest, stays: the next position follows it
    assert read(app) == {"items": items[1:], "next": items[-1]["position"]}
    problem = assert_problem(app.get(CHANGES, params={"after": 0}), 410, "changes-expired")
    assert problem["oldest"] == items[-1]["position"], problem
    task = factories.task(app, user["id"])
    (item,) = read(app, after=items[-1]["position"], wait=5)["items"]
    assert (item["op"], item["row"]) == ("insert", task)
    assert item["position"] > items[-1]["position"]


# --- changes: false --------------------------------------------------------------------------------------------------

UNRECORDED = "    timestamps: [created_at, updated_at]\n"
"""The line of ``patterns`` (only it declares both timestamps) after which ``changes: false`` goes."""


@pytest.fixture
def unrecorded(fresh_url: str, tmp_path: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """An app whose manifest marks ``patterns`` ``changes: false``, on a database of its own."""
    manifest = project_copy(tmp_path)
    text = manifest.read_text(encoding="utf-8")
    assert text.count(UNRECORDED) == 1
    manifest.write_text(text.replace(UNRECORDED, UNRECORDED + "    changes: false\n"), encoding="utf-8")
    settings = replace(make_settings(fresh_url), manifest_path=manifest)
    upgrade(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as app:
        app.headers[KEY_HEADER] = API_KEY
        yield app


def test_a_resource_marked_changes_false_never_appears(unrecorded, fresh_url):
    app = unrecorded
    user = factories.user(app)
    pattern_id = str(uuid.uuid4())
    run_sql(
        fresh_url,
        f"INSERT INTO patterns (id, user_id) VALUES ({sql_uuid(fresh_url, pattern_id)}, "  # noqa: S608
        f"{sql_uuid(fresh_url, user['id'])})",
    )
    assert get(app, "patterns", pattern_id)["user_id"] == user["id"]
    pattern = factories.pattern(app, user["id"], pattern_type="streak")
    patched = app.patch(f"{API}/patterns/{pattern['id']}", json={"confidence": 0.9})
    assert patched.status_code == 200, patched.text
    other = factories.pattern(app, user["id"])
    assert app.delete(f"{API}/patterns/{other['id']}").status_code == 204
    task = factories.task(app, user["id"])
    assert app.delete(f"{API}/users/{user['id']}").status_code == 204  # cascades to the pattern and the task

    items = settle(app, 0)
    assert "patterns" not in {item["resource"] for item in items}
    assert sorted(ops(items)) == sorted(
        [
            ("users", "insert", user["id"]),
            ("tasks", "insert", task["id"]),
            ("users", "delete", user["id"]),
            ("tasks", "delete", task["id"]),
        ]
    )
    assert_422_naming(app.get(CHANGES, params={"resources": "patterns"}), "resources")
    assert_422_naming(app.get(CHANGES, params={"resources": "tasks,patterns"}), "resources")
    assert_422_naming(app.get(STREAM, params={"resources": "patterns"}), "resources")
    assert read(app, resources="tasks,users")["items"][:-1] == items  # the last: settle()'s marker
    # not recorded at all (no trigger writes its changes: they would cost its writers for nothing)
    assert run_sql(fresh_url, "SELECT count(*) FROM flux_dao_changes WHERE resource = 'patterns'") == [(0,)]
    assert run_sql(fresh_url, "SELECT count(*) FROM flux_dao_changes WHERE resource = 'tasks'") == [(2,)]


# --- Server-Sent Events ----------------------------------------------------------------------------------------------


@dataclass
class Event:
    event: str | None
    id: str | None
    data: str | None
    retry: str | None


class Events:
    """The events of one open stream, parsed as the EventSource specification reads them."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream"), response.headers
        self.lines = response.iter_lines()
        self.comments: list[str] = []

    def next(self) -> Event:
        fields: dict[str, list[str]] = {}
        for line in self.lines:
            if line == "":
                if fields:
                    return Event(
                        event=fields.get("event", [None])[-1],
                        id=fields.get("id", [None])[-1],
                        data="\n".join(fields["data"]) if "data" in fields else None,
                        retry=fields.get("retry", [None])[-1],
                    )
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        message = "the stream ended"
        raise AssertionError(message)

    def changes(self, count: int) -> list[Change]:
        """The next ``count`` change events' data, each checked against its ``id``."""
        found = []
        while len(found) < count:
            event = self.next()
            if event.retry is not None and event.data is None:
                continue
            assert event.event == "change", event
            assert event.data is not None
            change = httpx.Response(200, content=event.data).json()
            assert set(change) == CHANGE_KEYS, change
            assert event.id == str(change["position"]), event
            found.append(change)
        return found


@dataclass
class Served:
    server: LiveServer
    http: httpx.Client
    url: str


@pytest.fixture(scope="module")
def served(backend: str, keys_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A live ``flux-dao serve`` on a database of its own, with the scoped keys beside the full-access key."""
    work = tmp_path_factory.mktemp("changes_live")
    with fresh_database(backend, work, "changes_live") as url:
        env = {"SERVICE_API_KEYS": API_KEY, "FLUX_DAO_KEYS_FILE": str(keys_file)}
        with (
            live_server(url, work, env=env) as server,
            httpx.Client(base_url=server.base, headers=as_key(API_KEY), timeout=httpx.Timeout(10.0)) as http,
        ):
            yield Served(server, http, url)


def open_stream(served: Served, headers: dict[str, str] | None = None, timeout: float = 10.0, **params: Any) -> Any:
    """An open SSE response (a context manager); a read that waits more than ``timeout`` seconds fails the test."""
    return served.http.stream("GET", STREAM, params=params, headers=headers or {}, timeout=httpx.Timeout(timeout))


def stream_problem(served: Served, status: int, slug: str, headers: dict[str, str] | None = None, **params: Any) -> Row:
    """A stream request refused before any event: a problem answer, not an open stream."""
    with open_stream(served, headers, **params) as response:
        response.read()
        return assert_problem(response, status, slug)


def test_stream_events_are_the_changes_get_changes_lists(served):
    http = served.http
    start = head(http)
    with open_stream(served, after=start) as response:
        assert response.headers["cache-control"] == "no-cache"
        events = Events(response)
        assert events.next() == Event(event=None, id=None, data=None, retry="1000")
        user = factories.user(http, profile={"a": [1, {"b": None}]})
        goal = factories.goal(http, user["id"])
        patched = http.patch(f"{API}/goals/{goal['id']}", json={"status": "completed"})
        assert patched.status_code == 200, patched.text
        assert http.delete(f"{API}/goals/{goal['id']}").status_code == 204
        streamed = events.changes(4)
    assert ops(streamed) == [
        ("users", "insert", user["id"]),
        ("goals", "insert", goal["id"]),
        ("goals", "update", goal["id"]),
        ("goals", "delete", goal["id"]),
    ]
    assert [c["row"] for c in streamed] == [user, goal, patched.json(), patched.json()]
    assert read(http, after=start)["items"] == streamed


def test_a_stream_reconnecting_with_last_event_id_resumes_right_after_it(served):
    http = served.http
    start = head(http)
    user = factories.user(http)
    tasks = [factories.task(http, user["id"], title=f"s{n}") for n in range(4)]
    with open_stream(served, after=start) as response:
        first = Events(response).changes(2)
    resume = {"Last-Event-ID": str(first[-1]["position"])}
    with open_stream(served, resume, after=start) as response:  # the header wins over after, as on a reconnect
        events = Events(response)
        rest = events.changes(3)
        mark = marker(http)
        (marked,) = events.changes(1)
    assert [c["row"] for c in first + rest] == [user, *tasks]
    assert marked["row"] == mark  # nothing after the last task but the marker: no repeat, no gap
    positions = [c["position"] for c in [*first, *rest, marked]]
    assert positions == sorted(set(positions))
    assert read(http, after=start)["items"] == [*first, *rest, marked]


def test_a_stream_after_now_starts_with_the_next_change(served):
    http = served.http
    before = factories.user(http)
    with open_stream(served, after="now") as response:
        events = Events(response)
        after = factories.task(http, before["id"])
        (change,) = events.changes(1)
    assert (change["op"], change["row"]) == ("insert", after)


def test_a_stream_without_after_starts_from_the_oldest_change_kept(served):
    factories.user(served.http)
    (oldest,) = read(served.http, limit=1, wait=10)["items"]
    with open_stream(served) as response:
        (first,) = Events(response).changes(1)
    assert first == oldest


def test_a_stream_follows_only_the_resources_asked_for(served):
    http = served.http
    start = head(http)
    user = factories.user(http)
    with open_stream(served, after=start, resources="goals,notification-log") as response:
        events = Events(response)
        factories.task(http, user["id"])
        goal = factories.goal(http, user["id"])
        task = factories.task(http, user["id"], goal_id=goal["id"])
        note = factories.notification(http, task["id"])
        last = factories.goal(http, user["id"], title="last")
        found = events.changes(3)
    assert ops(found) == [
        ("goals", "insert", goal["id"]),
        ("notification_log", "insert", note["id"]),
        ("goals", "insert", last["id"]),
    ]


def test_a_stream_for_a_tasks_reader_carries_only_tasks(served):
    http = served.http
    start = head(http)
    user = factories.user(http)
    with open_stream(served, as_key(TASKS_READER), after=start) as response:
        events = Events(response)
        factories.goal(http, user["id"])
        task = factories.task(http, user["id"])
        (change,) = events.changes(1)
    assert (change["resource"], change["row"]) == ("tasks", task)


def test_a_stream_a_key_may_not_read_is_403_before_it_starts(served):
    problem = stream_problem(served, 403, "forbidden", as_key(TASKS_READER), resources="goals")
    assert problem["scope"] == "goals:read"
    problem = stream_problem(served, 403, "forbidden", as_key(WRITER_ONLY))
    assert problem["scope"].endswith(":read")
    stream_problem(served, 401, "unauthorized", as_key("no-such-key-0000000000"))


@pytest.mark.parametrize(
    ("header", "params", "field"),
    [
        ({}, {"after": "abc"}, "after"),
        ({}, {"after": "1" * 20}, "after"),
        ({"Last-Event-ID": "-1"}, {}, "Last-Event-ID"),
        ({"Last-Event-ID": "1.5"}, {}, "Last-Event-ID"),
        ({}, {"resources": "nope"}, "resources"),
    ],
)
def test_a_malformed_stream_request_is_422_before_it_starts(served, header, params, field):
    with open_stream(served, header, **params) as response:
        response.read()
        assert_422_naming(response, field)


def test_a_stream_after_a_purged_position_is_410(served):
    http = served.http
    start = head(http)
    user = factories.user(http)
    old = _through_marker(http, start)
    assert [c["row"] for c in old[:1]] == [user]
    time.sleep(1.3)
    settings = make_settings(served.url, changes_retention=1.0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as purger:  # the server purges once a minute
        purger.headers[KEY_HEADER] = API_KEY
        purge_through(purger, old[0]["position"])  # the user's change; the marker, the newest of all, is kept
    task = factories.task(http, user["id"])
    young = _through_marker(http, old[-1]["position"])
    assert [c["row"] for c in young[:1]] == [task]
    for old_position in (start, old[0]["position"] - 1):
        problem = stream_problem(served, 410, "changes-expired", {"Last-Event-ID": str(old_position)})
        assert problem["oldest"] == old[-1]["position"], problem
        problem = stream_problem(served, 410, "changes-expired", after=str(old_position))
        assert problem["oldest"] == old[-1]["position"], problem
    with open_stream(served, {"Last-Event-ID": str(old[0]["position"])}) as response:  # the newest purged: fine
        assert Events(response).changes(3) == [old[-1], *young]


@pytest.mark.slow
def test_a_silent_stream_sends_a_heartbeat_comment(served):
    with open_stream(served, timeout=20, after="now", resources="conversations") as response:
        events = Events(response)
        events.next()  # retry
        began = time.monotonic()
        for line in events.lines:
            if line.startswith(":"):
                assert line == ": heartbeat"
                break
            assert line == "", line
        assert 14 <= time.monotonic() - began < 18


# --- OpenAPI ---------------------------------------------------------------------------------------------------------


def _resolve(doc: Row, schema: Row) -> Row:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
    return schema


def test_openapi_documents_the_page_and_the_stream(client):
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    doc = response.json()
    page = doc["paths"]["/api/v1/changes"]["get"]
    assert page["operationId"] == "read_changes"
    parameters = {p["name"]: p for p in page["parameters"]}
    assert {"after", "resources", "limit", "wait"} <= set(parameters)
    assert {parameters[n]["in"] for n in ("after", "resources", "limit", "wait")} == {"query"}
    assert (parameters["limit"]["schema"]["minimum"], parameters["limit"]["schema"]["maximum"]) == (1, 1000)
    assert parameters["wait"]["schema"]["maximum"] == 30
    for status in ("200", "401", "403", "410", "422"):
        assert status in page["responses"], status
    body = _resolve(doc, page["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(body["properties"]) == {"items", "next"}
    change = _resolve(doc, body["properties"]["items"]["items"])
    assert set(change["properties"]) == CHANGE_KEYS
    assert set(change["properties"]["op"]["enum"]) == {"insert", "update", "delete"}
    expired = page["responses"]["410"]
    assert "oldest" in expired["description"]
    problem = _resolve(doc, expired["content"]["application/problem+json"]["schema"])
    assert "oldest" in problem["properties"]

    stream = doc["paths"]["/api/v1/changes/stream"]["get"]
    assert stream["operationId"] == "stream_changes"
    parameters = {p["name"]: p for p in stream["parameters"]}
    assert parameters["after"]["in"] == "query"
    assert parameters["resources"]["in"] == "query"
    assert parameters["Last-Event-ID"]["in"] == "header"
    for status in ("200", "401", "403", "410", "422"):
        assert status in stream["responses"], status
    assert set(stream["responses"]["200"]["content"]) == {"text/event-stream"}, stream["responses"]["200"]
