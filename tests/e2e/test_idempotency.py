"""``Idempotency-Key`` on every write route, both backends: a repeat replays the first answer and writes nothing.

The records table is not emptied between tests (``wipe`` empties the manifest's tables), so every test uses keys of
its own. The states a client cannot produce at will (a request still running, a record past its expiry) are set up
by changing the stored record of a real first request through the app's own engine.
"""

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flux_dao.config import Settings
from flux_dao.http.app import create_app
from flux_dao.http.plugin import FluxDaoPlugin
from flux_dao.schema.system import IDEMPOTENCY_TABLE
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER
from tests.factories import API
from tests.problems import assert_problem

OTHER_KEY = "other-service-key-0123456789"
DEFAULT_KEY_NAME = "service-key-1"
"""The name ``SERVICE_API_KEYS``' first key gets (flux_dao/http/keys.py): the test clients' key."""
UNKNOWN_ID = "01900000-0000-7000-8000-0000000000ff"


def new_key() -> str:
    return f"idem-{uuid.uuid4()}"


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


def assert_replay(first: Any, repeat: Any) -> None:
    """``repeat`` is ``first`` again, byte for byte, marked as a replay."""
    assert repeat.status_code == first.status_code, repeat.text
    assert repeat.content == first.content
    for name in ("location", "etag", "content-type"):
        assert repeat.headers.get(name) == first.headers.get(name), name
    assert "idempotent-replayed" not in first.headers
    assert repeat.headers["idempotent-replayed"] == "true"


def task_titles(client: TestClient, user_id: str) -> list[str]:  # type: ignore[type-arg]
    page = client.get(f"{API}/tasks", params={"user_id": user_id, "limit": 100})
    assert page.status_code == 200, page.text
    assert page.json()["total"] == len(page.json()["items"])
    return sorted(item["title"] for item in page.json()["items"])


def user_count(client: TestClient, email: str) -> int:  # type: ignore[type-arg]
    page = client.get(f"{API}/users", params={"email": email})
    assert page.status_code == 200, page.text
    return int(page.json()["total"])


def change_record(client: TestClient, key: str, key_name: str = DEFAULT_KEY_NAME, **values: Any) -> None:  # type: ignore[type-arg]
    """Set columns of the stored record of ``key`` through the app's own engine (either backend)."""
    plugin = client.app.plugins.get(FluxDaoPlugin)
    table = plugin.resources.metadata.tables[IDEMPOTENCY_TABLE]
    statement = sa.update(table).where(table.c.key_name == key_name, table.c.key == key).values(**values)

    async def run() -> int:
        async with plugin.db.writing() as conn:
            changed: int = await conn.rowcount(statement, {})
            return changed

    assert client.blocking_portal is not None
    assert client.blocking_portal.call(run) == 1, f"no record of {key!r} for {key_name!r}"


def stored_keys(client: TestClient, *keys: str) -> set[str]:  # type: ignore[type-arg]
    """Which of ``keys`` have a record (for the default key name)."""
    plugin = client.app.plugins.get(FluxDaoPlugin)
    table = plugin.resources.metadata.tables[IDEMPOTENCY_TABLE]
    statement = sa.select(table.c.key).where(table.c.key_name == DEFAULT_KEY_NAME, table.c.key.in_(keys))

    async def run() -> set[str]:
        async with plugin.db.reading() as conn:
            return {str(row[0]) for row in await conn.all(statement, {})}

    assert client.blocking_portal is not None
    return client.blocking_portal.call(run)


# --- POST: replay, reuse --------------------------------------------------------------------------------------------


def test_a_repeated_post_replays_the_first_answer_and_stores_one_row(client):
    user = factories.user(client)
    key = new_key()
    body = {"user_id": user["id"], "title": "once"}
    first = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    assert first.headers["location"].endswith(f"/tasks/{first.json()['id']}")
    assert first.headers["etag"] == '"1"'
    for _ in range(3):
        assert_replay(first, client.post(f"{API}/tasks", json=body, headers=keyed(key)))
    assert task_titles(client, user["id"]) == ["once"]
    # the stored row is the one the answer (and every replay) describes
    assert client.get(f"{API}/tasks/{first.json()['id']}").json() == first.json()


def test_the_same_body_without_a_key_or_with_another_key_is_another_write(client):
    user = factories.user(client)
    body = {"user_id": user["id"], "title": "same"}
    ids = {
        client.post(f"{API}/tasks", json=body, headers=keyed(new_key())).json()["id"],
        client.post(f"{API}/tasks", json=body, headers=keyed(new_key())).json()["id"],
        client.post(f"{API}/tasks", json=body).json()["id"],
    }
    assert len(ids) == 3
    assert task_titles(client, user["id"]) == ["same"] * 3


