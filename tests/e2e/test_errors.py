from typing import Any

import pytest

from tests import factories
from tests.factories import API
from tests.problems import assert_problem

MISSING_ID = "01900000-0000-7000-8000-0000000000aa"


def assert_validation_error(response: Any, field: str | None = None) -> dict[str, Any]:
    body = assert_problem(response, 422, "validation-error")
    assert isinstance(body["errors"], list)
    assert body["errors"]
    for error in body["errors"]:
        assert isinstance(error["field"], str)
        assert isinstance(error["message"], str)
        assert error["message"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def assert_conflict_naming(response: Any, slug: str, field: str) -> dict[str, Any]:
    body = assert_problem(response, 409, slug)
    named = [e["field"] for e in body.get("errors") or []]
    assert field in named or field in body["detail"], body
    return body


def total(client: Any, path: str) -> int:
    response = client.get(f"{API}/{path}")
    assert response.status_code == 200, response.text
    return response.json()["total"]  # type: ignore[no-any-return]


# --- malformed input -----------------------------------------------------------------------------------------------


def test_malformed_json_body_is_422_problem(client):
    response = client.post(f"{API}/users", content=b'{"email": ', headers={"content-type": "application/json"})
    assert_validation_error(response)
    assert total(client, "users") == 0


def test_malformed_json_on_patch_is_422_problem(client):
    user = factories.user(client)
    response = client.patch(
        f"{API}/users/{user['id']}", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_validation_error(response)
    assert client.get(f"{API}/users/{user['id']}").json() == user


def test_wrong_type_names_the_field(client):
    user = factories.user(client)
    response = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": 5})
    assert_validation_error(response, "title")
    assert total(client, "tasks") == 0


def test_wrong_type_on_patch_names_the_field(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    response = client.patch(f"{API}/tasks/{task['id']}", json={"duration_minutes": "ten"})
    assert_validation_error(response, "duration_minutes")
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("tasks", "duration_minutes", 0),
        ("tasks", "duration_minutes", -5),
        ("patterns", "confidence", 1.5),
        ("patterns", "confidence", -0.1),
        ("goals", "target_weeks", 0),
    ],
)
def test_out_of_range_value_is_422_naming_the_field(client, path, field, value):
    user = factories.user(client)
    body = {"user_id": user["id"], field: value}
    if path != "patterns":
        body["title"] = "Something"
    response = client.post(f"{API}/{path}", json=body)
    assert_validation_error(response, field)
    assert total(client, path) == 0


@pytest.mark.parametrize("confidence", [0.0, 1.0])
def test_confidence_bounds_are_inclusive(client, confidence):
    user = factories.user(client)
    created = factories.pattern(client, user["id"], confidence=confidence)
    assert created["confidence"] == confidence


def test_out_of_range_value_on_patch_is_422_and_row_unchanged(client):
    user = factories.user(client)
    pattern = factories.pattern(client, user["id"], confidence=0.5)
    response = client.patch(f"{API}/patterns/{pattern['id']}", json={"confidence": 1.01})
    assert_validation_error(response, "confidence")
    assert client.get(f"{API}/patterns/{pattern['id']}").json() == pattern


def test_title_of_501_chars_is_422(client):
    user = factories.user(client)
    response = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "x" * 501})
    assert_validation_error(response, "title")
    assert total(client, "tasks") == 0


def test_title_of_500_chars_is_accepted(client):
    user = factories.user(client)
    created = factories.task(client, user["id"], title="x" * 500)
    assert created["title"] == "x" * 500


def test_empty_title_is_422(client):
    user = factories.user(client)
    response = client.post(f"{API}/goals", json={"user_id": user["id"], "title": ""})
    assert_validation_error(response, "title")
    assert total(client, "goals") == 0


