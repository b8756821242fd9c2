import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import factories
from tests.factories import API
from tests.problems import assert_problem

UNKNOWN_ID = "01900000-0000-7000-8000-0000000000ff"
UTC_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_emails = itertools.count()


def new_email() -> str:
    return f"crud{next(_emails)}-{uuid.uuid4().hex[:6]}@example.com"


def new_thread() -> str:
    return f"thread-{uuid.uuid4().hex}"


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- the six resources: how to build a minimal and a complete create body, and what comes back --------------------


def users_minimal(client: Any) -> dict[str, Any]:
    return {"email": new_email()}


def users_full(client: Any) -> dict[str, Any]:
    return {
        "email": new_email(),
        "onboarded": True,
        "profile": {"name": "Ada", "timezone": "Europe/Paris", "tags": ["early-bird"], "work": {"days": [1, 2, 3]}},
        "notification_preferences": {"channels": ["push", "call"], "phone": "+33123456789", "lead_minutes": 15},
    }


def goals_minimal(client: Any) -> dict[str, Any]:
    return {"user_id": factories.user(client)["id"], "title": "Run a marathon"}


def goals_full(client: Any) -> dict[str, Any]:
    user = factories.user(client)
    parent = factories.goal(client, user["id"], title="Get fit")
    return {
        "user_id": user["id"],
        "title": "Run a marathon",
        "description": "Finish under four hours",
        "class_tags": ["Health", "Fitness", "Outdoors"],
        "status": "pipeline",
        "parent_goal_id": parent["id"],
        "pipeline_order": 2,
        "activated_at": "2030-01-05T08:00:00Z",
        "completed_at": "2030-03-01T18:30:00Z",
        "target_weeks": 12,
        "plan_json": {"weeks": [{"n": 1, "focus": "base", "km": 20.5}], "notes": None, "done": False},
    }


def tasks_minimal(client: Any) -> dict[str, Any]:
    return {"user_id": factories.user(client)["id"], "title": "Morning run"}


def tasks_full(client: Any) -> dict[str, Any]:
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    other_goal = factories.goal(client, user["id"], title="Sleep better")
    return {
        "user_id": user["id"],
        "goal_id": goal["id"],
        "title": "Morning run",
        "description": "5 km easy",
        "status": "done",
        "scheduled_at": "2030-01-06T07:00:00Z",
        "duration_minutes": 30,
        "trigger_type": "location",
        "location_trigger": "leaving home",
        "reminder_sent_at": "2030-01-06T06:45:00Z",
        "whatsapp_sent_at": "2030-01-06T06:50:00Z",
        "call_sent_at": "2030-01-06T06:55:00Z",
        "completed_at": "2030-01-06T07:35:00Z",
        "recurrence_rule": "FREQ=DAILY;BYDAY=MO,WE,FR",
        "shared_with_goal_ids": [goal["id"], other_goal["id"]],
    }


def conversations_minimal(client: Any) -> dict[str, Any]:
    return {"user_id": factories.user(client)["id"], "langgraph_thread_id": new_thread(), "context_type": "goal"}


def conversations_full(client: Any) -> dict[str, Any]:
    return {**conversations_minimal(client), "last_message_at": "2030-01-07T12:00:00Z"}


def patterns_minimal(client: Any) -> dict[str, Any]:
    return {"user_id": factories.user(client)["id"]}


def patterns_full(client: Any) -> dict[str, Any]:
    return {
        "user_id": factories.user(client)["id"],
        "pattern_type": "late-evenings",
        "description": "Skips tasks scheduled after 21:00",
        "data": {"hours": [21, 22, 23], "misses": 7, "ratio": 0.7, "by_day": {"mon": 2, "fri": 5}},
        "confidence": 0.75,
    }


def notifications_minimal(client: Any) -> dict[str, Any]:
    user = factories.user(client)
    return {"task_id": factories.task(client, user["id"])["id"], "channel": "push"}


def notifications_full(client: Any) -> dict[str, Any]:
    return {
        **notifications_minimal(client),
        "channel": "whatsapp",
        "sent_at": "2030-01-06T06:50:00Z",
        "response": "on my way",
        "responded_at": "2030-01-06T06:52:00Z",
    }