def test_keys_are_case_sensitive(client):
    user = factories.user(client)
    key = f"Key-{uuid.uuid4().hex}"
    body = {"user_id": user["id"], "title": "case"}
    upper = client.post(f"{API}/tasks", json=body, headers=keyed(key.upper()))
    lower = client.post(f"{API}/tasks", json=body, headers=keyed(key.lower()))
    assert (upper.status_code, lower.status_code) == (201, 201)
    assert "idempotent-replayed" not in lower.headers
    assert len(task_titles(client, user["id"])) == 2


def test_the_same_key_with_another_body_is_422_reused_and_writes_nothing(client):
    user = factories.user(client)
    key = new_key()
    first = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "first"}, headers=keyed(key))
    assert first.status_code == 201, first.text
    other = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "second"}, headers=keyed(key))
    problem = assert_problem(other, 422, "idempotency-key-reused")
    assert key in problem["detail"]
    assert "idempotent-replayed" not in other.headers
    # the body's bytes are what counts: the same object sent with other spacing is another request too
    respaced = client.post(
        f"{API}/tasks",
        content=f'{{"user_id": "{user["id"]}",   "title": "first"}}',
        headers=keyed(key, **{"Content-Type": "application/json"}),
    )
    assert_problem(respaced, 422, "idempotency-key-reused")
    assert task_titles(client, user["id"]) == ["first"]
    # the key still holds its first answer
    assert_replay(
        first, client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "first"}, headers=keyed(key))
    )


def test_the_same_key_on_another_route_or_method_is_422_reused(client):
    user = factories.user(client)
    key = new_key()
    first = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "plan"}, headers=keyed(key))
    assert first.status_code == 201, first.text
    task_id = first.json()["id"]
    goal = client.post(f"{API}/goals", json={"user_id": user["id"], "title": "plan"}, headers=keyed(key))
    assert_problem(goal, 422, "idempotency-key-reused")
    patched = client.patch(f"{API}/tasks/{task_id}", json={"title": "changed"}, headers=keyed(key))
    assert_problem(patched, 422, "idempotency-key-reused")
    deleted = client.delete(f"{API}/tasks/{task_id}", headers=keyed(key))
    assert_problem(deleted, 422, "idempotency-key-reused")
    bulk = client.post(f"{API}/tasks/bulk", json=[{"user_id": user["id"], "title": "plan"}], headers=keyed(key))
    assert_problem(bulk, 422, "idempotency-key-reused")
    # nothing of those ran
    assert client.get(f"{API}/goals", params={"user_id": user["id"]}).json()["total"] == 0
    assert client.get(f"{API}/tasks/{task_id}").json() == first.json()
    assert task_titles(client, user["id"]) == ["plan"]


def test_the_same_key_with_another_query_string_is_422_reused(client):
    key = new_key()
    email = f"{uuid.uuid4().hex}@example.com"
    first = client.post(f"{API}/users", json={"email": email}, headers=keyed(key))
    assert first.status_code == 201, first.text
    upsert = client.post(f"{API}/users", params={"on_conflict": "email"}, json={"email": email}, headers=keyed(key))
    assert_problem(upsert, 422, "idempotency-key-reused")
    assert client.get(f"{API}/users/{first.json()['id']}").json()["version"] == 1