def test_empty_title_on_patch_is_422_and_row_unchanged(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    response = client.patch(f"{API}/goals/{goal['id']}", json={"title": ""})
    assert_validation_error(response, "title")
    assert client.get(f"{API}/goals/{goal['id']}").json() == goal


def test_email_of_256_chars_is_422(client):
    email = "a" * 244 + "@example.com"
    assert len(email) == 256
    response = client.post(f"{API}/users", json={"email": email})
    assert_validation_error(response, "email")
    assert total(client, "users") == 0


def test_email_of_255_chars_is_accepted(client):
    email = "a" * 243 + "@example.com"
    created = factories.user(client, email=email)
    assert created["email"] == email


@pytest.mark.parametrize(
    ("path", "field"),
    [("tasks", "status"), ("tasks", "trigger_type"), ("goals", "status"), ("conversations", "context_type")],
)
def test_bad_enum_value_is_422_naming_the_field(client, path, field):
    user = factories.user(client)
    body: dict[str, Any] = {"user_id": user["id"], field: "bogus"}
    if path == "conversations":
        body["langgraph_thread_id"] = "thread-enum"
        body.setdefault("context_type", "goal")
    else:
        body["title"] = "Something"
    response = client.post(f"{API}/{path}", json=body)
    assert_validation_error(response, field)
    assert total(client, path) == 0


def test_bad_channel_on_notification_is_422_naming_channel(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    response = client.post(f"{API}/notification-log", json={"task_id": task["id"], "channel": "pigeon"})
    assert_validation_error(response, "channel")
    assert total(client, "notification-log") == 0


def test_bad_enum_on_patch_is_422_and_row_unchanged(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    response = client.patch(f"{API}/tasks/{task['id']}", json={"status": "completed"})
    assert_validation_error(response, "status")
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


@pytest.mark.parametrize("field", ["user_id", "goal_id"])
def test_malformed_uuid_in_body_is_422_naming_the_field(client, field):
    user = factories.user(client)
    body = {"user_id": user["id"], "title": "Something", field: "not-a-uuid"}
    response = client.post(f"{API}/tasks", json=body)
    assert_validation_error(response, field)
    assert total(client, "tasks") == 0


def test_malformed_uuid_in_list_of_uuids_is_422(client):
    user = factories.user(client)
    body = {"user_id": user["id"], "title": "Something", "shared_with_goal_ids": ["nope"]}
    body_response = client.post(f"{API}/tasks", json=body)
    problem = assert_validation_error(body_response)
    assert any(e["field"].startswith("shared_with_goal_ids") for e in problem["errors"]), problem


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("users", "user_id"),
        ("goals", "goal_id"),
        ("tasks", "task_id"),
        ("conversations", "conversation_id"),
        ("patterns", "pattern_id"),
        ("notification-log", "notification_log_id"),
    ],
)
def test_malformed_uuid_in_path_is_422_naming_the_parameter(client, path, param):
    response = client.get(f"{API}/{path}/not-a-uuid")
    assert_validation_error(response, param)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_malformed_uuid_in_path_on_write_is_422(client, method):
    response = client.request(method, f"{API}/tasks/12345", json={} if method == "PATCH" else None)
    assert_validation_error(response, "task_id")


def test_unknown_field_on_create_is_422_naming_it(client):
    user = factories.user(client)
    response = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "Something", "priority": "high"})
    assert_validation_error(response, "priority")
    assert total(client, "tasks") == 0


def test_unknown_field_on_patch_is_422_naming_it(client):
    user = factories.user(client)
    response = client.patch(f"{API}/users/{user['id']}", json={"name": "Ada"})
    assert_validation_error(response, "name")
    assert client.get(f"{API}/users/{user['id']}").json() == user


# --- explicit null on non-nullable fields ----------------------------------------------------------------------------


def _create_body(client: Any, path: str) -> dict[str, Any]:
    user = factories.user(client)
    if path == "users":
        return {"email": "null-check@example.com"}
    if path == "conversations":
        return {"user_id": user["id"], "langgraph_thread_id": "thread-null", "context_type": "goal"}
    if path == "notification-log":
        task = factories.task(client, user["id"])
        return {"task_id": task["id"], "channel": "push"}
    if path == "patterns":
        return {"user_id": user["id"], "pattern_type": "procrastination"}
    return {"user_id": user["id"], "title": "Something"}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("tasks", "title"),
        ("tasks", "status"),
        ("tasks", "trigger_type"),
        ("tasks", "user_id"),
        ("users", "onboarded"),
        ("users", "email"),
        ("goals", "target_weeks"),
        ("goals", "status"),
        ("conversations", "context_type"),
        ("notification-log", "channel"),
    ],
)
def test_explicit_null_on_create_is_422_and_nothing_is_created(client, path, field):
    body = _create_body(client, path)
    before = total(client, path)
    response = client.post(f"{API}/{path}", json={**body, field: None})
    assert_validation_error(response, field)
    assert total(client, path) == before