@dataclass(frozen=True)
class Resource:
    path: str
    names: tuple[str, ...]  # how a 404 problem may name the resource
    fields: frozenset[str]  # every field of the row as returned
    datetimes: frozenset[str]  # every datetime field of the row
    server_set: frozenset[str]  # fields the server fills in
    defaults: dict[str, Any]
    minimal: Callable[[Any], dict[str, Any]]
    full: Callable[[Any], dict[str, Any]]
    change: dict[str, Any]  # a PATCH changing one field to a value different from `full`'s
    nullable: str  # a nullable field set by `full`
    deletable: bool = True

    def __str__(self) -> str:
        return self.path


USERS = Resource(
    path="users",
    names=("users", "user"),
    fields=frozenset(
        {"id", "email", "onboarded", "profile", "notification_preferences", "created_at", "updated_at", "version"}
    ),
    datetimes=frozenset({"created_at", "updated_at"}),
    server_set=frozenset({"id", "created_at", "updated_at", "version"}),
    defaults={"onboarded": False},
    minimal=users_minimal,
    full=users_full,
    change={"onboarded": False},
    nullable="profile",
)
GOALS = Resource(
    path="goals",
    names=("goals", "goal"),
    fields=frozenset(
        {
            *("id", "user_id", "title", "description", "class_tags", "status", "parent_goal_id", "pipeline_order"),
            *("activated_at", "completed_at", "target_weeks", "plan_json", "created_at", "updated_at", "version"),
        }
    ),
    datetimes=frozenset({"activated_at", "completed_at", "created_at", "updated_at"}),
    server_set=frozenset({"id", "created_at", "updated_at", "version"}),
    defaults={"status": "active", "target_weeks": 6},
    minimal=goals_minimal,
    full=goals_full,
    change={"title": "Swim a mile"},
    nullable="description",
)
TASKS = Resource(
    path="tasks",
    names=("tasks", "task"),
    fields=frozenset(
        {
            *("id", "user_id", "goal_id", "title", "description", "status", "scheduled_at", "duration_minutes"),
            *("trigger_type", "location_trigger", "reminder_sent_at", "whatsapp_sent_at", "call_sent_at"),
            *("completed_at", "recurrence_rule", "shared_with_goal_ids", "created_at", "updated_at", "version"),
        }
    ),
    datetimes=frozenset(
        {
            "scheduled_at",
            "reminder_sent_at",
            "whatsapp_sent_at",
            "call_sent_at",
            "completed_at",
            "created_at",
            "updated_at",
        }
    ),
    server_set=frozenset({"id", "created_at", "updated_at", "version"}),
    defaults={"status": "pending", "trigger_type": "time"},
    minimal=tasks_minimal,
    full=tasks_full,
    change={"status": "missed"},
    nullable="scheduled_at",
)
CONVERSATIONS = Resource(
    path="conversations",
    names=("conversations", "conversation"),
    fields=frozenset(
        {
            "id",
            "user_id",
            "langgraph_thread_id",
            "context_type",
            "last_message_at",
            "created_at",
            "updated_at",
            "version",
        }
    ),
    datetimes=frozenset({"last_message_at", "created_at", "updated_at"}),
    server_set=frozenset({"id", "created_at", "updated_at", "version"}),
    defaults={},
    minimal=conversations_minimal,
    full=conversations_full,
    change={"context_type": "reschedule"},
    nullable="last_message_at",
    deletable=False,
)
PATTERNS = Resource(
    path="patterns",
    names=("patterns", "pattern"),
    fields=frozenset(
        {"id", "user_id", "pattern_type", "description", "data", "confidence", "created_at", "updated_at", "version"}
    ),
    datetimes=frozenset({"created_at", "updated_at"}),
    server_set=frozenset({"id", "created_at", "updated_at", "version"}),
    defaults={},
    minimal=patterns_minimal,
    full=patterns_full,
    change={"confidence": 0.5},
    nullable="data",
)
NOTIFICATIONS = Resource(
    path="notification-log",
    names=("notification-log", "notification_log", "notification log"),
    fields=frozenset({"id", "task_id", "channel", "sent_at", "response", "responded_at", "updated_at", "version"}),
    datetimes=frozenset({"sent_at", "responded_at", "updated_at"}),
    server_set=frozenset({"id", "updated_at", "version"}),
    defaults={},
    minimal=notifications_minimal,
    full=notifications_full,
    change={"response": "done already"},
    nullable="sent_at",
)