def test_an_upsert_replays_its_first_answer_instead_of_updating_again(client):
    """Without a key a repeated upsert updates the row again (200, version 2); with one it replays the 201."""
    email = f"{uuid.uuid4().hex}@example.com"
    key = new_key()
    body = {"email": email, "onboarded": True}
    first = client.post(f"{API}/users", params={"on_conflict": "email"}, json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    repeat = client.post(f"{API}/users", params={"on_conflict": "email"}, json=body, headers=keyed(key))
    assert_replay(first, repeat)
    assert client.get(f"{API}/users/{first.json()['id']}").json()["version"] == 1
    assert user_count(client, email) == 1
    unkeyed = client.post(f"{API}/users", params={"on_conflict": "email"}, json=body)
    assert unkeyed.status_code == 200, unkeyed.text
    assert unkeyed.json()["version"] == 2


# --- keys belong to the service key that sent them -----------------------------------------------------------------


@pytest.fixture(scope="module")
def two_keys(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """Another app on the same database accepting two full-access keys: API_KEY (``service-key-1``, as the
    ``client`` fixture) and OTHER_KEY (``service-key-2``)."""
    with TestClient(create_app(replace(settings, api_keys=(API_KEY, OTHER_KEY))), raise_server_exceptions=False) as app:
        yield app


def test_the_same_key_sent_by_two_service_keys_is_two_requests(client, two_keys):
    user = factories.user(client)
    key = new_key()
    body = {"user_id": user["id"], "title": "mine"}
    mine = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    theirs = two_keys.post(f"{API}/tasks", json=body, headers=keyed(key, **{KEY_HEADER: OTHER_KEY}))
    assert (mine.status_code, theirs.status_code) == (201, 201), theirs.text
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    # another body under the other service key is no reuse either
    other_body = {"user_id": user["id"], "title": "theirs"}
    not_reused = two_keys.post(f"{API}/tasks", json=other_body, headers=keyed(new_key(), **{KEY_HEADER: OTHER_KEY}))
    assert not_reused.status_code == 201, not_reused.text
    # each service key replays its own answer; the default key through the second app is still service-key-1
    assert_replay(mine, two_keys.post(f"{API}/tasks", json=body, headers=keyed(key, **{KEY_HEADER: API_KEY})))
    assert_replay(theirs, two_keys.post(f"{API}/tasks", json=body, headers=keyed(key, **{KEY_HEADER: OTHER_KEY})))
    assert task_titles(client, user["id"]) == ["mine", "mine", "theirs"]


def test_one_service_key_cannot_reuse_or_see_anothers_key(client, two_keys):
    user = factories.user(client)
    key = new_key()
    mine = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "a"}, headers=keyed(key))
    assert mine.status_code == 201
    theirs = two_keys.post(
        f"{API}/tasks", json={"user_id": user["id"], "title": "b"}, headers=keyed(key, **{KEY_HEADER: OTHER_KEY})
    )
    assert theirs.status_code == 201, theirs.text  # not 422: the key is only taken for service-key-1
    assert task_titles(client, user["id"]) == ["a", "b"]


# --- PATCH and DELETE -----------------------------------------------------------------------------------------------


def test_a_repeated_patch_replays_and_changes_nothing_more(client):
    user = factories.user(client)
    task = factories.task(client, user["id"], title="v1")
    key = new_key()
    first = client.patch(f"{API}/tasks/{task['id']}", json={"title": "v2"}, headers=keyed(key))
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.headers["etag"]) == (2, '"2"')
    assert_replay(first, client.patch(f"{API}/tasks/{task['id']}", json={"title": "v2"}, headers=keyed(key)))
    assert client.get(f"{API}/tasks/{task['id']}").json()["version"] == 2
    # a later change by someone else is not undone by a late repeat: the repeat only replays
    later = client.patch(f"{API}/tasks/{task['id']}", json={"title": "v3"})
    assert later.json()["version"] == 3
    assert_replay(first, client.patch(f"{API}/tasks/{task['id']}", json={"title": "v2"}, headers=keyed(key)))
    stored = client.get(f"{API}/tasks/{task['id']}").json()
    assert (stored["title"], stored["version"]) == ("v3", 3)


