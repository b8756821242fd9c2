"""Strict requests (issue #8): every problem of a request named, unknown and repeated query parameters refused.

Through HTTP on both backends. A query parameter an operation does not declare, or a single-valued one sent twice,
is a 422 naming it, as an unknown JSON key already was; a number too large for the JSON decoder names its field; and
a refused request lists all its problems (declared parameters, then unknown ones, then the body), not the first.
"""

from typing import Any

import pytest

from tests import factories
from tests.factories import API
from tests.problems import assert_problem

JSON_HEADERS = {"content-type": "application/json"}
UNKNOWN = "unknown query parameter; known: "
START, END = "2030-03-10T08:00:00Z", "2030-03-10T18:00:00Z"


def errors_of(response: Any) -> list[tuple[str, str]]:
    """The (field, message) pairs of a validation-error problem, in order; the detail mentions each field."""
    problem = assert_problem(response, 422, "validation-error")
    errors = [(e["field"], e["message"]) for e in problem["errors"]]
    for field, _ in errors:
        assert field in problem["detail"], problem
    return errors


def total(client: Any, path: str) -> int:
    response = client.get(f"{API}/{path}")
    assert response.status_code == 200, response.text
    return response.json()["total"]  # type: ignore[no-any-return]


# --- numbers the JSON decoder cannot hold ----------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_number_out_of_range_on_create_names_the_field(client, number):
    user = factories.user(client)
    body = f'{{"user_id": "{user["id"]}", "title": "Run", "duration_minutes": {number}}}'
    response = client.post(f"{API}/tasks", content=body, headers=JSON_HEADERS)
    assert errors_of(response) == [("duration_minutes", "number out of range")]
    assert total(client, "tasks") == 0


