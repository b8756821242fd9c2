import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests import factories
from tests.factories import API

TIMERANGE = f"{API}/tasks/by-timerange"
STATISTICS = f"{API}/tasks/statistics"
BULK = f"{API}/tasks/bulk-update-state"

START = "2030-03-10T08:00:00Z"
END = "2030-03-10T18:00:00Z"


def assert_validation_problem(response, field):
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:flux-dao:problem:validation-error"
    assert body["status"] == 422
    fields = [error["field"] for error in body["errors"]]
    assert any(f == field or f.startswith((f"{field}[", f"{field}.")) for f in fields), body


def timerange(client, user_id, start_at=START, end_at=END):
    response = client.get(TIMERANGE, params={"user_id": user_id, "start_at": start_at, "end_at": end_at})
    assert response.status_code == 200, response.text
    return response.json()


def titles(tasks):
    return [t["title"] for t in tasks]


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def statistics(client, user_id, start_date, end_date):
    params = {"user_id": user_id, "start_date": iso(start_date), "end_date": iso(end_date)}
    response = client.get(STATISTICS, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def around_now():
    now = datetime.now(UTC)
    return now - timedelta(days=1), now + timedelta(days=1)


def tasks_with_statuses(client, user_id, statuses):
    return [factories.task(client, user_id, title=f"t{n}", status=s) for n, s in enumerate(statuses)]


def bulk(client, task_ids, new_status="done"):
    return client.post(BULK, json={"task_ids": task_ids, "new_status": new_status})


# --- by-timerange ---


def test_timerange_includes_tasks_exactly_at_both_bounds(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, title="at start", scheduled_at=START)
    factories.task(client, user_id, title="at end", scheduled_at=END)
    assert titles(timerange(client, user_id)) == ["at start", "at end"]


def test_timerange_excludes_a_task_one_second_after_the_end(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, title="inside", scheduled_at="2030-03-10T12:00:00Z")
    factories.task(client, user_id, title="after", scheduled_at="2030-03-10T18:00:01Z")
    assert titles(timerange(client, user_id)) == ["inside"]


def test_timerange_excludes_a_task_one_second_before_the_start(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, title="before", scheduled_at="2030-03-10T07:59:59Z")
    factories.task(client, user_id, title="inside", scheduled_at="2030-03-10T12:00:00Z")
    assert titles(timerange(client, user_id)) == ["inside"]


def test_timerange_is_ordered_by_scheduled_at_ascending(client):
    user_id = factories.user(client)["id"]
    for title, at in [("noon", "12:00"), ("morning", "09:30"), ("evening", "17:45"), ("late morning", "11:00")]:
        factories.task(client, user_id, title=title, scheduled_at=f"2030-03-10T{at}:00Z")
    assert titles(timerange(client, user_id)) == ["morning", "late morning", "noon", "evening"]


def test_timerange_returns_a_plain_array_of_full_task_objects(client):
    user_id = factories.user(client)["id"]
    goal_id = factories.goal(client, user_id)["id"]
    created = factories.task(
        client,
        user_id,
        goal_id=goal_id,
        description="5 km easy",
        scheduled_at="2030-03-10T10:00:00Z",
        duration_minutes=30,
        recurrence_rule="FREQ=DAILY",
    )
    assert timerange(client, user_id) == [created]


def test_timerange_never_returns_tasks_without_scheduled_at(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, title="unscheduled")
    factories.task(client, user_id, title="scheduled", scheduled_at="2030-03-10T10:00:00Z")
    assert titles(timerange(client, user_id)) == ["scheduled"]


def test_timerange_never_returns_other_users_tasks(client):
    alice, bob = factories.user(client)["id"], factories.user(client)["id"]
    factories.task(client, alice, title="alice's", scheduled_at="2030-03-10T10:00:00Z")
    factories.task(client, bob, title="bob's", scheduled_at="2030-03-10T10:00:00Z")
    assert titles(timerange(client, alice)) == ["alice's"]


def test_timerange_with_start_after_end_is_empty(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, scheduled_at="2030-03-10T10:00:00Z")
    assert timerange(client, user_id, start_at=END, end_at=START) == []


def test_timerange_for_an_unknown_user_is_empty(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, scheduled_at="2030-03-10T10:00:00Z")
    assert timerange(client, str(uuid.uuid4())) == []


def test_timerange_compares_offsets_as_instants(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, title="10Z", scheduled_at="2030-03-10T10:00:00Z")
    assert titles(timerange(client, user_id, "2030-03-10T12:00:00+02:00", "2030-03-10T12:00:00+02:00")) == ["10Z"]
    assert timerange(client, user_id, "2030-03-10T10:00:00+02:00", "2030-03-10T11:00:00+02:00") == []


def test_timerange_finds_a_task_stored_with_an_offset(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, title="local noon", scheduled_at="2030-03-10T12:00:00+05:30")
    assert titles(timerange(client, user_id, "2030-03-10T06:30:00Z", "2030-03-10T06:30:00Z")) == ["local noon"]


@pytest.mark.parametrize("missing", ["user_id", "start_at", "end_at"])
def test_timerange_without_a_required_parameter_is_rejected(client, missing):
    params = {"user_id": str(uuid.uuid4()), "start_at": START, "end_at": END}
    del params[missing]
    assert_validation_problem(client.get(TIMERANGE, params=params), missing)


@pytest.mark.parametrize(
    ("param", "value"), [("start_at", "yesterday"), ("end_at", "2030-13-40T00:00:00Z"), ("end_at", "0.5")]
)
def test_timerange_with_a_malformed_datetime_is_rejected(client, param, value):
    params = {"user_id": str(uuid.uuid4()), "start_at": START, "end_at": END, param: value}
    assert_validation_problem(client.get(TIMERANGE, params=params), param)


@pytest.mark.parametrize(("param", "value"), [("start_date", "1700000000"), ("end_date", "0.5")])
def test_statistics_take_no_number_for_a_datetime(client, param, value):
    """A number is not a datetime (a lenient conversion would read it as a Unix time)."""
    params = {"user_id": str(uuid.uuid4()), "start_date": START, "end_date": END, param: value}
    assert_validation_problem(client.get(STATISTICS, params=params), param)


def test_timerange_with_a_malformed_user_id_is_rejected(client):
    params = {"user_id": "nobody", "start_at": START, "end_at": END}
    assert_validation_problem(client.get(TIMERANGE, params=params), "user_id")


# --- statistics ---


def test_statistics_counts_by_status_and_rounds_the_rate_to_four_decimals(client):
    user_id = factories.user(client)["id"]
    tasks_with_statuses(client, user_id, ["done", "pending", "pending", "missed", "rescheduled", "cancelled"])
    assert statistics(client, user_id, *around_now()) == {
        "user_id": user_id,
        "total_tasks": 6,
        "by_status": {"done": 1, "pending": 2, "missed": 1, "rescheduled": 1, "cancelled": 1},
        "completion_rate": 0.1667,
    }


def test_statistics_two_done_of_four_is_half(client):
    user_id = factories.user(client)["id"]
    tasks_with_statuses(client, user_id, ["pending", "done", "done", "rescheduled"])
    stats = statistics(client, user_id, *around_now())
    assert stats["total_tasks"] == 4
    assert stats["by_status"] == {"pending": 1, "done": 2, "rescheduled": 1}
    assert stats["completion_rate"] == 0.5


def test_statistics_all_done_is_a_rate_of_one(client):
    user_id = factories.user(client)["id"]
    tasks_with_statuses(client, user_id, ["done", "done", "done"])
    stats = statistics(client, user_id, *around_now())
    assert stats["by_status"] == {"done": 3}
    assert stats["completion_rate"] == 1.0


def test_statistics_omits_statuses_that_do_not_occur(client):
    user_id = factories.user(client)["id"]
    tasks_with_statuses(client, user_id, ["pending", "pending"])
    stats = statistics(client, user_id, *around_now())
    assert stats["by_status"] == {"pending": 2}
    assert stats["completion_rate"] == 0.0


def test_statistics_of_a_user_without_tasks_are_zeros(client):
    user_id = factories.user(client)["id"]
    stats = statistics(client, user_id, *around_now())
    assert stats == {"user_id": user_id, "total_tasks": 0, "by_status": {}, "completion_rate": 0.0}


def test_statistics_of_an_unknown_user_are_zeros(client):
    tasks_with_statuses(client, factories.user(client)["id"], ["done"])
    unknown = str(uuid.uuid4())
    stats = statistics(client, unknown, *around_now())
    assert stats == {"user_id": unknown, "total_tasks": 0, "by_status": {}, "completion_rate": 0.0}


def test_statistics_exclude_tasks_created_outside_the_window(client):
    user_id = factories.user(client)["id"]
    tasks_with_statuses(client, user_id, ["done", "pending"])
    stats = statistics(client, user_id, datetime(2000, 1, 1, tzinfo=UTC), datetime(2001, 1, 1, tzinfo=UTC))
    assert stats == {"user_id": user_id, "total_tasks": 0, "by_status": {}, "completion_rate": 0.0}


def test_statistics_window_includes_a_task_created_exactly_at_both_bounds(client):
    user_id = factories.user(client)["id"]
    created_at = datetime.fromisoformat(factories.task(client, user_id, status="done")["created_at"])
    stats = statistics(client, user_id, created_at, created_at)
    assert stats["total_tasks"] == 1
    assert stats["by_status"] == {"done": 1}


def test_statistics_window_filters_on_created_at_not_scheduled_at(client):
    user_id = factories.user(client)["id"]
    factories.task(client, user_id, status="done", scheduled_at="2000-06-01T00:00:00Z")
    stats = statistics(client, user_id, *around_now())
    assert stats["total_tasks"] == 1
    past = statistics(client, user_id, datetime(2000, 1, 1, tzinfo=UTC), datetime(2001, 1, 1, tzinfo=UTC))
    assert past["total_tasks"] == 0


def test_statistics_ignore_other_users_tasks(client):
    alice, bob = factories.user(client)["id"], factories.user(client)["id"]
    tasks_with_statuses(client, alice, ["done", "pending"])
    tasks_with_statuses(client, bob, ["done", "done", "missed"])
    stats = statistics(client, alice, *around_now())
    assert stats["total_tasks"] == 2
    assert stats["by_status"] == {"done": 1, "pending": 1}
    assert stats["completion_rate"] == 0.5


def test_statistics_with_a_reversed_window_are_zeros(client):
    user_id = factories.user(client)["id"]
    tasks_with_statuses(client, user_id, ["done"])
    start, end = around_now()
    stats = statistics(client, user_id, end, start)
    assert stats == {"user_id": user_id, "total_tasks": 0, "by_status": {}, "completion_rate": 0.0}


@pytest.mark.parametrize("missing", ["user_id", "start_date", "end_date"])
def test_statistics_without_a_required_parameter_is_rejected(client, missing):
    params = {"user_id": str(uuid.uuid4()), "start_date": START, "end_date": END}
    del params[missing]
    assert_validation_problem(client.get(STATISTICS, params=params), missing)


def test_statistics_with_a_malformed_date_is_rejected(client):
    params = {"user_id": str(uuid.uuid4()), "start_date": "last week", "end_date": END}
    assert_validation_problem(client.get(STATISTICS, params=params), "start_date")


# --- bulk-update-state ---


def test_bulk_update_changes_the_status_of_the_listed_tasks_only(client):
    user_id = factories.user(client)["id"]
    a, b, c = (factories.task(client, user_id)["id"] for _ in range(3))
    response = bulk(client, [a, b], "missed")
    assert response.status_code == 200, response.text
    assert response.json() == {"updated_count": 2}
    statuses = {t: client.get(f"{API}/tasks/{t}").json()["status"] for t in (a, b, c)}
    assert statuses == {a: "missed", b: "missed", c: "pending"}


def test_bulk_update_changes_nothing_but_the_status(client):
    user_id = factories.user(client)["id"]
    goal_id = factories.goal(client, user_id)["id"]
    before = factories.task(
        client,
        user_id,
        goal_id=goal_id,
        description="stretch first",
        scheduled_at="2030-03-10T07:00:00Z",
        duration_minutes=45,
        trigger_type="location",
        location_trigger="gym",
        reminder_sent_at="2030-03-10T06:45:00Z",
        recurrence_rule="FREQ=WEEKLY",
        shared_with_goal_ids=[goal_id],
    )
    assert bulk(client, [before["id"]], "done").json() == {"updated_count": 1}
    after = client.get(f"{API}/tasks/{before['id']}").json()
    assert after == {**before, "status": "done", "version": 2, "updated_at": after["updated_at"]}
    assert after["updated_at"] > before["updated_at"]
    assert after["completed_at"] is None


def test_bulk_update_leaves_an_existing_completed_at_alone(client):
    user_id = factories.user(client)["id"]
    before = factories.task(client, user_id, status="done", completed_at="2030-03-10T09:00:00Z")
    assert bulk(client, [before["id"]], "pending").json() == {"updated_count": 1}
    after = client.get(f"{API}/tasks/{before['id']}").json()
    assert after == {**before, "status": "pending", "version": 2, "updated_at": after["updated_at"]}


def test_bulk_update_ignores_unknown_ids(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    response = bulk(client, [task_id, str(uuid.uuid4())], "cancelled")
    assert response.status_code == 200, response.text
    assert response.json() == {"updated_count": 1}
    assert client.get(f"{API}/tasks/{task_id}").json()["status"] == "cancelled"


def test_bulk_update_counts_a_duplicated_id_once(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    response = bulk(client, [task_id, task_id, str(uuid.uuid4())], "done")
    assert response.status_code == 200, response.text
    assert response.json() == {"updated_count": 1}


def test_bulk_update_with_only_unknown_ids_updates_nothing(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    response = bulk(client, [str(uuid.uuid4()), str(uuid.uuid4())], "done")
    assert response.status_code == 200, response.text
    assert response.json() == {"updated_count": 0}
    assert client.get(f"{API}/tasks/{task_id}").json()["status"] == "pending"


def test_bulk_update_counts_a_task_already_in_the_new_status(client):
    task_id = factories.task(client, factories.user(client)["id"], status="done")["id"]
    assert bulk(client, [task_id], "done").json() == {"updated_count": 1}


def test_bulk_update_spans_users(client):
    alice_task = factories.task(client, factories.user(client)["id"])["id"]
    bob_task = factories.task(client, factories.user(client)["id"])["id"]
    assert bulk(client, [alice_task, bob_task], "rescheduled").json() == {"updated_count": 2}


def test_bulk_update_accepts_1000_ids(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    task_ids = [task_id] + [str(uuid.uuid4()) for _ in range(999)]
    response = bulk(client, task_ids, "missed")
    assert response.status_code == 200, response.text
    assert response.json() == {"updated_count": 1}


def test_bulk_update_rejects_1001_ids(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    task_ids = [task_id] + [str(uuid.uuid4()) for _ in range(1000)]
    assert_validation_problem(bulk(client, task_ids, "missed"), "task_ids")
    assert client.get(f"{API}/tasks/{task_id}").json()["status"] == "pending"


def test_bulk_update_rejects_an_empty_id_list(client):
    assert_validation_problem(bulk(client, [], "done"), "task_ids")


def test_bulk_update_rejects_a_malformed_id(client):
    assert_validation_problem(bulk(client, ["not-a-uuid"], "done"), "task_ids")


@pytest.mark.parametrize("new_status", ["completed", "scheduled", "", None, 3])
def test_bulk_update_rejects_an_invalid_status(client, new_status):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    assert_validation_problem(bulk(client, [task_id], new_status), "new_status")
    assert client.get(f"{API}/tasks/{task_id}").json()["status"] == "pending"


def test_bulk_update_rejects_the_old_field_name_new_state(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    response = client.post(BULK, json={"task_ids": [task_id], "new_state": "done"})
    assert response.status_code == 422, response.text
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields & {"new_state", "new_status"}
    assert client.get(f"{API}/tasks/{task_id}").json()["status"] == "pending"


def test_bulk_update_rejects_an_unknown_extra_field(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    response = client.post(BULK, json={"task_ids": [task_id], "new_status": "done", "user_id": str(uuid.uuid4())})
    assert_validation_problem(response, "user_id")
    assert client.get(f"{API}/tasks/{task_id}").json()["status"] == "pending"


def test_bulk_update_without_task_ids_is_rejected(client):
    assert_validation_problem(client.post(BULK, json={"new_status": "done"}), "task_ids")