def test_a_conditional_patch_repeated_replays_its_200_not_a_412(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    key = new_key()
    headers = keyed(key, **{"If-Match": '"1"'})
    first = client.patch(f"{API}/tasks/{task['id']}", json={"title": "once"}, headers=headers)
    assert first.status_code == 200, first.text
    # without the key, the same request is now stale
    assert_problem(
        client.patch(f"{API}/tasks/{task['id']}", json={"title": "once"}, headers={"If-Match": '"1"'}),
        412,
        "precondition-failed",
    )
    assert_replay(first, client.patch(f"{API}/tasks/{task['id']}", json={"title": "once"}, headers=headers))
    assert client.get(f"{API}/tasks/{task['id']}").json()["version"] == 2


def test_a_repeated_delete_replays_its_204_not_a_404(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    key = new_key()
    first = client.delete(f"{API}/tasks/{task['id']}", headers=keyed(key))
    assert first.status_code == 204, first.text
    repeat = client.delete(f"{API}/tasks/{task['id']}", headers=keyed(key))
    assert repeat.status_code == 204
    assert repeat.content == b""
    assert repeat.headers["idempotent-replayed"] == "true"
    assert_problem(client.get(f"{API}/tasks/{task['id']}"), 404, "not-found")
    # without the key, deleting it again is what it always was
    assert_problem(client.delete(f"{API}/tasks/{task['id']}"), 404, "not-found")


# --- refusals are answers too -------------------------------------------------------------------------------------


def test_a_refused_create_is_replayed_even_once_it_would_succeed(client):
    email = f"{uuid.uuid4().hex}@example.com"
    taken = factories.user(client, email=email)
    key = new_key()
    first = client.post(f"{API}/users", json={"email": email}, headers=keyed(key))
    assert_problem(first, 409, "duplicate")
    # the obstacle goes away; the repeat still gets the first answer and creates nothing
    assert client.delete(f"{API}/users/{taken['id']}").status_code == 204
    repeat = client.post(f"{API}/users", json={"email": email}, headers=keyed(key))
    assert_replay(first, repeat)
    assert_problem(repeat, 409, "duplicate")
    assert user_count(client, email) == 0


def test_a_stale_if_match_refusal_is_replayed_with_the_version_it_saw(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    assert client.patch(f"{API}/tasks/{task['id']}", json={"title": "moved on"}).status_code == 200
    key = new_key()
    headers = keyed(key, **{"If-Match": '"1"'})
    first = client.patch(f"{API}/tasks/{task['id']}", json={"title": "stale"}, headers=headers)
    assert assert_problem(first, 412, "precondition-failed")["version"] == 2
    assert client.patch(f"{API}/tasks/{task['id']}", json={"title": "again"}).json()["version"] == 3
    repeat = client.patch(f"{API}/tasks/{task['id']}", json={"title": "stale"}, headers=headers)
    assert_replay(first, repeat)
    assert repeat.json()["version"] == 2  # the first answer, not a new look at the row
    assert client.get(f"{API}/tasks/{task['id']}").json()["title"] == "again"


def test_a_404_is_replayed(client):
    key = new_key()
    first = client.patch(f"{API}/tasks/{UNKNOWN_ID}", json={"title": "x"}, headers=keyed(key))
    assert_problem(first, 404, "not-found")
    assert_replay(first, client.patch(f"{API}/tasks/{UNKNOWN_ID}", json={"title": "x"}, headers=keyed(key)))


def test_a_request_refused_before_it_runs_is_not_kept(client):
    """A body that does not validate is refused before the key is looked at: fixing the body and sending it with
    the same key runs it."""
    user = factories.user(client)
    key = new_key()
    bad = client.post(f"{API}/tasks", json={"user_id": user["id"]}, headers=keyed(key))
    assert_problem(bad, 422, "validation-error")
    assert stored_keys(client, key) == set()
    good = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "fixed"}, headers=keyed(key))
    assert good.status_code == 201, good.text


# --- the key itself -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("a\x01b", id="control-char"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x7fb", id="del"),
        pytest.param(" leading", id="leading-space"),
        pytest.param("trailing ", id="trailing-space"),
        pytest.param("caf\u00e9".encode(), id="non-ascii"),
    ],
)
def test_a_malformed_key_is_422_naming_the_header_and_writes_nothing(client, key):
    user = factories.user(client)
    headers = {"Idempotency-Key": key} if isinstance(key, str) else [("Idempotency-Key", key)]
    response = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "never"}, headers=headers)
    problem = assert_problem(response, 422, "validation-error")
    assert [error["field"] for error in problem["errors"]] == ["Idempotency-Key"]
    assert task_titles(client, user["id"]) == []


@pytest.mark.parametrize(
    "route",
    ["patch", "delete", "bulk", "batch"],
)
def test_a_malformed_key_is_refused_on_every_write_route(client, route):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    headers = {"Idempotency-Key": " bad"}
    calls = {
        "patch": lambda: client.patch(f"{API}/tasks/{task['id']}", json={"title": "x"}, headers=headers),
        "delete": lambda: client.delete(f"{API}/tasks/{task['id']}", headers=headers),
        "bulk": lambda: client.post(f"{API}/tasks/bulk", json=[{"user_id": user["id"], "title": "x"}], headers=headers),
        "batch": lambda: client.post(
            f"{API}/batch",
            json={"operations": [{"op": "delete", "resource": "tasks", "id": task["id"]}]},
            headers=headers,
        ),
    }
    problem = assert_problem(calls[route](), 422, "validation-error")
    assert [error["field"] for error in problem["errors"]] == ["Idempotency-Key"]
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: uuid.uuid4().hex + "k" * 223, id="255-chars"),
        pytest.param(lambda: "Z", id="1-char"),  # the only test using it; each session has fresh databases
        pytest.param(lambda: "~!#$%&'*+-.^_`|:;<=>?@[]{}()/\\," + uuid.uuid4().hex, id="punctuation"),
        pytest.param(lambda: f"with inner  spaces {uuid.uuid4()}", id="inner-spaces"),
        pytest.param(lambda: f'"{uuid.uuid4()}"', id="quoted"),
    ],
)
def test_any_printable_key_of_1_to_255_characters_is_accepted(client, make_key):
    key = make_key()
    user = factories.user(client)
    body = {"user_id": user["id"], "title": "ok"}
    first = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    assert_replay(first, client.post(f"{API}/tasks", json=body, headers=keyed(key)))