RESOURCES = [USERS, GOALS, TASKS, CONVERSATIONS, PATTERNS, NOTIFICATIONS]
DELETABLE = [r for r in RESOURCES if r.deletable]
by_resource = pytest.mark.parametrize("res", RESOURCES, ids=str)
by_deletable_resource = pytest.mark.parametrize("res", DELETABLE, ids=str)

# A client-settable datetime field of each resource that has one.
DATETIME_FIELDS = [
    pytest.param(GOALS, "activated_at", id="goals.activated_at"),
    pytest.param(TASKS, "scheduled_at", id="tasks.scheduled_at"),
    pytest.param(CONVERSATIONS, "last_message_at", id="conversations.last_message_at"),
    pytest.param(NOTIFICATIONS, "sent_at", id="notification-log.sent_at"),
]


# --- helpers ---------------------------------------------------------------------------------------------------------


def post(client: Any, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{API}/{res.path}", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def get_row(client: Any, res: Resource, row_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/{res.path}/{row_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def patch_row(client: Any, res: Resource, row_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.patch(f"{API}/{res.path}/{row_id}", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def count(client: Any, res: Resource) -> int:
    response = client.get(f"{API}/{res.path}")
    assert response.status_code == 200, response.text
    return response.json()["total"]  # type: ignore[no-any-return]


def assert_stored(res: Resource, sent: dict[str, Any], row: dict[str, Any]) -> None:
    for name, value in sent.items():
        if name in res.datetimes and value is not None:
            assert instant(row[name]) == instant(value), (name, row[name])
        else:
            assert row[name] == value, (name, row[name])


def assert_not_found(response: Any, res: Resource, row_id: str) -> None:
    body = assert_problem(response, 404, "not-found")
    detail = body["detail"].lower()
    assert row_id in detail, body
    assert any(name in detail for name in res.names), body


def error_fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body.get("errors") or []]


# --- POST ------------------------------------------------------------------------------------------------------------


@by_resource
def test_create_returns_201_with_every_field(client, res):
    response = client.post(f"{API}/{res.path}", json=res.minimal(client))
    assert response.status_code == 201, response.text
    assert set(response.json()) == res.fields


@by_resource
def test_create_returns_unset_fields_as_null(client, res):
    body = res.minimal(client)
    row = post(client, res, body)
    unset = res.fields - set(body) - set(res.defaults) - res.server_set
    assert {name: row[name] for name in unset} == dict.fromkeys(unset)


@by_resource
def test_create_applies_defaults(client, res):
    row = post(client, res, res.minimal(client))
    assert {name: row[name] for name in res.defaults} == res.defaults


def test_new_user_is_not_onboarded(client):
    assert factories.user(client)["onboarded"] is False


def test_new_goal_is_active_for_six_weeks(client):
    goal = factories.goal(client, factories.user(client)["id"])
    assert (goal["status"], goal["target_weeks"]) == ("active", 6)


def test_new_task_is_pending_and_time_triggered(client):
    task = factories.task(client, factories.user(client)["id"])
    assert (task["status"], task["trigger_type"]) == ("pending", "time")


@by_resource
def test_create_stores_every_field_sent(client, res):
    body = res.full(client)
    row = post(client, res, body)
    assert set(row) == res.fields
    assert_stored(res, body, row)
    assert get_row(client, res, row["id"]) == row


@by_resource
def test_create_sets_server_fields(client, res):
    row = post(client, res, res.minimal(client))
    assert uuid.UUID(row["id"])
    assert row["version"] == 1
    for name in res.server_set - {"id", "version"}:
        assert UTC_ISO.match(row[name]), (name, row[name])


@by_resource
def test_each_created_row_gets_its_own_id(client, res):
    first = post(client, res, res.minimal(client))
    second = post(client, res, res.minimal(client))
    assert first["id"] != second["id"]


@by_resource
def test_create_location_header_is_the_rows_url(client, res):
    response = client.post(f"{API}/{res.path}", json=res.minimal(client))
    assert response.status_code == 201, response.text
    row = response.json()
    location = response.headers["location"]
    assert urlsplit(location).path == f"{API}/{res.path}/{row['id']}"
    fetched = client.get(location)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == row


@by_resource
def test_create_with_client_sent_id_is_422_unknown_field(client, res):
    body = {**res.minimal(client), "id": str(uuid.uuid4())}
    response = client.post(f"{API}/{res.path}", json=body)
    problem = assert_problem(response, 422, "validation-error")
    assert "id" in error_fields(problem), problem
    message = next(e["message"] for e in problem["errors"] if e["field"] == "id")
    assert "unknown" in message.lower(), problem
    assert count(client, res) == 0


