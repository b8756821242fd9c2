import uuid

import pytest

from tests import factories
from tests.factories import API

PAGE_KEYS = {"items", "total", "page", "page_size", "has_next", "has_prev", "next_cursor"}


def get_list(client, path, **params):
    response = client.get(f"{API}/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(page):
    return [item["id"] for item in page["items"]]


def assert_validation_problem(response, field):
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:flux-dao:problem:validation-error"
    assert body["status"] == 422
    assert field in [error["field"] for error in body["errors"]], body


def make_tasks(client, count, user_id=None, **body):
    user_id = user_id or factories.user(client)["id"]
    return [factories.task(client, user_id, title=f"task {n}", **body) for n in range(count)]


# --- response shape and pagination arithmetic ---


def test_list_response_has_exactly_the_page_keys(client):
    factories.user(client)
    page = get_list(client, "users")
    assert set(page) == PAGE_KEYS


def test_list_of_empty_table_is_an_empty_first_page(client):
    page = get_list(client, "tasks")
    assert page == {
        "items": [],
        "total": 0,
        "page": 1,
        "page_size": 100,
        "has_next": False,
        "has_prev": False,
        "next_cursor": None,
    }


def test_list_without_paging_parameters_starts_at_zero_with_page_size_100(client):
    make_tasks(client, 2)
    page = get_list(client, "tasks")
    assert (page["total"], page["page"], page["page_size"]) == (2, 1, 100)
    assert (page["has_next"], page["has_prev"]) == (False, False)
    assert len(page["items"]) == 2


def test_default_limit_returns_at_most_100_rows(client):
    for n in range(101):
        factories.user(client, email=f"many{n}@example.com")
    page = get_list(client, "users")
    assert len(page["items"]) == 100
    assert page["total"] == 101
    assert page["has_next"] is True


@pytest.mark.parametrize(
    ("skip", "limit", "expected_page", "expected_count", "has_next", "has_prev"),
    [
        (0, 3, 1, 3, True, False),
        (2, 3, 1, 3, True, True),
        (3, 3, 2, 3, False, True),
        (4, 3, 2, 2, False, True),
        (5, 2, 3, 1, False, True),
        (0, 6, 1, 6, False, False),
        (0, 500, 1, 6, False, False),
    ],
)
def test_page_arithmetic_over_six_rows(client, skip, limit, expected_page, expected_count, has_next, has_prev):
    make_tasks(client, 6)
    page = get_list(client, "tasks", skip=skip, limit=limit)
    assert page["total"] == 6
    assert page["page"] == expected_page
    assert page["page_size"] == limit
    assert len(page["items"]) == expected_count
    assert page["has_next"] is has_next
    assert page["has_prev"] is has_prev


def test_skip_beyond_the_end_gives_no_items_and_the_real_total(client):
    make_tasks(client, 6)
    page = get_list(client, "tasks", skip=10, limit=3)
    assert page["items"] == []
    assert page["total"] == 6
    assert page["page"] == 4
    assert page["has_next"] is False
    assert page["has_prev"] is True


def test_limit_500_is_accepted(client):
    response = client.get(f"{API}/goals", params={"limit": 500})
    assert response.status_code == 200, response.text
    assert response.json()["page_size"] == 500


@pytest.mark.parametrize(
    ("param", "value"),
    [("limit", "0"), ("limit", "501"), ("limit", "-5"), ("limit", "abc"), ("skip", "-1"), ("skip", "abc")],
)
def test_out_of_range_or_non_integer_paging_parameter_is_rejected(client, param, value):
    response = client.get(f"{API}/tasks", params={param: value})
    assert_validation_problem(response, param)


# --- filters ---


def test_total_counts_only_the_filtered_rows(client):
    alice, bob = factories.user(client), factories.user(client)
    mine = make_tasks(client, 3, alice["id"])
    make_tasks(client, 2, bob["id"])
    page = get_list(client, "tasks", user_id=alice["id"], limit=2)
    assert page["total"] == 3
    assert page["has_next"] is True
    assert set(ids(page)) <= {t["id"] for t in mine}


@pytest.mark.parametrize("path", ["goals", "tasks", "conversations", "patterns"])
def test_user_id_filter_returns_only_that_users_rows(client, path):
    alice, bob = factories.user(client), factories.user(client)
    maker = {
        "goals": factories.goal,
        "tasks": factories.task,
        "conversations": factories.conversation,
        "patterns": factories.pattern,
    }[path]
    mine = [maker(client, alice["id"])["id"] for _ in range(2)]
    maker(client, bob["id"])
    page = get_list(client, path, user_id=alice["id"])
    assert sorted(ids(page)) == sorted(mine)
    assert page["total"] == 2


def test_user_id_filter_with_an_unknown_user_gives_an_empty_page(client):
    make_tasks(client, 2)
    page = get_list(client, "tasks", user_id=str(uuid.uuid4()))
    assert page["items"] == []
    assert page["total"] == 0


def test_status_filter_on_tasks(client):
    user_id = factories.user(client)["id"]
    done = [factories.task(client, user_id, status="done")["id"] for _ in range(2)]
    factories.task(client, user_id, status="pending")
    factories.task(client, user_id, status="missed")
    page = get_list(client, "tasks", status="done")
    assert sorted(ids(page)) == sorted(done)
    assert page["total"] == 2


def test_status_filter_on_goals(client):
    user_id = factories.user(client)["id"]
    factories.goal(client, user_id)
    abandoned = factories.goal(client, user_id, status="abandoned")["id"]
    factories.goal(client, user_id, status="pipeline")
    page = get_list(client, "goals", status="abandoned")
    assert ids(page) == [abandoned]
    assert page["total"] == 1


def test_goal_id_filter_on_tasks(client):
    user_id = factories.user(client)["id"]
    goal_a, goal_b = factories.goal(client, user_id)["id"], factories.goal(client, user_id)["id"]
    in_a = [factories.task(client, user_id, goal_id=goal_a)["id"] for _ in range(2)]
    factories.task(client, user_id, goal_id=goal_b)
    factories.task(client, user_id)
    page = get_list(client, "tasks", goal_id=goal_a)
    assert sorted(ids(page)) == sorted(in_a)
    assert page["total"] == 2


def test_parent_goal_id_filter_on_goals(client):
    user_id = factories.user(client)["id"]
    parent = factories.goal(client, user_id)["id"]
    child = factories.goal(client, user_id, parent_goal_id=parent)["id"]
    factories.goal(client, user_id)
    page = get_list(client, "goals", parent_goal_id=parent)
    assert ids(page) == [child]
    assert page["total"] == 1


def test_filters_combine_with_and(client):
    alice, bob = factories.user(client)["id"], factories.user(client)["id"]
    wanted = factories.task(client, alice, status="done")["id"]
    factories.task(client, alice, status="pending")
    factories.task(client, bob, status="done")
    page = get_list(client, "tasks", user_id=alice, status="done")
    assert ids(page) == [wanted]
    assert page["total"] == 1


def test_task_id_filter_on_notification_log(client):
    user_id = factories.user(client)["id"]
    task_a, task_b = factories.task(client, user_id)["id"], factories.task(client, user_id)["id"]
    logs_a = [factories.notification(client, task_a)["id"] for _ in range(2)]
    factories.notification(client, task_b)
    page = get_list(client, "notification-log", task_id=task_a)
    assert sorted(ids(page)) == sorted(logs_a)
    assert page["total"] == 2


def test_channel_filter_on_notification_log(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    factories.notification(client, task_id, channel="push")
    calls = [factories.notification(client, task_id, channel="call")["id"] for _ in range(2)]
    factories.notification(client, task_id, channel="whatsapp")
    page = get_list(client, "notification-log", channel="call")
    assert sorted(ids(page)) == sorted(calls)
    assert page["total"] == 2


def test_pattern_type_filter_on_patterns(client):
    user_id = factories.user(client)["id"]
    sleep = factories.pattern(client, user_id, pattern_type="sleep")["id"]
    factories.pattern(client, user_id, pattern_type="procrastination")
    factories.pattern(client, user_id)
    page = get_list(client, "patterns", pattern_type="sleep")
    assert ids(page) == [sleep]
    assert page["total"] == 1


def test_context_type_filter_on_conversations(client):
    user_id = factories.user(client)["id"]
    onboarding = factories.conversation(client, user_id, context_type="onboarding")["id"]
    factories.conversation(client, user_id, context_type="goal")
    factories.conversation(client, user_id, context_type="task")
    page = get_list(client, "conversations", context_type="onboarding")
    assert ids(page) == [onboarding]
    assert page["total"] == 1


@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        ("tasks", "status", "scheduled"),
        ("goals", "status", "finished"),
        ("notification-log", "channel", "sms"),
        ("conversations", "context_type", "chat"),
    ],
)
def test_bad_enum_value_in_a_filter_is_rejected(client, path, param, value):
    response = client.get(f"{API}/{path}", params={param: value})
    assert_validation_problem(response, param)


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("tasks", "user_id"),
        ("tasks", "goal_id"),
        ("goals", "user_id"),
        ("patterns", "user_id"),
        ("conversations", "user_id"),
        ("notification-log", "task_id"),
    ],
)
def test_malformed_uuid_in_a_filter_is_rejected(client, path, param):
    response = client.get(f"{API}/{path}", params={param: "not-a-uuid"})
    assert_validation_problem(response, param)