def _existing_row(client: Any, path: str) -> dict[str, Any]:
    user = factories.user(client)
    if path == "users":
        return user
    if path == "tasks":
        return factories.task(client, user["id"])
    if path == "goals":
        return factories.goal(client, user["id"])
    if path == "conversations":
        return factories.conversation(client, user["id"])
    task = factories.task(client, user["id"])
    return factories.notification(client, task["id"])


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("tasks", "title"),
        ("tasks", "status"),
        ("tasks", "trigger_type"),
        ("users", "onboarded"),
        ("users", "email"),
        ("goals", "target_weeks"),
        ("goals", "title"),
        ("goals", "status"),
        ("conversations", "context_type"),
        ("notification-log", "channel"),
    ],
)
def test_explicit_null_on_patch_is_422_and_row_unchanged(client, path, field):
    row = _existing_row(client, path)
    response = client.patch(f"{API}/{path}/{row['id']}", json={field: None})
    assert_validation_error(response, field)
    assert client.get(f"{API}/{path}/{row['id']}").json() == row


def test_explicit_null_on_nullable_field_clears_it(client):
    user = factories.user(client)
    task = factories.task(client, user["id"], description="to clear", duration_minutes=30)
    response = client.patch(f"{API}/tasks/{task['id']}", json={"description": None, "duration_minutes": None})
    assert response.status_code == 200, response.text
    assert response.json()["description"] is None
    assert response.json()["duration_minutes"] is None


# --- integers beyond 32 bits, missing fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"), [("tasks", "duration_minutes"), ("goals", "target_weeks"), ("goals", "pipeline_order")]
)
def test_integer_beyond_32_bits_is_422(client, path, field):
    user = factories.user(client)
    response = client.post(f"{API}/{path}", json={"user_id": user["id"], "title": "Something", field: 2**40})
    assert_validation_error(response, field)
    assert total(client, path) == 0


def test_integer_beyond_32_bits_on_patch_is_422_and_row_unchanged(client):
    user = factories.user(client)
    task = factories.task(client, user["id"], duration_minutes=15)
    response = client.patch(f"{API}/tasks/{task['id']}", json={"duration_minutes": 2**40})
    assert_validation_error(response, "duration_minutes")
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("users", "email"),
        ("tasks", "title"),
        ("tasks", "user_id"),
        ("goals", "title"),
        ("goals", "user_id"),
        ("conversations", "langgraph_thread_id"),
        ("conversations", "context_type"),
        ("notification-log", "channel"),
        ("notification-log", "task_id"),
    ],
)
def test_missing_required_field_is_422_naming_it(client, path, field):
    body = _create_body(client, path)
    del body[field]
    before = total(client, path)
    response = client.post(f"{API}/{path}", json=body)
    assert_validation_error(response, field)
    assert total(client, path) == before


# --- 409: unique violations ---------------------------------------------------------------------------------------


def test_same_email_twice_is_409_naming_email(client):
    factories.user(client, email="twice@example.com")
    response = client.post(f"{API}/users", json={"email": "twice@example.com"})
    assert_conflict_naming(response, "duplicate", "email")
    assert total(client, "users") == 1


def test_same_langgraph_thread_id_twice_is_409_naming_it(client):
    user = factories.user(client)
    factories.conversation(client, user["id"], langgraph_thread_id="thread-dup")
    other = factories.user(client)
    response = client.post(
        f"{API}/conversations",
        json={"user_id": other["id"], "langgraph_thread_id": "thread-dup", "context_type": "task"},
    )
    assert_conflict_naming(response, "duplicate", "langgraph_thread_id")
    assert total(client, "conversations") == 1


def test_patch_email_to_another_users_email_is_409_and_row_unchanged(client):
    factories.user(client, email="taken@example.com")
    user = factories.user(client, email="mine@example.com")
    response = client.patch(f"{API}/users/{user['id']}", json={"email": "taken@example.com"})
    assert_conflict_naming(response, "duplicate", "email")
    assert client.get(f"{API}/users/{user['id']}").json() == user