# --- a key whose first request still runs, and expired keys ---------------------------------------------------------


def test_a_repeat_while_the_first_still_runs_is_409_in_progress_with_retry_after(client):
    """The record of a first request is put back in the state it has while that request runs (claimed, no answer
    yet, started now): a repeat is told to come back, and nothing is written."""
    user = factories.user(client)
    key = new_key()
    body = {"user_id": user["id"], "title": "slow"}
    first = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    change_record(client, key, status=None, headers=None, body=None, started_at=datetime.now(UTC))
    repeat = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    problem = assert_problem(repeat, 409, "idempotency-in-progress")
    assert key in problem["detail"]
    assert int(repeat.headers["retry-after"]) >= 1
    assert "idempotent-replayed" not in repeat.headers
    # another request with that key is told it is another request, running or not
    other = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "other"}, headers=keyed(key))
    assert_problem(other, 422, "idempotency-key-reused")
    assert task_titles(client, user["id"]) == ["slow"]


def test_a_claim_left_without_answer_past_its_lease_is_taken_over(client):
    """A claim whose request never answered (its worker died: its write rolled back) stops blocking the key once
    its 60 s lease has passed: the repeat runs for real, and later repeats replay that run."""
    user = factories.user(client)
    key = new_key()
    body = {"user_id": user["id"], "title": "retried"}
    first = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    # as if the first had died before committing: no row, a claim started 61 s ago
    assert client.delete(f"{API}/tasks/{first.json()['id']}").status_code == 204
    started = datetime.now(UTC) - timedelta(seconds=61)
    change_record(client, key, status=None, headers=None, body=None, started_at=started)
    rerun = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    assert rerun.status_code == 201, rerun.text
    assert "idempotent-replayed" not in rerun.headers
    assert rerun.json()["id"] != first.json()["id"]
    assert_replay(rerun, client.post(f"{API}/tasks", json=body, headers=keyed(key)))
    assert task_titles(client, user["id"]) == ["retried"]


def test_an_expired_record_is_claimed_afresh(client):
    user = factories.user(client)
    key = new_key()
    body = {"user_id": user["id"], "title": "daily"}
    first = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    change_record(client, key, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    again = client.post(f"{API}/tasks", json=body, headers=keyed(key))
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert_replay(again, client.post(f"{API}/tasks", json=body, headers=keyed(key)))
    assert task_titles(client, user["id"]) == ["daily", "daily"]


def test_an_expired_record_of_another_request_does_not_block_the_key(client):
    user = factories.user(client)
    key = new_key()
    first = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "old"}, headers=keyed(key))
    assert first.status_code == 201, first.text
    change_record(client, key, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    reused = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "new"}, headers=keyed(key))
    assert reused.status_code == 201, reused.text
    assert task_titles(client, user["id"]) == ["new", "old"]


def test_purge_deletes_the_records_past_their_expiry_only(client):
    user = factories.user(client)
    expired, live = new_key(), new_key()
    for key in (expired, live):
        response = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": key}, headers=keyed(key))
        assert response.status_code == 201, response.text
    change_record(client, expired, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    plugin = client.app.plugins.get(FluxDaoPlugin)
    assert client.blocking_portal is not None
    assert client.blocking_portal.call(plugin.idempotency.records.purge) >= 1
    assert stored_keys(client, expired, live) == {live}
    assert client.blocking_portal.call(plugin.idempotency.records.purge) == 0
    # the purged key is free; the live one still replays
    assert (
        client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "x"}, headers=keyed(expired)).status_code
        == 201
    )
    repeat = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": live}, headers=keyed(live))
    assert repeat.headers["idempotent-replayed"] == "true"


