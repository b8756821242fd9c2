"""Small helpers that create rows through the API and return the JSON the service answered."""

import itertools
from typing import Any

from litestar.testing import TestClient

API = "/api/v1"
_counter = itertools.count()


def create(client: TestClient, path: str, **body: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    response = client.post(f"{API}/{path}", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def user(client: TestClient, **body: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    body.setdefault("email", f"user{next(_counter)}@example.com")
    return create(client, "users", **body)


def goal(client: TestClient, user_id: str, **body: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    body.setdefault("title", "Run a marathon")
    return create(client, "goals", user_id=user_id, **body)


def task(client: TestClient, user_id: str, **body: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    body.setdefault("title", "Morning run")
    return create(client, "tasks", user_id=user_id, **body)


def conversation(client: TestClient, user_id: str, **body: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    body.setdefault("langgraph_thread_id", f"thread-{next(_counter)}")
    body.setdefault("context_type", "goal")
    return create(client, "conversations", user_id=user_id, **body)


def pattern(client: TestClient, user_id: str, **body: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    return create(client, "patterns", user_id=user_id, **body)


def notification(client: TestClient, task_id: str, **body: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    body.setdefault("channel", "push")
    return create(client, "notification-log", task_id=task_id, **body)
