from typing import Any

from tests import factories
from tests.factories import API


def status_of(client: Any, path: str, row_id: str) -> int:
    return client.get(f"{API}/{path}/{row_id}").status_code  # type: ignore[no-any-return]


def assert_restricted_delete(response: Any) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:flux-dao:problem:restricted-delete"
    assert body["status"] == 409
    assert body["title"]
    assert "notification_log" in body["detail"]
    return body  # type: ignore[no-any-return]


def user_with_everything(client: Any) -> dict[str, dict[str, Any]]:
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    return {
        "users": user,
        "goals": goal,
        "tasks": factories.task(client, user["id"], goal_id=goal["id"]),
        "conversations": factories.conversation(client, user["id"]),
        "patterns": factories.pattern(client, user["id"], pattern_type="late-evenings"),
    }


def test_deleting_user_cascades_to_goals_tasks_conversations_and_patterns(client):
    rows = user_with_everything(client)
    response = client.delete(f"{API}/users/{rows['users']['id']}")
    assert response.status_code == 204, response.text
    for path, row in rows.items():
        assert status_of(client, path, row["id"]) == 404, path


def test_deleting_user_leaves_other_users_rows_alone(client):
    doomed = user_with_everything(client)
    kept = user_with_everything(client)
    assert client.delete(f"{API}/users/{doomed['users']['id']}").status_code == 204
    for path, row in kept.items():
        response = client.get(f"{API}/{path}/{row['id']}")
        assert response.status_code == 200, path
        assert response.json() == row


def test_deleting_goal_sets_task_goal_id_to_null(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    task = factories.task(client, user["id"], goal_id=goal["id"])
    assert client.delete(f"{API}/goals/{goal['id']}").status_code == 204
    response = client.get(f"{API}/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.json() == {**task, "goal_id": None}


def test_deleting_goal_sets_child_goals_parent_goal_id_to_null(client):
    user = factories.user(client)
    parent = factories.goal(client, user["id"], title="Parent")
    child = factories.goal(client, user["id"], title="Child", parent_goal_id=parent["id"])
    assert client.delete(f"{API}/goals/{parent['id']}").status_code == 204
    response = client.get(f"{API}/goals/{child['id']}")
    assert response.status_code == 200
    assert response.json() == {**child, "parent_goal_id": None}
    assert status_of(client, "goals", parent["id"]) == 404


def test_deleting_task_with_notification_log_rows_is_409_and_deletes_nothing(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    log = factories.notification(client, task["id"], channel="whatsapp")
    response = client.delete(f"{API}/tasks/{task['id']}")
    assert_restricted_delete(response)
    assert client.get(f"{API}/tasks/{task['id']}").json() == task
    assert client.get(f"{API}/notification-log/{log['id']}").json() == log


def test_deleting_user_whose_task_has_notification_log_rows_is_409_and_deletes_nothing(client):
    rows = user_with_everything(client)
    user_id = rows["users"]["id"]
    second_task = factories.task(client, user_id, title="Evening walk")
    log = factories.notification(client, rows["tasks"]["id"], channel="call")
    response = client.delete(f"{API}/users/{user_id}")
    assert_restricted_delete(response)
    for path, row in {**rows, "extra-task": second_task}.items():
        resource = "tasks" if path == "extra-task" else path
        got = client.get(f"{API}/{resource}/{row['id']}")
        assert got.status_code == 200, path
        assert got.json() == row
    assert client.get(f"{API}/notification-log/{log['id']}").json() == log
    assert client.get(f"{API}/tasks", params={"user_id": user_id}).json()["total"] == 2


def test_task_delete_succeeds_after_its_log_rows_are_deleted(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    logs = [factories.notification(client, task["id"]) for _ in range(2)]
    assert client.delete(f"{API}/tasks/{task['id']}").status_code == 409
    for log in logs:
        assert client.delete(f"{API}/notification-log/{log['id']}").status_code == 204
    response = client.delete(f"{API}/tasks/{task['id']}")
    assert response.status_code == 204, response.text
    assert status_of(client, "tasks", task["id"]) == 404


def test_user_delete_succeeds_after_log_rows_are_deleted(client):
    rows = user_with_everything(client)
    log = factories.notification(client, rows["tasks"]["id"])
    assert client.delete(f"{API}/users/{rows['users']['id']}").status_code == 409
    assert client.delete(f"{API}/notification-log/{log['id']}").status_code == 204
    assert client.delete(f"{API}/users/{rows['users']['id']}").status_code == 204
    for path, row in rows.items():
        assert status_of(client, path, row["id"]) == 404, path


def test_deleting_notification_log_row_returns_204_and_row_is_gone(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    log = factories.notification(client, task["id"])
    response = client.delete(f"{API}/notification-log/{log['id']}")
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert status_of(client, "notification-log", log["id"]) == 404
    assert status_of(client, "tasks", task["id"]) == 200


def test_deleting_task_without_log_rows_keeps_its_goal(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    task = factories.task(client, user["id"], goal_id=goal["id"])
    assert client.delete(f"{API}/tasks/{task['id']}").status_code == 204
    assert client.get(f"{API}/goals/{goal['id']}").json() == goal


def test_deleting_missing_row_is_404_problem(client):
    response = client.delete(f"{API}/goals/01900000-0000-7000-8000-0000000000bb")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:flux-dao:problem:not-found"


def test_deleting_same_row_twice_is_404_the_second_time(client):
    user = factories.user(client)
    assert client.delete(f"{API}/users/{user['id']}").status_code == 204
    assert client.delete(f"{API}/users/{user['id']}").status_code == 404


def test_conversations_cannot_be_deleted(client):
    user = factories.user(client)
    conversation = factories.conversation(client, user["id"])
    response = client.delete(f"{API}/conversations/{conversation['id']}")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"{API}/conversations/{conversation['id']}").json() == conversation
