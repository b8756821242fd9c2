"""``POST /{res}/bulk`` (up to 1000 rows, all or none) and upsert (``POST /{res}?on_conflict=<unique field>``).

Both backends. "Nothing stored" is checked through the list route's total.
"""

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient

from flux_dao.config import Settings
from flux_dao.http.app import create_app
from flux_dao.store.migrations import upgrade
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, MANIFEST, make_settings
from tests.factories import API
from tests.problems import assert_problem

UNKNOWN_ID = "01900000-0000-7000-8000-0000000000ff"
Row = dict[str, Any]


def total(client: Any, path: str, **params: Any) -> int:
    response = client.get(f"{API}/{path}", params={"limit": 1, **params})
    assert response.status_code == 200, response.text
    return response.json()["total"]  # type: ignore[no-any-return]


def error_fields(problem: Row) -> list[str]:
    return [error["field"] for error in problem.get("errors") or []]


def email() -> str:
    return f"upsert-{uuid.uuid4().hex[:12]}@example.com"


def thousand_tasks(user_id: str) -> list[Row]:
    return [{"user_id": user_id, "title": f"task {n:04}", "duration_minutes": n + 1} for n in range(1000)]


# --- bulk create -----------------------------------------------------------------------------------------------------


def test_bulk_create_of_1000_tasks_stores_them_in_the_order_sent(client):
    user = factories.user(client)
    sent = thousand_tasks(user["id"])
    response = client.post(f"{API}/tasks/bulk", json=sent)
    assert response.status_code == 201, response.text
    rows = response.json()
    assert [(row["title"], row["duration_minutes"]) for row in rows] == [
        (b["title"], b["duration_minutes"]) for b in sent
    ]
    assert {row["user_id"] for row in rows} == {user["id"]}
    assert {row["version"] for row in rows} == {1}
    assert {row["status"] for row in rows} == {"pending"}  # defaults applied
    ids = [uuid.UUID(row["id"]) for row in rows]
    assert len(set(ids)) == 1000
    listed: set[uuid.UUID] = set()
    for skip in (0, 500):
        page = client.get(f"{API}/tasks", params={"limit": 500, "skip": skip}).json()
        listed |= {uuid.UUID(row["id"]) for row in page["items"]}
    assert listed == set(ids)
    assert total(client, "tasks") == 1000
    for index in (0, 537, 999):
        stored = client.get(f"{API}/tasks/{rows[index]['id']}")
        assert stored.json() == rows[index]
        assert stored.headers["etag"] == '"1"'


