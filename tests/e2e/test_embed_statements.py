"""Embeds cost one SQL statement per level, whatever the page size (issue #9): never one per row.

Counted through ``flux_dao_db_statements_total`` on ``/metrics``, the statements the service really sent, on both
backends: a page of 1, 5 or 20 users with their goals and each goal's tasks is always 3 statements (the page, the
goals, the tasks), and the embedded rows are each parent's own, in the child's default order, at most
``include_limit`` per parent.
"""

from typing import Any

import pytest

from tests import factories
from tests.e2e.test_observability import delta, scrape
from tests.factories import API

STATEMENTS = "flux_dao_db_statements_total"


def statements_of(client: Any, url: str) -> tuple[dict[str, Any], float]:
    """The answer to GET ``url`` and how many statements it sent."""
    before = scrape(client)
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json(), delta(before, scrape(client), STATEMENTS)


def test_a_page_of_users_with_goals_and_their_tasks_is_three_statements_at_any_size(client):
    users = []
    for n in range(20):
        user = factories.user(client)
        for g in range(2):
            goal = factories.goal(client, user["id"], title=f"goal {n}.{g}")
            for t in range(3):
                factories.task(client, user["id"], goal_id=goal["id"], title=f"task {n}.{g}.{t}")
        users.append(user)
    for size in (1, 5, 20):
        page, sent = statements_of(client, f"{API}/users?limit={size}&count=false&include=goals.tasks&include_limit=2")
        assert sent == 3, (size, sent)
        assert len(page["items"]) == size
        for user in page["items"]:
            assert len(user["goals"]) == 2
            for goal in user["goals"]:
                assert goal["user_id"] == user["id"]
                assert len(goal["tasks"]) == 2  # include_limit of 3
                assert all(task["goal_id"] == goal["id"] for task in goal["tasks"])
                newest_first = [task["created_at"] for task in goal["tasks"]]
                assert newest_first == sorted(newest_first, reverse=True)


def test_to_one_embeds_are_one_statement_each_and_null_without_a_reference(client):
    user = factories.user(client)
    goal = factories.goal(client, user["id"])
    for n in range(6):
        factories.task(client, user["id"], goal_id=goal["id"] if n % 2 else None)
    page, sent = statements_of(client, f"{API}/tasks?count=false&include=goal,user")
    assert sent == 3
    for task in page["items"]:
        assert task["user"]["id"] == user["id"]
        assert (task["goal"] or {}).get("id") == task["goal_id"]


@pytest.mark.parametrize("size", [1, 10])
def test_get_by_id_with_nested_embeds_is_one_statement_per_level(client, size):
    user = factories.user(client)
    for n in range(size):
        goal = factories.goal(client, user["id"], title=f"goal {n}")
        factories.task(client, user["id"], goal_id=goal["id"])
    row, sent = statements_of(client, f"{API}/users/{user['id']}?include=goals.tasks.notification_log,patterns")
    assert sent == 5  # the user, goals, tasks, notification log, patterns
    assert len(row["goals"]) == size
    assert row["patterns"] == []