def test_records_expire_after_the_configured_ttl(client, settings):
    """An app with FLUX_DAO_IDEMPOTENCY_TTL of 2 hours stores records expiring 2 hours after they were claimed."""
    with TestClient(create_app(replace(settings, idempotency_ttl=7200.0)), raise_server_exceptions=False) as app:
        app.headers[KEY_HEADER] = API_KEY
        user = factories.user(app)
        key = new_key()
        before = datetime.now(UTC)
        response = app.post(f"{API}/tasks", json={"user_id": user["id"], "title": "ttl"}, headers=keyed(key))
        after = datetime.now(UTC)
        assert response.status_code == 201, response.text
        plugin = app.app.plugins.get(FluxDaoPlugin)
        table = plugin.resources.metadata.tables[IDEMPOTENCY_TABLE]
        statement = sa.select(table.c.started_at, table.c.expires_at).where(table.c.key == key)

        async def run() -> Any:
            async with plugin.db.reading() as conn:
                return await conn.first(statement, {})

        assert app.blocking_portal is not None
        started_at, expires_at = app.blocking_portal.call(run)
        assert before - timedelta(seconds=1) <= started_at <= after + timedelta(seconds=1)
        assert expires_at - started_at == timedelta(hours=2)


# --- bulk create and batch ------------------------------------------------------------------------------------------


def test_a_repeated_bulk_create_replays_and_stores_the_rows_once(client):
    user = factories.user(client)
    key = new_key()
    rows = [{"user_id": user["id"], "title": f"bulk-{n}"} for n in range(5)]
    first = client.post(f"{API}/tasks/bulk", json=rows, headers=keyed(key))
    assert first.status_code == 201, first.text
    assert [row["title"] for row in first.json()] == [f"bulk-{n}" for n in range(5)]
    assert_replay(first, client.post(f"{API}/tasks/bulk", json=rows, headers=keyed(key)))
    assert task_titles(client, user["id"]) == [f"bulk-{n}" for n in range(5)]
    assert_problem(client.post(f"{API}/tasks/bulk", json=rows[:4], headers=keyed(key)), 422, "idempotency-key-reused")


def test_a_refused_bulk_create_is_replayed(client):
    email = f"{uuid.uuid4().hex}@example.com"
    taken = factories.user(client, email=email)
    key = new_key()
    rows = [{"email": f"{uuid.uuid4().hex}@example.com"}, {"email": email}]
    first = client.post(f"{API}/users/bulk", json=rows, headers=keyed(key))
    assert_problem(first, 409, "duplicate")
    assert client.delete(f"{API}/users/{taken['id']}").status_code == 204
    assert_replay(first, client.post(f"{API}/users/bulk", json=rows, headers=keyed(key)))
    assert user_count(client, email) == 0
    assert user_count(client, rows[0]["email"]) == 0


def test_a_repeated_batch_replays_and_applies_once(client):
    email = f"{uuid.uuid4().hex}@example.com"
    key = new_key()
    batch = {
        "operations": [
            {"op": "create", "resource": "users", "ref": "u", "body": {"email": email}},
            {"op": "create", "resource": "goals", "ref": "g", "body": {"user_id": "$u.id", "title": "Learn"}},
            {"op": "create", "resource": "tasks", "body": {"user_id": "$u.id", "goal_id": "$g.id", "title": "Read"}},
        ]
    }
    first = client.post(f"{API}/batch", json=batch, headers=keyed(key))
    assert first.status_code == 200, first.text
    assert [result["status"] for result in first.json()["results"]] == [201, 201, 201]
    assert_replay(first, client.post(f"{API}/batch", json=batch, headers=keyed(key)))
    assert user_count(client, email) == 1
    user_id = first.json()["results"][0]["row"]["id"]
    assert task_titles(client, user_id) == ["Read"]
    assert client.get(f"{API}/goals", params={"user_id": user_id}).json()["total"] == 1


def test_a_failed_batch_is_replayed_with_its_operation_index(client):
    email = f"{uuid.uuid4().hex}@example.com"
    key = new_key()
    batch = {
        "operations": [
            {"op": "create", "resource": "users", "ref": "u", "body": {"email": email}},
            {"op": "update", "resource": "tasks", "id": UNKNOWN_ID, "body": {"title": "x"}},
        ]
    }
    first = client.post(f"{API}/batch", json=batch, headers=keyed(key))
    assert assert_problem(first, 404, "not-found")["operation"] == 1
    repeat = client.post(f"{API}/batch", json=batch, headers=keyed(key))
    assert_replay(first, repeat)
    assert repeat.json()["operation"] == 1
    assert user_count(client, email) == 0