def test_number_out_of_range_on_patch_names_the_field_and_changes_nothing(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    response = client.patch(
        f"{API}/tasks/{task['id']}", content='{"title": "New", "duration_minutes": 1e400}', headers=JSON_HEADERS
    )
    assert errors_of(response) == [("duration_minutes", "number out of range")]
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


def test_number_out_of_range_in_a_float_field_names_it(client):
    user = factories.user(client)
    body = f'{{"user_id": "{user["id"]}", "confidence": 1e400}}'
    response = client.post(f"{API}/patterns", content=body, headers=JSON_HEADERS)
    assert errors_of(response) == [("confidence", "number out of range")]


def test_number_out_of_range_beside_other_problems_names_them_all(client):
    response = client.post(
        f"{API}/tasks", content='{"title": 5, "duration_minutes": 1e400, "colour": "red"}', headers=JSON_HEADERS
    )
    assert errors_of(response) == [
        ("user_id", "required field missing"),
        ("title", "Expected `str`, got `int`"),
        ("duration_minutes", "number out of range"),
        ("colour", "unknown field"),
    ]


# --- repeated query parameters ---------------------------------------------------------------------------------------


def test_repeated_filter_on_the_list_is_422_naming_it(client):
    user = factories.user(client)
    factories.task(client, user["id"], status="pending")
    response = client.get(f"{API}/tasks?status=pending&status=missed")
    assert errors_of(response) == [("status", "given more than once")]


def test_repeated_parameter_on_a_query_route_is_422_naming_it(client):
    first, second = factories.user(client), factories.user(client)
    response = client.get(
        f"{API}/tasks/by-timerange",
        params=[("user_id", first["id"]), ("user_id", second["id"]), ("start_at", START), ("end_at", END)],
    )
    assert errors_of(response) == [("user_id", "given more than once")]


def test_repeated_paging_parameter_is_422(client):
    response = client.get(f"{API}/users?limit=5&limit=500")
    assert errors_of(response) == [("limit", "given more than once")]


# --- unknown query parameters ----------------------------------------------------------------------------------------


def known_of(response: Any, name: str) -> list[str]:
    """The parameter names a 422 for the unknown parameter ``name`` lists as known."""
    [(field, message)] = errors_of(response)
    assert field == name
    assert message.startswith(UNKNOWN), message
    return message.removeprefix(UNKNOWN).split(", and ")[0].split(", ")


def test_unknown_parameter_on_the_list_is_422_listing_the_known_ones(client):
    factories.task(client, factories.user(client)["id"], title="x")
    for unknown, value in (("title", "x"), ("order", "-scheduled_at"), ("status__like", "p%")):
        known = known_of(client.get(f"{API}/tasks", params={unknown: value}), unknown)
        assert {"skip", "limit", "count", "sort", "cursor", "fields", "include", "status", "status__in"} <= set(known)
        assert "title__icontains" in known
        assert unknown not in known


def test_unknown_parameter_on_get_is_422(client):
    task = factories.task(client, factories.user(client)["id"])
    known = known_of(client.get(f"{API}/tasks/{task['id']}?foo=1"), "foo")
    assert known == ["fields", "include", "include_limit"]


def test_unknown_parameter_on_create_is_422_and_stores_nothing(client):
    user = factories.user(client)
    response = client.post(f"{API}/tasks?notify=true", json={"user_id": user["id"], "title": "Run"})
    assert errors_of(response) == [("notify", "unknown query parameter; this operation takes none")]
    assert total(client, "tasks") == 0


def test_unknown_parameter_on_patch_is_422_and_changes_nothing(client):
    task = factories.task(client, factories.user(client)["id"])
    response = client.patch(f"{API}/tasks/{task['id']}?dry_run=1", json={"title": "Changed"})
    assert errors_of(response) == [("dry_run", "unknown query parameter; this operation takes none")]
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


def test_unknown_parameter_on_delete_is_422_and_deletes_nothing(client):
    task = factories.task(client, factories.user(client)["id"])
    response = client.delete(f"{API}/tasks/{task['id']}?cascade=true")
    assert errors_of(response) == [("cascade", "unknown query parameter; this operation takes none")]
    assert client.get(f"{API}/tasks/{task['id']}").status_code == 200


def test_unknown_parameter_on_extra_queries_is_422(client):
    user = factories.user(client)
    params = {"user_id": user["id"], "start_at": START, "end_at": END, "limit": "10"}
    known = known_of(client.get(f"{API}/tasks/by-timerange", params=params), "limit")
    assert {"user_id", "start_at", "end_at", "status__in", "fields", "include"} <= set(known)
    assert "cursor" not in known
    response = client.post(
        f"{API}/tasks/bulk-update-state?sync=1",
        json={"task_ids": [factories.task(client, user["id"])["id"]], "new_status": "done"},
    )
    assert errors_of(response) == [("sync", "unknown query parameter; this operation takes none")]
    assert client.get(f"{API}/tasks").json()["items"][0]["status"] == "pending"


def test_two_unknown_parameters_are_both_named_in_order(client):
    response = client.get(f"{API}/goals?order=-created_at&title=x&limit=5")
    assert [field for field, _ in errors_of(response)] == ["order", "title"]


def test_a_parameter_without_a_value_is_still_a_parameter(client):
    response = client.get(f"{API}/users?verbose")
    assert [field for field, _ in errors_of(response)] == ["verbose"]


def test_declared_parameters_still_pass(client):
    user = factories.user(client)
    factories.task(client, user["id"], status="done")
    response = client.get(f"{API}/tasks", params={"user_id": user["id"], "status": "done", "skip": 0, "limit": 5})
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1
    response = client.get(f"{API}/tasks", params={"count": "false"})
    assert response.status_code == 200, response.text


def test_probes_stay_lenient(client):
    assert client.get("/health?cache_bust=1").status_code == 200


# --- every problem of a request --------------------------------------------------------------------------------------


def test_body_with_three_problems_names_all_three_in_declared_order(client):
    response = client.post(f"{API}/tasks", json={"colour": "red", "title": 5})
    assert errors_of(response) == [
        ("user_id", "required field missing"),
        ("title", "Expected `str`, got `int`"),
        ("colour", "unknown field"),
    ]
    assert total(client, "tasks") == 0


def test_patch_with_several_problems_names_each(client):
    task = factories.task(client, factories.user(client)["id"])
    response = client.patch(
        f"{API}/tasks/{task['id']}", json={"duration_minutes": 0, "status": "later", "user_id": task["user_id"]}
    )
    assert errors_of(response) == [
        ("status", "Invalid enum value 'later'"),
        ("duration_minutes", "Expected `int` >= 1"),
        ("user_id", "cannot be changed after creation"),
    ]


def test_query_and_body_problems_are_named_together(client):
    response = client.post(f"{API}/tasks?notify=1", json={"title": ""})
    assert [field for field, _ in errors_of(response)] == ["notify", "user_id", "title"]


def test_invalid_and_unknown_parameters_are_named_together(client):
    response = client.get(f"{API}/tasks?limit=abc&skip=-1&status=pending&status=later&order=asc")
    assert errors_of(response)[:3] == [
        ("limit", "is not an integer"),
        ("skip", "must be between 0 and 2147483647"),
        ("status", "given more than once"),
    ]
    assert [field for field, _ in errors_of(response)] == ["limit", "skip", "status", "order"]


def test_every_missing_required_parameter_is_named(client):
    response = client.get(f"{API}/tasks/statistics")
    assert errors_of(response) == [
        ("user_id", "required query parameter missing"),
        ("start_date", "required query parameter missing"),
        ("end_date", "required query parameter missing"),
    ]


def test_missing_and_invalid_query_parameters_are_named_together(client):
    response = client.get(f"{API}/tasks/by-timerange?user_id=not-a-uuid&start_at=yesterday&debug=1")
    assert [field for field, _ in errors_of(response)] == ["user_id", "start_at", "end_at", "debug"]
