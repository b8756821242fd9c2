"""``POST /api/v1/batch``: creates, updates and deletes across resources in one transaction, in order, all or none.

A later operation names an earlier one's row with ``"$<ref>.<field>"``; a failing operation rolls every other back
and the answer is its problem plus ``operation`` (its index). Every operation is checked before anything runs: its
resource and kind, its id and body, its references, the key's scope for it, If-Match where a resource requires it.
Runs on both backends; "nothing applied" is checked by comparing every row of every resource before and after.
"""

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from flux_dao.config import Settings
from flux_dao.http.app import create_app
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, MANIFEST
from tests.factories import API
from tests.problems import assert_problem

BATCH = f"{API}/batch"
UNKNOWN_ID = "01900000-0000-7000-8000-0000000000ff"
PATHS = ("users", "goals", "tasks", "conversations", "patterns", "notification-log")

Row = dict[str, Any]
Op = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------------------------------


def dump(client: Any) -> dict[str, list[Row]]:
    """Every row of every resource as the API lists it, sorted by id: all a client can see of the database."""
    everything = {}
    for path in PATHS:
        response = client.get(f"{API}/{path}", params={"limit": 500})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["has_next"] is False, path
        everything[path] = sorted(page["items"], key=lambda row: str(row["id"]))
    return everything


def run(client: Any, operations: list[Op], **kwargs: Any) -> Any:
    return client.post(BATCH, json={"operations": operations}, **kwargs)


def results(client: Any, operations: list[Op]) -> list[Row]:
    """The results of a batch that must succeed."""
    response = run(client, operations)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"results"}
    assert len(body["results"]) == len(operations)
    return body["results"]  # type: ignore[no-any-return]


def fetch(client: Any, path: str, row_id: str) -> Any:
    return client.get(f"{API}/{path}/{row_id}")


def email() -> str:
    return f"batch-{uuid.uuid4().hex[:12]}@example.com"


def error_fields(problem: Row) -> list[str]:
    return [error["field"] for error in problem.get("errors") or []]


def create(resource: str, body: Row, ref: str | None = None) -> Op:
    return {"op": "create", "resource": resource, "body": body} | ({"ref": ref} if ref else {})


def update(resource: str, row_id: str, body: Row, **extra: Any) -> Op:
    return {"op": "update", "resource": resource, "id": row_id, "body": body, **extra}


def delete(resource: str, row_id: str, **extra: Any) -> Op:
    return {"op": "delete", "resource": resource, "id": row_id, **extra}


# --- $ref chains -----------------------------------------------------------------------------------------------------


def test_user_goal_and_ten_tasks_in_one_batch(client):
    address = email()
    operations = [
        create("users", {"email": address}, ref="u"),
        create("goals", {"user_id": "$u.id", "title": "Run a marathon"}, ref="g"),
        *(create("tasks", {"user_id": "$u.id", "goal_id": "$g.id", "title": f"run {n}"}) for n in range(10)),
    ]
    found = results(client, operations)
    assert [result["status"] for result in found] == [201] * 12
    user, goal, *tasks = (result["row"] for result in found)
    assert user["email"] == address
    assert goal["user_id"] == user["id"]
    assert [task["title"] for task in tasks] == [f"run {n}" for n in range(10)]
    assert {(task["user_id"], task["goal_id"]) for task in tasks} == {(user["id"], goal["id"])}
    assert len({row["id"] for row in (user, goal, *tasks)}) == 12
    for path, row in [("users", user), ("goals", goal), *(("tasks", task) for task in tasks)]:
        assert row["version"] == 1, row
        stored = fetch(client, path, row["id"])
        assert stored.status_code == 200, stored.text
        assert stored.json() == row
        assert stored.headers["etag"] == '"1"'
    listed = client.get(f"{API}/tasks", params={"goal_id": goal["id"]}).json()
    assert listed["total"] == 10