def test_patch_email_to_its_own_value_is_not_a_conflict(client):
    user = factories.user(client, email="same@example.com")
    response = client.patch(f"{API}/users/{user['id']}", json={"email": "same@example.com"})
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "same@example.com"


# --- 409: references to missing parents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("tasks", "user_id"),
        ("tasks", "goal_id"),
        ("goals", "user_id"),
        ("goals", "parent_goal_id"),
        ("conversations", "user_id"),
        ("patterns", "user_id"),
        ("notification-log", "task_id"),
    ],
)
def test_reference_to_missing_parent_is_409_naming_field_and_id(client, path, field):
    body = _create_body(client, path)
    body[field] = MISSING_ID
    before = total(client, path)
    response = client.post(f"{API}/{path}", json=body)
    problem = assert_conflict_naming(response, "missing-reference", field)
    assert MISSING_ID in problem["detail"]
    assert total(client, path) == before


def test_patch_goal_id_to_missing_goal_is_409_and_row_unchanged(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    response = client.patch(f"{API}/tasks/{task['id']}", json={"goal_id": MISSING_ID})
    problem = assert_conflict_naming(response, "missing-reference", "goal_id")
    assert MISSING_ID in problem["detail"]
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


# --- 404 / 405 -----------------------------------------------------------------------------------------------------


def test_put_on_item_is_405_problem(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    response = client.put(f"{API}/tasks/{task['id']}", json={"title": "Replaced"})
    assert_problem(response, 405, "method-not-allowed")
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


def test_unknown_path_is_404_problem(client):
    assert_problem(client.get(f"{API}/milestones"), 404, "not-found")


def test_unknown_id_is_404_naming_resource_and_id(client):
    response = client.get(f"{API}/tasks/{MISSING_ID}")
    problem = assert_problem(response, 404, "not-found")
    assert MISSING_ID in problem["detail"]
    assert "task" in problem["detail"].lower()


# --- values the two databases would treat differently are refused the same way on both ---


def test_nul_character_in_a_text_field_is_422_naming_it(client):
    user = factories.user(client)
    response = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "a\u0000b"})
    problem = assert_validation_error(response, "title")
    assert "NUL" in problem["detail"]


def test_nul_character_inside_a_json_object_is_422_naming_the_field(client):
    response = client.post(f"{API}/users", json={"email": "nul@example.com", "profile": {"k\u0000": "v"}})
    assert_validation_error(response, "profile")


def test_nul_character_in_a_filter_is_422_naming_it(client):
    response = client.get(f"{API}/users", params={"email": "a\u0000b"})
    assert_validation_error(response, "email")


def test_datetime_that_overflows_once_in_utc_is_422_naming_the_field(client):
    user = factories.user(client)
    body = {"user_id": user["id"], "title": "late", "scheduled_at": "9999-12-31T23:59:59-05:00"}
    assert_validation_error(client.post(f"{API}/tasks", json=body), "scheduled_at")


def test_query_datetime_that_overflows_once_in_utc_is_422_naming_it(client):
    user = factories.user(client)
    params = {"user_id": user["id"], "start_at": "0001-01-01T00:00:00+05:00", "end_at": "2030-01-01T00:00:00Z"}
    assert_validation_error(client.get(f"{API}/tasks/by-timerange", params=params), "start_at")


def test_deeply_nested_json_is_422_not_500(client):
    nested = "[" * 5000 + "]" * 5000
    body = '{"email": "deep@example.com", "profile": {"x": ' + nested + "}}"
    response = client.post(f"{API}/users", content=body, headers={"content-type": "application/json"})
    assert_validation_error(response, "body")


@pytest.mark.parametrize("skip", [str(2**31), "99999999999999999999"])
def test_skip_beyond_the_supported_range_is_422(client, skip):
    assert_validation_error(client.get(f"{API}/tasks", params={"skip": skip}), "skip")


def test_an_integer_sent_for_a_float_field_comes_back_as_a_float(client):
    user = factories.user(client)
    created = factories.pattern(client, user["id"], confidence=1)
    assert created["confidence"] == 1.0
    assert isinstance(created["confidence"], float)