# --- ordering ---


def test_users_are_listed_newest_first(client):
    created = [factories.user(client)["id"] for _ in range(4)]
    assert ids(get_list(client, "users")) == created[::-1]


@pytest.mark.parametrize("path", ["goals", "tasks", "conversations"])
def test_owned_rows_are_listed_newest_first(client, path):
    user_id = factories.user(client)["id"]
    maker = {"goals": factories.goal, "tasks": factories.task, "conversations": factories.conversation}[path]
    created = [maker(client, user_id)["id"] for _ in range(4)]
    assert ids(get_list(client, path)) == created[::-1]


def test_patterns_are_ordered_by_last_update_newest_first(client):
    user_id = factories.user(client)["id"]
    first, second, third = (factories.pattern(client, user_id, pattern_type=f"p{n}")["id"] for n in range(3))
    assert ids(get_list(client, "patterns")) == [third, second, first]


def test_patching_a_pattern_moves_it_to_the_top(client):
    user_id = factories.user(client)["id"]
    first, second, third = (factories.pattern(client, user_id, pattern_type=f"p{n}")["id"] for n in range(3))
    response = client.patch(f"{API}/patterns/{first}", json={"confidence": 0.9})
    assert response.status_code == 200, response.text
    assert ids(get_list(client, "patterns")) == [first, third, second]