@pytest.mark.sqlite
def test_bulk_create_of_1000_tasks_on_a_fresh_sqlite_connection_is_fast(tmp_path):
    """A thousand-row VALUES list with named parameters took SQLite seconds to prepare (quadratic in the parameters),
    on the event loop and past the statement timeout; the rows now go through the one-row INSERT, prepared once."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
    settings = replace(settings, database=replace(settings.database, statement_timeout=1.0))
    upgrade(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as app:
        app.headers[KEY_HEADER] = API_KEY
        user = app.post(f"{API}/users", json={"email": email()}).json()
        response = app.post(f"{API}/tasks/bulk", json=thousand_tasks(user["id"]))
        assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["users", "goals", "conversations", "patterns", "notification-log"])
def test_every_resource_with_create_has_a_bulk_route(client, path):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    bodies: dict[str, Callable[[int], Row]] = {
        "users": lambda n: {"email": email()},
        "goals": lambda n: {"user_id": user["id"], "title": f"goal {n}"},
        "conversations": lambda n: {
            "user_id": user["id"],
            "langgraph_thread_id": uuid.uuid4().hex,
            "context_type": "goal",
        },
        "patterns": lambda n: {"user_id": user["id"], "confidence": n / 10},
        "notification-log": lambda n: {"task_id": task["id"], "channel": "push", "response": f"r{n}"},
    }
    before = total(client, path)
    sent = [bodies[path](n) for n in range(3)]
    response = client.post(f"{API}/{path}/bulk", json=sent)
    assert response.status_code == 201, response.text
    rows = response.json()
    assert len(rows) == 3
    for body, row in zip(sent, rows, strict=True):
        assert {name: row[name] for name in body} == body
        assert client.get(f"{API}/{path}/{row['id']}").json() == row
    assert total(client, path) == before + 3


def test_one_bad_row_among_1000_is_422_naming_its_index_and_nothing_is_stored(client):
    sent = thousand_tasks(factories.user(client)["id"])
    sent[537]["title"] = ""
    problem = assert_problem(client.post(f"{API}/tasks/bulk", json=sent), 422, "validation-error")
    assert error_fields(problem) == ["[537].title"]
    assert "[537].title" in problem["detail"]
    assert total(client, "tasks") == 0


def test_every_bad_row_is_named(client):
    sent = thousand_tasks(factories.user(client)["id"])
    del sent[3]["title"]
    sent[10]["duration_minutes"] = 0
    sent[500]["status"] = "someday"
    sent[998]["scheduled_at"] = "tomorrow"
    sent[999]["priority"] = 1
    problem = assert_problem(client.post(f"{API}/tasks/bulk", json=sent), 422, "validation-error")
    assert set(error_fields(problem)) == {
        "[3].title",
        "[10].duration_minutes",
        "[500].status",
        "[998].scheduled_at",
        "[999].priority",
    }
    assert total(client, "tasks") == 0


def test_more_than_1000_rows_is_422_and_nothing_is_stored(client):
    sent = thousand_tasks(factories.user(client)["id"])
    sent.append(dict(sent[0]))
    problem = assert_problem(client.post(f"{API}/tasks/bulk", json=sent), 422, "validation-error")
    assert "1000" in problem["detail"]
    assert total(client, "tasks") == 0


@pytest.mark.parametrize(
    "body",
    [[], {}, {"title": "not in an array"}, None, "tasks", [1, "two"]],
    ids=["empty array", "empty object", "object", "null", "string", "not objects"],
)
def test_bulk_body_that_is_not_an_array_of_objects_is_422(client, body):
    problem = assert_problem(client.post(f"{API}/tasks/bulk", json=body), 422, "validation-error")
    assert error_fields(problem), problem
    assert total(client, "tasks") == 0


def test_bulk_without_a_body_is_422(client):
    problem = assert_problem(client.post(f"{API}/tasks/bulk", content=b""), 422, "validation-error")
    assert error_fields(problem) == ["body"]


@pytest.mark.parametrize("index", [0, 10, 19])
def test_row_the_database_refuses_is_409_and_nothing_is_stored(client, index):
    sent = thousand_tasks(factories.user(client)["id"])[:20]
    sent[index]["user_id"] = UNKNOWN_ID
    response = client.post(f"{API}/tasks/bulk", json=sent)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert total(client, "tasks") == 0


@pytest.mark.parametrize("index", [0, 10, 19])
def test_missing_reference_in_a_bulk_create_is_named_by_its_row(client, index):
    sent = thousand_tasks(factories.user(client)["id"])[:20]
    sent[index]["user_id"] = UNKNOWN_ID
    problem = assert_problem(client.post(f"{API}/tasks/bulk", json=sent), 409, "missing-reference")
    assert error_fields(problem) == [f"[{index}].user_id"]
    assert UNKNOWN_ID in problem["detail"]
    assert total(client, "tasks") == 0


@pytest.mark.parametrize("existing", [False, True], ids=["twice in the request", "already stored"])
def test_duplicate_unique_value_in_a_bulk_create_is_409_and_nothing_is_stored(client, existing):
    taken = factories.user(client)["email"] if existing else email()
    sent = [{"email": email()}, {"email": taken}, {"email": email()}]
    if not existing:
        sent.append({"email": taken})
    before = total(client, "users")
    problem = assert_problem(client.post(f"{API}/users/bulk", json=sent), 409, "duplicate")
    assert error_fields(problem) == ["[3].email" if not existing else "[1].email"], problem
    assert taken in problem["detail"]
    assert total(client, "users") == before


def test_bulk_create_with_idempotency_key_replays_and_stores_once(client):
    user = factories.user(client)
    sent = [{"user_id": user["id"], "title": f"t{n}"} for n in range(5)]
    headers = {"Idempotency-Key": f"bulk-{uuid.uuid4()}"}
    first = client.post(f"{API}/tasks/bulk", json=sent, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post(f"{API}/tasks/bulk", json=sent, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert total(client, "tasks") == 5


# --- upsert ----------------------------------------------------------------------------------------------------------


def upsert(client: Any, path: str, field: str, body: Row, **kwargs: Any) -> Any:
    return client.post(f"{API}/{path}", params={"on_conflict": field}, json=body, **kwargs)


def test_upsert_of_a_new_user_inserts_it(client):
    response = upsert(client, "users", "email", {"email": (address := email()), "profile": {"name": "Ada"}})
    assert response.status_code == 201, response.text
    row = response.json()
    assert (row["email"], row["profile"], row["onboarded"], row["version"]) == (address, {"name": "Ada"}, False, 1)
    assert response.headers["etag"] == '"1"'
    assert urlsplit(response.headers["location"]).path == f"{API}/users/{row['id']}"
    stored = client.get(response.headers["location"])
    assert stored.json() == row
    assert stored.headers["etag"] == '"1"'


def test_upsert_of_an_existing_user_updates_only_the_fields_sent(client):
    existing = factories.user(
        client, profile={"name": "Ada"}, notification_preferences={"channels": ["push"]}, onboarded=False
    )
    response = upsert(client, "users", "email", {"email": existing["email"], "onboarded": True})
    assert response.status_code == 200, response.text
    row = response.json()
    assert row["id"] == existing["id"]
    assert row["onboarded"] is True
    assert row["version"] == 2
    unchanged = {"email", "profile", "notification_preferences", "created_at"}
    assert {name: row[name] for name in unchanged} == {name: existing[name] for name in unchanged}
    assert row["updated_at"] >= existing["updated_at"]
    assert response.headers["etag"] == '"2"'
    assert urlsplit(response.headers["location"]).path == f"{API}/users/{existing['id']}"
    stored = client.get(f"{API}/users/{existing['id']}")
    assert stored.json() == row
    assert stored.headers["etag"] == '"2"'
    assert total(client, "users") == 1


def test_upsert_does_not_reset_fields_left_out_to_their_defaults(client):
    existing = factories.user(client, onboarded=True, profile={"a": 1})
    response = upsert(client, "users", "email", {"email": existing["email"]})
    assert response.status_code == 200, response.text
    row = response.json()
    assert (row["onboarded"], row["profile"], row["version"]) == (True, {"a": 1}, 2)


def test_upsert_sending_null_clears_the_field(client):
    existing = factories.user(client, profile={"a": 1})
    row = upsert(client, "users", "email", {"email": existing["email"], "profile": None}).json()
    assert (row["profile"], row["version"]) == (None, 2)


def test_repeated_upserts_count_versions(client):
    address = email()
    statuses = []
    for n in range(4):
        response = upsert(client, "users", "email", {"email": address, "profile": {"n": n}})
        statuses.append((response.status_code, response.json()["version"], response.headers["etag"]))
    assert statuses == [(201, 1, '"1"'), (200, 2, '"2"'), (200, 3, '"3"'), (200, 4, '"4"')]
    assert total(client, "users") == 1


@pytest.mark.parametrize("field", ["onboarded", "profile", "id", "nope", ""])
def test_upsert_on_a_field_that_is_not_unique_is_422_naming_on_conflict(client, field):
    problem = assert_problem(upsert(client, "users", field, {"email": email()}), 422, "validation-error")
    assert "on_conflict" in error_fields(problem), problem
    assert total(client, "users") == 0


@pytest.mark.parametrize(("path", "field"), [("tasks", "title"), ("goals", "user_id"), ("patterns", "pattern_type")])
def test_resource_without_unique_fields_offers_no_upsert(client, path, field):
    user = factories.user(client)
    problem = assert_problem(
        upsert(client, path, field, {"user_id": user["id"], "title": "x"}), 422, "validation-error"
    )
    assert "on_conflict" in error_fields(problem), problem
    assert total(client, path) == 0


def test_upsert_body_is_validated_as_a_create(client):
    problem = assert_problem(upsert(client, "users", "email", {"email": "", "extra": 1}), 422, "validation-error")
    assert {"email", "extra"} <= set(error_fields(problem)), problem


def test_upsert_changing_a_field_fixed_at_creation_is_409_and_changes_nothing(client):
    owner, other = factories.user(client), factories.user(client)
    conversation = factories.conversation(client, owner["id"], context_type="goal")
    body = {"user_id": other["id"], "langgraph_thread_id": conversation["langgraph_thread_id"], "context_type": "task"}
    problem = assert_problem(upsert(client, "conversations", "langgraph_thread_id", body), 409, "conflict")
    assert "user_id" in problem["detail"]
    stored = client.get(f"{API}/conversations/{conversation['id']}")
    assert stored.json() == conversation
    assert stored.headers["etag"] == '"1"'
    assert total(client, "conversations") == 1


def test_upsert_with_the_same_fixed_fields_updates_the_others(client):
    owner = factories.user(client)
    conversation = factories.conversation(client, owner["id"], context_type="goal")
    body = {
        "user_id": owner["id"],
        "langgraph_thread_id": conversation["langgraph_thread_id"],
        "context_type": "reschedule",
        "last_message_at": "2030-01-01T10:00:00Z",
    }
    response = upsert(client, "conversations", "langgraph_thread_id", body)
    assert response.status_code == 200, response.text
    row = response.json()
    assert (row["id"], row["user_id"], row["context_type"], row["version"]) == (
        conversation["id"],
        owner["id"],
        "reschedule",
        2,
    )
    assert row["last_message_at"] == "2030-01-01T10:00:00Z"


@pytest.mark.parametrize("exists", [False, True], ids=["insert", "update"])
def test_upsert_with_idempotency_key_replays_without_writing_again(client, exists):
    address = factories.user(client)["email"] if exists else email()
    headers = {"Idempotency-Key": f"upsert-{uuid.uuid4()}"}
    body = {"email": address, "onboarded": True}
    first = upsert(client, "users", "email", body, headers=headers)
    assert first.status_code == (200 if exists else 201), first.text
    again = upsert(client, "users", "email", body, headers=headers)
    assert again.status_code == first.status_code
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    for header in ("location", "etag"):
        assert again.headers[header] == first.headers[header]
    stored = client.get(f"{API}/users/{first.json()['id']}")
    assert stored.json()["version"] == (2 if exists else 1)
    assert total(client, "users") == 1
    # the same key on the plain create (no on_conflict) is another request
    reused = client.post(f"{API}/users", json=body, headers=headers)
    assert_problem(reused, 422, "idempotency-key-reused")


# --- OpenAPI --------------------------------------------------------------------------------------------------------


@pytest.fixture
def doc(client: Any) -> Row:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def header_names(operation: Row) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}


def operations_of(doc: Row) -> Iterator[tuple[str, str, Row]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "patch", "delete", "put"}:
                yield path, method, operation


def test_openapi_documents_bulk_create(doc):
    operation = doc["paths"][f"{API}/tasks/bulk"]["post"]
    assert operation["operationId"] == "create_task_bulk"
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert (request["type"], request["items"]) == ("array", {"$ref": "#/components/schemas/TaskCreate"})
    created = operation["responses"]["201"]["content"]["application/json"]["schema"]
    assert (created["type"], created["items"]) == ("array", {"$ref": "#/components/schemas/Task"})
    assert {"409", "422"} <= set(operation["responses"])
    assert "Idempotency-Key" in header_names(operation)
    for path in ("users", "goals", "conversations", "patterns", "notification-log"):
        assert "post" in doc["paths"][f"{API}/{path}/bulk"], path


@pytest.mark.parametrize(("path", "fields"), [("users", ["email"]), ("conversations", ["langgraph_thread_id"])])
def test_openapi_offers_on_conflict_with_the_unique_fields(doc, path, fields):
    operation = doc["paths"][f"{API}/{path}"]["post"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "on_conflict"]
    assert parameter["in"] == "query"
    assert parameter.get("required", False) is False
    assert [value for value in parameter["schema"]["enum"] if value is not None] == fields


@pytest.mark.parametrize("path", ["tasks", "goals", "patterns", "notification-log"])
def test_openapi_offers_no_on_conflict_without_unique_fields(doc, path):
    operation = doc["paths"][f"{API}/{path}"]["post"]
    assert "on_conflict" not in {p["name"] for p in operation.get("parameters", [])}


def test_openapi_documents_the_200_of_an_upsert_that_updates(doc):
    responses = doc["paths"][f"{API}/users"]["post"]["responses"]
    assert "200" in responses
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/User"}


def test_openapi_documents_the_precondition_and_idempotency_headers(doc):
    seen = set()
    for path, method, operation in operations_of(doc):
        if not path.startswith(API):
            continue
        headers, responses = header_names(operation), set(operation["responses"])
        one_row = path.endswith("_id}")
        if method == "get" and one_row:
            assert "If-None-Match" in headers, path
            assert "ETag" in operation["responses"]["200"].get("headers", {}), path
        if method in {"patch", "delete"}:
            assert {"If-Match", "Idempotency-Key"} <= headers, (method, path)
            assert "412" in responses, (method, path)
            assert "428" not in responses, (method, path)  # no resource of the project's manifest requires If-Match
        if method == "patch":
            assert "ETag" in operation["responses"]["200"].get("headers", {}), path
        if method == "post" and not path.endswith(("/by-timerange", "/statistics", "/bulk-update-state")):
            assert "Idempotency-Key" in headers, path
            assert "If-Match" not in headers, path
            assert "412" not in responses or path == f"{API}/batch", path
        if method == "post" and path.rstrip("/") in {f"{API}/{p}" for p in ("users", "tasks", "notification-log")}:
            assert "ETag" in operation["responses"]["201"].get("headers", {}), path
        seen.add((method, one_row))
    assert {("get", True), ("patch", True), ("delete", True), ("post", False)} <= seen


def test_openapi_documents_idempotent_replays(doc):
    for path, method in [("users", "post"), ("tasks/bulk", "post"), ("batch", "post"), ("users/{user_id}", "patch")]:
        operation = doc["paths"][f"{API}/{path}"][method]
        success = next(status for status in operation["responses"] if status.startswith("2"))
        assert "Idempotent-Replayed" in operation["responses"][success].get("headers", {}), path


@pytest.fixture(scope="module")
def users_guarded(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The backend's database served with a manifest where users require If-Match (no schema change)."""
    text = MANIFEST.read_text(encoding="utf-8")
    anchor = "\n  users:\n    description:"
    assert text.count(anchor) == 1
    manifest = tmp_path_factory.mktemp("users_guarded") / "resources.yaml"
    manifest.write_text(text.replace(anchor, "\n  users:\n    concurrency: required\n    description:"))
    with TestClient(create_app(replace(settings, manifest_path=manifest)), raise_server_exceptions=False) as app:
        app.headers[KEY_HEADER] = API_KEY
        yield app


def test_resource_requiring_if_match_documents_428_and_offers_no_upsert(client, users_guarded):
    doc = users_guarded.get("/schema/openapi.json").json()
    for method in ("patch", "delete"):
        assert "428" in doc["paths"][f"{API}/users/{{user_id}}"][method]["responses"], method
        assert "428" not in doc["paths"][f"{API}/tasks/{{task_id}}"][method]["responses"], method
    create = doc["paths"][f"{API}/users"]["post"]
    assert "on_conflict" not in {p["name"] for p in create.get("parameters", [])}
    problem = assert_problem(upsert(users_guarded, "users", "email", {"email": email()}), 422, "validation-error")
    assert "on_conflict" in error_fields(problem)
    assert total(client, "users") == 0