def test_a_reference_may_name_any_field_of_an_earlier_row_even_inside_json(client):
    operations = [
        create("users", {"email": email(), "profile": {"name": "Ada"}}, ref="u"),
        create("goals", {"user_id": "$u.id", "title": "Swim", "target_weeks": 9}, ref="g"),
        create(
            "patterns",
            {
                "user_id": "$u.id",
                "pattern_type": "$g.title",
                "data": {"goal": "$g.id", "goals": ["$g.id", "$g.title"], "weeks": "$g.target_weeks"},
            },
        ),
    ]
    operations.append(
        create(
            "tasks",
            {"user_id": "$u.id", "title": "t", "scheduled_at": "$g.created_at", "shared_with_goal_ids": ["$g.id"]},
        )
    )
    user, goal, pattern, task = (result["row"] for result in results(client, operations))
    assert task["scheduled_at"] == goal["created_at"]
    assert task["shared_with_goal_ids"] == [goal["id"]]
    assert pattern["user_id"] == user["id"]
    assert pattern["pattern_type"] == "Swim"
    assert pattern["data"] == {"goal": goal["id"], "goals": [goal["id"], "Swim"], "weeks": 9}
    assert fetch(client, "patterns", pattern["id"]).json() == pattern


def test_a_reference_to_an_updated_row_sees_its_new_values(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"], title="Old title")
    operations = [
        update("goals", goal["id"], {"title": "New title"}, ref="g"),
        create("tasks", {"user_id": "$g.user_id", "goal_id": "$g.id", "title": "$g.title"}),
    ]
    _, task = (result["row"] for result in results(client, operations))
    assert (task["user_id"], task["goal_id"], task["title"]) == (user["id"], goal["id"], "New title")


def test_double_dollar_stores_a_literal_dollar(client):
    user = factories.user(client)
    operations = [
        create("goals", {"user_id": user["id"], "title": "Save"}, ref="g"),
        create(
            "tasks",
            {
                "user_id": user["id"],
                "title": "$$literal",
                "description": "$$g.id",
                "recurrence_rule": "costs $5, and $g alone is no reference",
            },
        ),
    ]
    task = results(client, operations)[1]["row"]
    assert task["title"] == "$literal"
    assert task["description"] == "$g.id"
    assert task["recurrence_rule"] == "costs $5, and $g alone is no reference"
    assert fetch(client, "tasks", task["id"]).json() == task


# --- updates, deletes, versions ---------------------------------------------------------------------------------------


def test_update_with_if_match_and_delete_in_one_batch(client):
    user = factories.user(client)
    kept = factories.task(client, user["id"], title="keep")
    doomed = factories.task(client, user["id"], title="drop")
    operations = [
        update("tasks", kept["id"], {"status": "done"}, if_match='"1"'),
        delete("tasks", doomed["id"], if_match='"1"'),
    ]
    changed, deleted = results(client, operations)
    assert changed["status"] == 200
    assert {k: v for k, v in changed["row"].items() if k not in {"status", "version", "updated_at"}} == {
        k: v for k, v in kept.items() if k not in {"status", "version", "updated_at"}
    }
    assert (changed["row"]["status"], changed["row"]["version"]) == ("done", 2)
    assert deleted == {"status": 204, "row": None}
    stored = fetch(client, "tasks", kept["id"])
    assert stored.json() == changed["row"]
    assert stored.headers["etag"] == '"2"'
    assert_problem(fetch(client, "tasks", doomed["id"]), 404, "not-found")


def test_each_update_operation_adds_one_to_the_version(client):
    user = factories.user(client)
    operations = [
        update("users", user["id"], {"onboarded": True}),
        update("users", user["id"], {"profile": {"step": 2}}, if_match='"2"'),
        update("users", user["id"], {"profile": {"step": 3}}, if_match="*"),
        create("tasks", {"user_id": user["id"], "title": "new"}, ref="t"),
        update("tasks", "$t.id", {"title": "renamed"}, if_match='"1"'),
    ]
    found = results(client, operations)
    assert [(r["status"], r["row"]["version"]) for r in found] == [(200, 2), (200, 3), (200, 4), (201, 1), (200, 2)]
    assert found[2]["row"]["profile"] == {"step": 3}
    assert fetch(client, "users", user["id"]).headers["etag"] == '"4"'
    task = fetch(client, "tasks", found[3]["row"]["id"])
    assert (task.json()["title"], task.headers["etag"]) == ("renamed", '"2"')


def test_results_follow_the_operations_in_order(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    task = factories.task(client, user["id"], goal_id=goal["id"])
    operations = [
        create("patterns", {"user_id": user["id"], "confidence": 0.5}),
        delete("tasks", task["id"]),
        update("goals", goal["id"], {"status": "completed"}),
        create(
            "conversations", {"user_id": user["id"], "langgraph_thread_id": uuid.uuid4().hex, "context_type": "goal"}
        ),
        update("users", user["id"], {"onboarded": True}),
    ]
    found = results(client, operations)
    assert [r["status"] for r in found] == [201, 204, 200, 201, 200]
    assert found[0]["row"]["confidence"] == 0.5
    assert found[2]["row"]["status"] == "completed"
    assert found[3]["row"]["context_type"] == "goal"
    assert found[4]["row"]["onboarded"] is True


@pytest.mark.parametrize("resource", ["notification-log", "notification_log"])
def test_resource_is_named_by_its_path_or_its_name(client, resource):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    operations = [
        {"op": "create", "resource": resource, "body": {"task_id": task["id"], "channel": "push"}, "ref": "n"},
        {"op": "update", "resource": resource, "id": "$n.id", "body": {"response": "seen"}},
    ]
    created, changed = results(client, operations)
    assert (created["status"], changed["status"]) == (201, 200)
    stored = fetch(client, "notification-log", created["row"]["id"])
    assert stored.status_code == 200, stored.text
    assert stored.json() == changed["row"]
    assert (changed["row"]["response"], changed["row"]["version"]) == ("seen", 2)
    only = results(client, [delete(resource, created["row"]["id"])])
    assert only == [{"status": 204, "row": None}]
    assert_problem(fetch(client, "notification-log", created["row"]["id"]), 404, "not-found")


def test_batch_of_1000_operations_is_accepted(client):
    user = factories.user(client)
    operations = [create("tasks", {"user_id": user["id"], "title": f"t{n}"}) for n in range(1000)]
    found = results(client, operations)
    assert [r["row"]["title"] for r in found] == [f"t{n}" for n in range(1000)]
    assert client.get(f"{API}/tasks", params={"limit": 1}).json()["total"] == 1000


def test_batch_with_idempotency_key_replays_and_writes_once(client):
    user = factories.user(client)
    operations = [create("goals", {"user_id": user["id"], "title": "once"}, ref="g")]
    operations += [create("tasks", {"user_id": user["id"], "goal_id": "$g.id", "title": "once"})]
    headers = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    first = run(client, operations, headers=headers)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = run(client, operations, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert client.get(f"{API}/goals").json()["total"] == 1
    assert client.get(f"{API}/tasks").json()["total"] == 1


# --- a failing operation: nothing applied ---------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Rows stored before the batch runs."""

    user: Row  # its email is taken
    task: Row  # updated by an operation before the failing one
    spare_goal: Row  # deleted by an operation before the failing one (its task's goal_id goes null with it)
    stale_user: Row  # at version 2
    noticed_task: Row  # a notification references it (RESTRICT)


def world(client: Any) -> World:
    user = factories.user(client, profile={"name": "Ada"})
    spare_goal = factories.goal(client, user["id"], title="spare")
    task = factories.task(client, user["id"], goal_id=spare_goal["id"])
    stale_user = factories.user(client)
    response = client.patch(f"{API}/users/{stale_user['id']}", json={"onboarded": True})
    assert response.status_code == 200, response.text
    noticed_task = factories.task(client, user["id"], title="noticed")
    factories.notification(client, noticed_task["id"])
    return World(user, task, spare_goal, response.json(), noticed_task)


# name -> (the 7th operation, status, problem type, the field an error names or None, extra problem members)
FAILURES: dict[str, tuple[Any, int, str, str | None, Row]] = {
    "duplicate email": (lambda w: create("users", {"email": w.user["email"]}), 409, "duplicate", None, {}),
    "duplicate of a row made earlier in the batch": (
        lambda w: create("users", {"email": "first-in-batch@example.com"}),
        409,
        "duplicate",
        None,
        {},
    ),
    "missing reference": (
        lambda w: create("tasks", {"user_id": UNKNOWN_ID, "title": "orphan"}),
        409,
        "missing-reference",
        None,
        {},
    ),
    "empty title": (
        lambda w: create("tasks", {"user_id": w.user["id"], "title": ""}),
        422,
        "validation-error",
        "operations[6].body.title",
        {},
    ),
    "unknown field": (
        lambda w: update("tasks", w.task["id"], {"priority": 3}),
        422,
        "validation-error",
        "operations[6].body.priority",
        {},
    ),
    "immutable field": (
        lambda w: update("tasks", w.task["id"], {"user_id": w.stale_user["id"]}),
        422,
        "validation-error",
        "operations[6].body.user_id",
        {},
    ),
    "stale if_match": (
        lambda w: update("users", w.stale_user["id"], {"onboarded": False}, if_match='"1"'),
        412,
        "precondition-failed",
        None,
        {"version": 2},
    ),
    "malformed if_match": (
        lambda w: delete("users", w.stale_user["id"], if_match="2"),
        422,
        "validation-error",
        "operations[6].if_match",
        {},
    ),
    "id not a uuid": (
        lambda w: update("tasks", "not-a-uuid", {"title": "x"}),
        422,
        "validation-error",
        "operations[6].id",
        {},
    ),
    "unknown id": (lambda w: update("tasks", UNKNOWN_ID, {"title": "x"}), 404, "not-found", None, {}),
    "restricted delete": (lambda w: delete("tasks", w.noticed_task["id"]), 409, "restricted-delete", None, {}),
}


@pytest.mark.parametrize("cause", sorted(FAILURES))
def test_batch_whose_seventh_of_ten_operations_fails_changes_nothing(client, cause):
    make, status, slug, field, members = FAILURES[cause]
    w = world(client)
    operations = [
        create("users", {"email": "first-in-batch@example.com"}, ref="u"),
        create("goals", {"user_id": "$u.id", "title": "batch goal"}, ref="g"),
        create("tasks", {"user_id": "$u.id", "goal_id": "$g.id", "title": "batch task"}, ref="t"),
        update("tasks", w.task["id"], {"status": "done", "title": "changed"}),
        delete("goals", w.spare_goal["id"]),
        update("tasks", "$t.id", {"description": "changed too"}),
        make(w),
        create("patterns", {"user_id": "$u.id", "confidence": 0.9}),
        create("notification-log", {"task_id": "$t.id", "channel": "call"}),
        update("users", w.user["id"], {"onboarded": True, "profile": None}),
    ]
    before = dump(client)
    response = run(client, operations)
    problem = assert_problem(response, status, slug)
    assert problem["operation"] == 6, problem
    if field is not None:
        assert field in error_fields(problem), problem
    for name, value in members.items():
        assert problem[name] == value, problem
    assert dump(client) == before
    # and the same nine operations without the failing one do apply
    assert [r["status"] for r in results(client, operations[:6] + operations[7:])] == [
        201,
        201,
        201,
        200,
        204,
        200,
        201,
        201,
        200,
    ]
    assert dump(client) != before


def test_failing_batch_with_idempotency_key_replays_its_refusal(client):
    user = factories.user(client)
    operations = [create("goals", {"user_id": user["id"], "title": "g"}), create("tasks", {"user_id": UNKNOWN_ID})]
    headers = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    before = dump(client)
    first = run(client, operations, headers=headers)
    problem = assert_problem(first, 422, "validation-error")
    assert problem["operation"] == 1
    again = run(client, operations, headers=headers)
    assert again.status_code == 422
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == problem
    assert dump(client) == before


# --- refused before anything runs -----------------------------------------------------------------------------------

# name -> (operations 3 and 4, the field the error names); operations 0-2 are valid creates that define ref u
PRECHECKS: dict[str, tuple[list[Op], str]] = {
    "unknown resource": ([create("chores", {"title": "x"})], "operations[3].resource"),
    "conversations have no delete": ([delete("conversations", UNKNOWN_ID)], "operations[3].op"),
    "update without id": ([{"op": "update", "resource": "tasks", "body": {"title": "x"}}], "operations[3].id"),
    "delete without id": ([{"op": "delete", "resource": "tasks"}], "operations[3].id"),
    "create with id": ([{**create("tasks", {"title": "x"}), "id": UNKNOWN_ID}], "operations[3].id"),
    "delete with body": ([{**delete("tasks", UNKNOWN_ID), "body": {}}], "operations[3].body"),
    "update without body": ([{"op": "update", "resource": "tasks", "id": UNKNOWN_ID}], "operations[3].body"),
    "create without body": ([{"op": "create", "resource": "tasks"}], "operations[3].body"),
    "if_match on create": (
        [{**create("users", {"email": "x@example.com"}), "if_match": '"1"'}],
        "operations[3].if_match",
    ),
    "undefined ref": ([create("tasks", {"user_id": "$nobody.id", "title": "x"})], "operations[3].body.user_id"),
    "ref used before it is defined": (
        [create("tasks", {"user_id": "$later.id", "title": "x"}), create("users", {"email": email()}, ref="later")],
        "operations[3].body.user_id",
    ),
    "ref to a field its row lacks": (
        [create("tasks", {"user_id": "$u.nope", "title": "x"})],
        "operations[3].body.user_id",
    ),
    "ref in the id": ([update("tasks", "$ghost.id", {"title": "x"})], "operations[3].id"),
    "ref nested in json": (
        [create("patterns", {"user_id": "$u.id", "data": {"a": ["$ghost.id"]}})],
        "operations[3].body.data.a[0]",
    ),
    "ref named twice": ([create("users", {"email": email()}, ref="u")], "operations[3].ref"),
    "ref not a name": ([create("users", {"email": email()}, ref="9 lives")], "operations[3].ref"),
}


@pytest.mark.parametrize("case", sorted(PRECHECKS))
def test_operation_that_cannot_run_refuses_the_batch_before_anything_runs(client, case):
    tail, field = PRECHECKS[case]
    operations = [
        create("users", {"email": email()}, ref="u"),
        create("goals", {"user_id": "$u.id", "title": "g"}),
        create("tasks", {"user_id": "$u.id", "title": "t"}),
        *tail,
    ]
    before = dump(client)
    problem = assert_problem(run(client, operations), 422, "validation-error")
    assert problem["operation"] == 3, problem
    assert error_fields(problem) == [field], problem
    assert dump(client) == before


def test_a_deleted_row_cannot_be_referred_to(client):
    task = factories.task(client, factories.user(client)["id"])
    operations = [
        delete("tasks", task["id"], ref="d"),
        create("notification-log", {"task_id": "$d.id", "channel": "push"}),
    ]
    problem = assert_problem(run(client, operations), 422, "validation-error")
    assert problem["operation"] == 1
    assert error_fields(problem) == ["operations[1].body.task_id"]
    assert fetch(client, "tasks", task["id"]).status_code == 200


@pytest.mark.parametrize(
    ("operation", "field"),
    [
        ({"op": "upsert", "resource": "users", "body": {}}, "operations[2].op"),
        ({"op": "create", "resource": "users", "body": {}, "extra": 1}, "operations[2].extra"),
        ({"op": "create", "body": {}}, "operations[2].resource"),
        ({"op": "create", "resource": "users", "body": ["not", "an", "object"]}, "operations[2].body"),
        ("create users", "operations[2]"),
    ],
)
def test_malformed_operation_is_422_naming_it(client, operation, field):
    user = factories.user(client)
    operations = [create("tasks", {"user_id": user["id"], "title": "t"})] * 2 + [operation]
    problem = assert_problem(run(client, operations), 422, "validation-error")
    assert field in error_fields(problem), problem
    assert client.get(f"{API}/tasks").json()["total"] == 0


@pytest.mark.parametrize("body", [{"operations": []}, {}, {"operations": None}, [], {"operations": [], "atomic": True}])
def test_batch_without_operations_is_422(client, body):
    problem = assert_problem(client.post(BATCH, json=body), 422, "validation-error")
    assert error_fields(problem), problem


def test_more_than_1000_operations_is_422_and_nothing_runs(client):
    user = factories.user(client)
    operations = [create("tasks", {"user_id": user["id"], "title": f"t{n}"}) for n in range(1001)]
    problem = assert_problem(run(client, operations), 422, "validation-error")
    assert error_fields(problem) == ["operations"]
    assert "1000" in problem["errors"][0]["message"]
    assert client.get(f"{API}/tasks").json()["total"] == 0


# --- scopes, per operation ------------------------------------------------------------------------------------------

TASKER_KEY = "batch-tasker-secret-0001"
WRITER_KEY = "batch-writer-secret-0002"
READER_KEY = "batch-reader-secret-0003"
KEYS_FILE = f"""
tasker:
  key_sha256: {hashlib.sha256(TASKER_KEY.encode()).hexdigest()}
  scopes: [tasks:read, tasks:write]
writer:
  key: {WRITER_KEY}
  scopes: ["*:write"]
reader:
  key: {READER_KEY}
  scopes: ["*:read"]
"""


@pytest.fixture(scope="module")
def scoped(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The backend's database served with KEYS_FILE's scoped keys (the ``client`` fixture empties it after a test)."""
    path = tmp_path_factory.mktemp("batch_keys") / "keys.yaml"
    path.write_text(KEYS_FILE)
    with TestClient(create_app(replace(settings, keys_file=path)), raise_server_exceptions=False) as app:
        yield app


def as_key(key: str) -> dict[str, str]:
    return {KEY_HEADER: key}


def test_operation_outside_the_keys_scopes_refuses_the_whole_batch(client, scoped):
    user = factories.user(client)
    operations = [
        create("tasks", {"user_id": user["id"], "title": "allowed"}),
        create("users", {"email": email()}),
        create("tasks", {"user_id": user["id"], "title": "allowed too"}),
    ]
    before = dump(client)
    problem = assert_problem(run(scoped, operations, headers=as_key(TASKER_KEY)), 403, "forbidden")
    assert (problem["operation"], problem["scope"]) == (1, "users:write")
    assert "users:write" in problem["detail"]
    assert dump(client) == before


@pytest.mark.parametrize(
    ("operation", "scope"),
    [
        (delete("goals", UNKNOWN_ID), "goals:write"),
        (update("patterns", UNKNOWN_ID, {"confidence": 0.1}), "patterns:write"),
        (create("notification-log", {"task_id": UNKNOWN_ID, "channel": "push"}), "notification_log:write"),
    ],
)
def test_every_kind_of_operation_needs_the_write_scope_of_its_resource(client, scoped, operation, scope):
    task = factories.task(client, factories.user(client)["id"])
    operations = [update("tasks", task["id"], {"title": "renamed"}), operation]
    problem = assert_problem(run(scoped, operations, headers=as_key(TASKER_KEY)), 403, "forbidden")
    assert (problem["operation"], problem["scope"]) == (1, scope)
    assert fetch(client, "tasks", task["id"]).json() == task


def test_scopes_are_checked_before_bodies_are_validated(client, scoped):
    operations = [create("tasks", {"title": ""}), create("users", {"email": 5})]
    problem = assert_problem(run(scoped, operations, headers=as_key(TASKER_KEY)), 403, "forbidden")
    assert (problem["operation"], problem["scope"]) == (1, "users:write")


def test_read_only_key_may_not_batch(client, scoped):
    user = factories.user(client)
    problem = assert_problem(
        run(scoped, [create("tasks", {"user_id": user["id"], "title": "t"})], headers=as_key(READER_KEY)),
        403,
        "forbidden",
    )
    assert (problem["operation"], problem["scope"]) == (0, "tasks:write")
    assert client.get(f"{API}/tasks").json()["total"] == 0


def test_key_with_the_scopes_of_every_operation_runs_the_batch(client, scoped):
    tasks_only = results_as(
        scoped, TASKER_KEY, [create("tasks", {"user_id": factories.user(client)["id"], "title": "t"})]
    )
    assert tasks_only[0]["status"] == 201
    operations = [
        create("users", {"email": email()}, ref="u"),
        create("goals", {"user_id": "$u.id", "title": "g"}, ref="g"),
        create("tasks", {"user_id": "$u.id", "goal_id": "$g.id", "title": "t"}, ref="t"),
        update("tasks", "$t.id", {"status": "done"}),
        delete("goals", "$g.id"),
    ]
    found = results_as(scoped, WRITER_KEY, operations)
    assert [r["status"] for r in found] == [201, 201, 201, 200, 204]
    stored = fetch(client, "tasks", found[2]["row"]["id"]).json()
    assert (stored["status"], stored["goal_id"]) == ("done", None)


def results_as(app: Any, key: str, operations: list[Op]) -> list[Row]:
    response = run(app, operations, headers=as_key(key))
    assert response.status_code == 200, response.text
    return response.json()["results"]  # type: ignore[no-any-return]


# --- concurrency: required ------------------------------------------------------------------------------------------


def concurrency_required(folder: Path, entity: str) -> Path:
    """A copy of the project's manifest where ``entity`` is changed only with If-Match (no schema change)."""
    text = MANIFEST.read_text(encoding="utf-8")
    anchor = f"\n  {entity}:\n    description:"
    assert text.count(anchor) == 1
    manifest = folder / "resources.yaml"
    manifest.write_text(text.replace(anchor, f"\n  {entity}:\n    concurrency: required\n    description:"))
    return manifest


@pytest.fixture(scope="module")
def guarded(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The backend's database served with a manifest where tasks require If-Match."""
    manifest = concurrency_required(tmp_path_factory.mktemp("guarded"), "tasks")
    with TestClient(create_app(replace(settings, manifest_path=manifest)), raise_server_exceptions=False) as app:
        app.headers[KEY_HEADER] = API_KEY
        yield app


@pytest.mark.parametrize("kind", ["update", "delete"])
def test_batch_change_without_if_match_where_required_is_428_before_anything_runs(client, guarded, kind):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    change = update("tasks", task["id"], {"title": "x"}) if kind == "update" else delete("tasks", task["id"])
    operations = [create("goals", {"user_id": user["id"], "title": "g"}), change]
    before = dump(client)
    problem = assert_problem(run(guarded, operations), 428, "precondition-required")
    assert problem["operation"] == 1
    assert dump(client) == before
    with_tag = results(guarded, [operations[0], {**change, "if_match": '"1"'}])
    assert [r["status"] for r in with_tag] == [201, 200 if kind == "update" else 204]


# --- OpenAPI --------------------------------------------------------------------------------------------------------


def test_openapi_documents_the_batch_route(client):
    doc = client.get("/schema/openapi.json").json()
    operation = doc["paths"][f"{API}/batch"]["post"]
    assert operation["operationId"] == "batch"
    schemas = doc["components"]["schemas"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request == {"$ref": "#/components/schemas/BatchRequest"}
    operations = schemas["BatchRequest"]["properties"]["operations"]
    assert (operations["minItems"], operations["maxItems"]) == (1, 1000)
    item = schemas["BatchOperation"]
    assert set(item["properties"]) == {"op", "resource", "id", "body", "ref", "if_match"}
    assert item["properties"]["op"]["enum"] == ["create", "update", "delete"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/BatchResponse"}
    assert "Idempotency-Key" in {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert {"403", "404", "409", "412", "422", "428"} <= set(operation["responses"])
    problem = schemas["Problem"]["properties"]
    assert {"operation", "version", "scope"} <= set(problem)


# --- consecutive creates of one resource go in together, and a failure still names its operation -------------------


@pytest.mark.parametrize(
    ("bad_task", "status", "kind", "field"),
    [
        ({"title": ""}, 422, "validation-error", "operations[6].body.title"),
        ({"user_id": UNKNOWN_ID, "title": "orphan"}, 409, "missing-reference", "operations[6].body.user_id"),
    ],
    ids=["invalid body", "missing parent"],
)
def test_a_failing_create_among_ten_consecutive_ones_is_named_by_its_own_index(client, bad_task, status, kind, field):
    user = factories.user(client)
    before = client.get(f"{API}/tasks", params={"user_id": user["id"]}).json()["total"]
    operations = [create("tasks", {"user_id": user["id"], "title": f"task {n}"}) for n in range(10)]
    operations[6] = create("tasks", {"user_id": user["id"], **bad_task})
    response = client.post(f"{API}/batch", json={"operations": operations})
    problem = assert_problem(response, status, kind)
    assert problem["operation"] == 6
    assert error_fields(problem) == [field]
    assert client.get(f"{API}/tasks", params={"user_id": user["id"]}).json()["total"] == before


def test_consecutive_creates_keep_their_order_and_refs(client):
    user = factories.user(client)
    operations = [create("goals", {"user_id": user["id"], "title": f"goal {n}"}, ref=f"g{n}") for n in range(3)]
    operations += [create("tasks", {"user_id": user["id"], "goal_id": f"$g{n}.id", "title": f"t{n}"}) for n in range(3)]
    results = client.post(f"{API}/batch", json={"operations": operations}).json()["results"]
    goals, tasks = [r["row"] for r in results[:3]], [r["row"] for r in results[3:]]
    assert [g["title"] for g in goals] == ["goal 0", "goal 1", "goal 2"]
    assert [t["goal_id"] for t in tasks] == [g["id"] for g in goals]
    assert {r["status"] for r in results} == {201}