# --- datetimes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("res", "name"), DATETIME_FIELDS)
def test_datetime_with_offset_is_returned_as_the_same_instant_in_utc(client, res, name):
    row = post(client, res, {**res.minimal(client), name: "2030-05-01T10:30:00+02:00"})
    assert UTC_ISO.match(row[name]), row[name]
    assert instant(row[name]) == datetime(2030, 5, 1, 8, 30, tzinfo=UTC)
    assert get_row(client, res, row["id"])[name] == row[name]


@pytest.mark.parametrize(("res", "name"), DATETIME_FIELDS)
def test_naive_datetime_is_taken_as_utc(client, res, name):
    row = post(client, res, {**res.minimal(client), name: "2030-05-01T10:30:00"})
    assert UTC_ISO.match(row[name]), row[name]
    assert instant(row[name]) == datetime(2030, 5, 1, 10, 30, tzinfo=UTC)
    assert get_row(client, res, row["id"])[name] == row[name]


@pytest.mark.parametrize(("res", "name"), DATETIME_FIELDS)
def test_patch_datetime_with_offset_is_stored_in_utc(client, res, name):
    row = post(client, res, res.minimal(client))
    patched = patch_row(client, res, row["id"], {name: "2030-05-01T23:15:00-05:00"})
    assert UTC_ISO.match(patched[name]), patched[name]
    assert instant(patched[name]) == datetime(2030, 5, 2, 4, 15, tzinfo=UTC)
    assert get_row(client, res, row["id"])[name] == patched[name]


@pytest.mark.parametrize("res", [USERS, GOALS, TASKS, CONVERSATIONS, PATTERNS], ids=str)
def test_created_at_is_utc_with_z(client, res):
    before = datetime.now(UTC)
    row = post(client, res, res.minimal(client))
    assert UTC_ISO.match(row["created_at"]), row["created_at"]
    assert abs((instant(row["created_at"]) - before).total_seconds()) < 60


def test_notification_log_has_no_created_at(client):
    row = post(client, NOTIFICATIONS, NOTIFICATIONS.minimal(client))
    assert "created_at" not in row


# --- lists and json objects round-trip -------------------------------------------------------------------------------


def test_task_list_of_uuids_round_trips(client):
    user = factories.user(client)
    ids = [factories.goal(client, user["id"])["id"] for _ in range(3)]
    task = factories.task(client, user["id"], shared_with_goal_ids=ids)
    assert task["shared_with_goal_ids"] == ids
    assert get_row(client, TASKS, task["id"])["shared_with_goal_ids"] == ids


def test_task_list_of_uuids_is_replaced_by_patch(client):
    user = factories.user(client)
    first, second = (factories.goal(client, user["id"])["id"] for _ in range(2))
    task = factories.task(client, user["id"], shared_with_goal_ids=[first])
    patched = patch_row(client, TASKS, task["id"], {"shared_with_goal_ids": [second, first]})
    assert patched["shared_with_goal_ids"] == [second, first]
    assert get_row(client, TASKS, task["id"])["shared_with_goal_ids"] == [second, first]


def test_goal_list_of_strings_round_trips(client):
    tags = ["Health", "Fitness", "naïve café"]
    goal = factories.goal(client, factories.user(client)["id"], class_tags=tags)
    assert goal["class_tags"] == tags
    assert get_row(client, GOALS, goal["id"])["class_tags"] == tags