def test_notification_log_is_ordered_by_sent_at_newest_first_with_unsent_last(client):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    unsent_a = factories.notification(client, task_id)["id"]
    jan_1 = factories.notification(client, task_id, sent_at="2030-01-01T09:00:00Z")["id"]
    jan_3 = factories.notification(client, task_id, sent_at="2030-01-03T09:00:00Z")["id"]
    unsent_b = factories.notification(client, task_id)["id"]
    jan_2 = factories.notification(client, task_id, sent_at="2030-01-02T09:00:00Z")["id"]
    listed = ids(get_list(client, "notification-log"))
    assert listed[:3] == [jan_3, jan_2, jan_1]
    assert set(listed[3:]) == {unsent_a, unsent_b}


# --- walking pages ---


def walk(client, path, limit, **params):
    seen, skip = [], 0
    while True:
        page = get_list(client, path, skip=skip, limit=limit, **params)
        seen.extend(ids(page))
        if not page["has_next"]:
            return seen
        skip += limit


def test_pages_never_overlap_and_cover_all_rows(client):
    created = {t["id"] for t in make_tasks(client, 7)}
    seen = walk(client, "tasks", limit=2)
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created


def test_walking_pages_gives_the_same_order_as_one_big_page(client):
    make_tasks(client, 7)
    assert walk(client, "tasks", limit=2) == ids(get_list(client, "tasks", limit=500))


@pytest.mark.parametrize("sent_at", [None, "2030-05-05T05:05:05Z"])
def test_pages_never_overlap_when_every_row_has_the_same_sort_key(client, sent_at):
    task_id = factories.task(client, factories.user(client)["id"])["id"]
    created = {factories.notification(client, task_id, sent_at=sent_at)["id"] for _ in range(7)}
    seen = walk(client, "notification-log", limit=2)
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created


def test_count_false_skips_the_total_and_still_says_whether_more_rows_follow(client):
    make_tasks(client, 5)
    first = get_list(client, "tasks", limit=2, count="false")
    assert first["total"] is None
    assert len(first["items"]) == 2
    assert first["has_next"] is True
    last = get_list(client, "tasks", limit=2, skip=4, count="false")
    assert last["total"] is None
    assert len(last["items"]) == 1
    assert last["has_next"] is False


def test_count_false_returns_the_same_rows_as_a_counted_page(client):
    make_tasks(client, 5)
    counted = get_list(client, "tasks", limit=3, skip=1)
    uncounted = get_list(client, "tasks", limit=3, skip=1, count="false")
    assert ids(uncounted) == ids(counted)
    assert counted["has_next"] == uncounted["has_next"] is True


def test_exactly_full_last_page_without_count_has_no_next(client):
    make_tasks(client, 4)
    page = get_list(client, "tasks", limit=2, skip=2, count="false")
    assert len(page["items"]) == 2
    assert page["has_next"] is False