def test_empty_lists_round_trip_as_empty_lists(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"], class_tags=[])
    task = factories.task(client, user["id"], shared_with_goal_ids=[])
    assert get_row(client, GOALS, goal["id"])["class_tags"] == []
    assert get_row(client, TASKS, task["id"])["shared_with_goal_ids"] == []


@pytest.mark.parametrize(
    ("res", "name"),
    [
        pytest.param(USERS, "profile", id="users.profile"),
        pytest.param(USERS, "notification_preferences", id="users.notification_preferences"),
        pytest.param(GOALS, "plan_json", id="goals.plan_json"),
        pytest.param(PATTERNS, "data", id="patterns.data"),
    ],
)
def test_json_object_round_trips(client, res, name):
    value = {"text": "ünï", "int": 3, "float": 2.5, "bool": True, "null": None, "list": [1, "a", {"b": []}], "obj": {}}
    row = post(client, res, {**res.minimal(client), name: value})
    assert row[name] == value
    assert get_row(client, res, row["id"])[name] == value
    replaced = patch_row(client, res, row["id"], {name: {"only": "this"}})
    assert replaced[name] == {"only": "this"}
    assert get_row(client, res, row["id"])[name] == {"only": "this"}


# --- GET -------------------------------------------------------------------------------------------------------------


@by_resource
def test_get_returns_the_created_row(client, res):
    row = post(client, res, res.full(client))
    response = client.get(f"{API}/{res.path}/{row['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == row


@by_resource
def test_get_unknown_id_is_404_naming_resource_and_id(client, res):
    response = client.get(f"{API}/{res.path}/{UNKNOWN_ID}")
    assert_not_found(response, res, UNKNOWN_ID)


# --- PATCH -----------------------------------------------------------------------------------------------------------


@by_resource
def test_patch_changes_only_the_fields_sent(client, res):
    row = post(client, res, res.full(client))
    patched = patch_row(client, res, row["id"], res.change)
    expected = {**row, **res.change, "version": row["version"] + 1}
    compared = res.fields - {"updated_at"}  # updated_at moves on every change; tested on its own below
    assert {k: patched[k] for k in compared} == {k: expected[k] for k in compared}
    assert get_row(client, res, row["id"]) == patched


def test_patch_can_change_several_fields_at_once(client):
    task = factories.task(client, factories.user(client)["id"])
    body = {"title": "Evening swim", "duration_minutes": 45, "trigger_type": "location", "location_trigger": "gym"}
    patched = patch_row(client, TASKS, task["id"], body)
    assert {name: patched[name] for name in body} == body
    assert patched["status"] == "pending"
    assert patched["description"] is None


@by_resource
def test_patch_with_empty_body_changes_nothing(client, res):
    row = post(client, res, res.full(client))
    response = client.patch(f"{API}/{res.path}/{row['id']}", json={})
    assert response.status_code == 200, response.text
    assert response.json() == row
    assert get_row(client, res, row["id"]) == row


@by_resource
def test_patch_explicit_null_clears_a_nullable_field(client, res):
    row = post(client, res, res.full(client))
    assert row[res.nullable] is not None
    patched = patch_row(client, res, row["id"], {res.nullable: None})
    assert patched[res.nullable] is None
    assert get_row(client, res, row["id"])[res.nullable] is None
    untouched = res.fields - {res.nullable, "updated_at", "version"}
    assert {k: patched[k] for k in untouched} == {k: row[k] for k in untouched}
    assert patched["version"] == row["version"] + 1


@by_resource
def test_patch_unknown_id_is_404(client, res):
    response = client.patch(f"{API}/{res.path}/{UNKNOWN_ID}", json=res.change)
    assert_not_found(response, res, UNKNOWN_ID)


@by_resource
def test_patch_unknown_id_with_empty_body_is_404(client, res):
    response = client.patch(f"{API}/{res.path}/{UNKNOWN_ID}", json={})
    assert_not_found(response, res, UNKNOWN_ID)


# --- patterns.updated_at ---------------------------------------------------------------------------------------------


def test_pattern_updated_at_is_set_at_creation(client):
    pattern = factories.pattern(client, factories.user(client)["id"])
    assert UTC_ISO.match(pattern["updated_at"]), pattern
    assert instant(pattern["updated_at"]) >= instant(pattern["created_at"])


def test_pattern_updated_at_changes_on_every_patch(client):
    pattern = factories.pattern(client, factories.user(client)["id"], confidence=0.1)
    first = patch_row(client, PATTERNS, pattern["id"], {"confidence": 0.2})
    second = patch_row(client, PATTERNS, pattern["id"], {"pattern_type": "weekend-slump"})
    assert instant(pattern["updated_at"]) < instant(first["updated_at"]) < instant(second["updated_at"])
    assert get_row(client, PATTERNS, pattern["id"])["updated_at"] == second["updated_at"]
    assert second["created_at"] == pattern["created_at"]


def test_pattern_updated_at_is_unchanged_by_empty_patch(client):
    pattern = factories.pattern(client, factories.user(client)["id"], confidence=0.1)
    patched = patch_row(client, PATTERNS, pattern["id"], {})
    assert patched["updated_at"] == pattern["updated_at"]
    assert get_row(client, PATTERNS, pattern["id"])["updated_at"] == pattern["updated_at"]


# --- conversations: an audit trail -----------------------------------------------------------------------------------


def test_conversation_context_type_and_last_message_at_can_change(client):
    conversation = factories.conversation(client, factories.user(client)["id"], context_type="onboarding")
    body = {"context_type": "task", "last_message_at": "2030-02-01T09:00:00Z"}
    patched = patch_row(client, CONVERSATIONS, conversation["id"], body)
    assert patched["context_type"] == "task"
    assert instant(patched["last_message_at"]) == datetime(2030, 2, 1, 9, tzinfo=UTC)
    assert patched["langgraph_thread_id"] == conversation["langgraph_thread_id"]
    assert patched["user_id"] == conversation["user_id"]


def test_conversation_thread_id_cannot_be_changed(client):
    conversation = factories.conversation(client, factories.user(client)["id"])
    response = client.patch(f"{API}/conversations/{conversation['id']}", json={"langgraph_thread_id": "other-thread"})
    problem = assert_problem(response, 422, "validation-error")
    assert "langgraph_thread_id" in error_fields(problem), problem
    assert get_row(client, CONVERSATIONS, conversation["id"]) == conversation


def test_conversation_user_id_cannot_be_changed(client):
    conversation = factories.conversation(client, factories.user(client)["id"])
    other_user = factories.user(client)
    response = client.patch(f"{API}/conversations/{conversation['id']}", json={"user_id": other_user["id"]})
    problem = assert_problem(response, 422, "validation-error")
    assert "user_id" in error_fields(problem), problem
    assert get_row(client, CONVERSATIONS, conversation["id"]) == conversation


def test_conversation_rejected_patch_changes_no_other_field(client):
    conversation = factories.conversation(client, factories.user(client)["id"], context_type="goal")
    body = {"context_type": "task", "langgraph_thread_id": "other-thread"}
    response = client.patch(f"{API}/conversations/{conversation['id']}", json=body)
    problem = assert_problem(response, 422, "validation-error")
    assert "langgraph_thread_id" in error_fields(problem), problem
    assert get_row(client, CONVERSATIONS, conversation["id"])["context_type"] == "goal"


def test_delete_conversation_is_405_and_keeps_the_row(client):
    conversation = factories.conversation(client, factories.user(client)["id"])
    response = client.delete(f"{API}/conversations/{conversation['id']}")
    assert_problem(response, 405, "method-not-allowed")
    assert get_row(client, CONVERSATIONS, conversation["id"]) == conversation


# --- DELETE ----------------------------------------------------------------------------------------------------------


@by_deletable_resource
def test_delete_is_204_with_empty_body_then_get_is_404(client, res):
    row = post(client, res, res.full(client))
    response = client.delete(f"{API}/{res.path}/{row['id']}")
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_not_found(client.get(f"{API}/{res.path}/{row['id']}"), res, row["id"])


@by_deletable_resource
def test_delete_removes_only_that_row(client, res):
    kept = post(client, res, res.minimal(client))
    gone = post(client, res, res.minimal(client))
    assert client.delete(f"{API}/{res.path}/{gone['id']}").status_code == 204
    assert get_row(client, res, kept["id"]) == kept


@by_deletable_resource
def test_delete_twice_is_404_the_second_time(client, res):
    row = post(client, res, res.minimal(client))
    assert client.delete(f"{API}/{res.path}/{row['id']}").status_code == 204
    assert_not_found(client.delete(f"{API}/{res.path}/{row['id']}"), res, row["id"])


@by_deletable_resource
def test_delete_unknown_id_is_404(client, res):
    assert_not_found(client.delete(f"{API}/{res.path}/{UNKNOWN_ID}"), res, UNKNOWN_ID)


# --- collection paths with and without a trailing slash --------------------------------------------------------------

slash = pytest.mark.parametrize("suffix", ["", "/"], ids=["no-slash", "slash"])


@by_resource
@slash
def test_list_answers_on_collection_path_without_redirect(client, res, suffix):
    row = post(client, res, res.minimal(client))
    response = client.get(f"{API}/{res.path}{suffix}", follow_redirects=False)
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [row["id"]]


@by_resource
@slash
def test_create_answers_on_collection_path_without_redirect(client, res, suffix):
    response = client.post(f"{API}/{res.path}{suffix}", json=res.minimal(client), follow_redirects=False)
    assert response.status_code == 201, response.text
    assert get_row(client, res, response.json()["id"]) == response.json()
