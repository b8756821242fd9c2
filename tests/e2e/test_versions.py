"""Row versions and conditional requests (RFC 9110 §13), issue #11, on both backends.

Every row carries ``version`` (1 on create, +1 on every change) and ``updated_at``; GET, POST and PATCH answers tag
the row ``ETag: "<version>"``. ``If-None-Match`` on GET answers 304; ``If-Match`` on PATCH and DELETE applies the
write only at that version (else 412 with the current one). A resource declared ``concurrency: required`` refuses a
PATCH or DELETE without ``If-Match`` (428). The race test at the end fires 20 PATCHes at one version through a live
``flux-dao serve`` with two workers: exactly one wins.
"""

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from flux_dao.http.app import create_app
from flux_dao.store.migrations import make_migration, upgrade
from tests import factories
from tests.conftest import API_KEY, BACKENDS, KEY_HEADER, fresh_database, make_settings
from tests.factories import API
from tests.live import live_server
from tests.problems import assert_problem

MISSING_ID = "01900000-0000-7000-8000-0000000000ee"


def task(client: Any, **body: Any) -> dict[str, Any]:
    return factories.task(client, factories.user(client)["id"], **body)


def url(row: dict[str, Any], resource: str = "tasks") -> str:
    return f"{API}/{resource}/{row['id']}"


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def stored(client: Any, row: dict[str, Any], resource: str = "tasks") -> dict[str, Any]:
    response = client.get(url(row, resource))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_if_match_invalid(response: Any) -> None:
    body = assert_problem(response, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["If-Match"], body


# --- version and updated_at -------------------------------------------------------------------------------------


def test_create_answers_version_1_and_etag_1(client: Any) -> None:
    user = factories.user(client)
    response = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "Read"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1
    assert response.headers["etag"] == '"1"'
    assert body["updated_at"] == body["created_at"]


MAKERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "users": factories.user,
    "goals": lambda c: factories.goal(c, factories.user(c)["id"]),
    "conversations": lambda c: factories.conversation(c, factories.user(c)["id"]),
    "notification-log": lambda c: factories.notification(c, task(c)["id"]),
}


@pytest.mark.parametrize("resource", MAKERS)
def test_every_resource_gets_a_version_and_updated_at(client: Any, resource: str) -> None:
    row = MAKERS[resource](client)
    assert row["version"] == 1
    assert "updated_at" in row
    response = client.get(url(row, resource))
    assert response.headers["etag"] == '"1"'
    assert response.json() == row


def test_every_patch_adds_one_to_version_and_moves_updated_at(client: Any) -> None:
    row = task(client)
    previous = row
    for n in range(2, 5):
        response = client.patch(url(row), json={"title": f"take {n}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == n
        assert response.headers["etag"] == f'"{n}"'
        assert instant(body["updated_at"]) > instant(previous["updated_at"])
        assert body["created_at"] == row["created_at"]
        previous = body
    assert stored(client, row) == previous


def test_an_empty_patch_changes_neither_version_nor_updated_at(client: Any) -> None:
    row = task(client)
    client.patch(url(row), json={"title": "once"})
    before = stored(client, row)
    response = client.patch(url(row), json={})
    assert response.status_code == 200, response.text
    assert response.json() == before
    assert response.headers["etag"] == '"2"'
    assert stored(client, row) == before


def test_the_bulk_update_query_bumps_the_version_of_the_rows_it_changes(client: Any) -> None:
    user_id = factories.user(client)["id"]
    a, b, untouched = (factories.task(client, user_id) for _ in range(3))
    client.patch(url(b), json={"title": "b2"})  # b at version 2
    response = client.post(
        f"{API}/tasks/bulk-update-state", json={"task_ids": [a["id"], b["id"]], "new_status": "done"}
    )
    assert response.status_code == 200, response.text
    after = {row["id"]: stored(client, row) for row in (a, b, untouched)}
    assert (after[a["id"]]["version"], after[b["id"]]["version"], after[untouched["id"]]["version"]) == (2, 3, 1)
    assert instant(after[a["id"]]["updated_at"]) > instant(a["updated_at"])
    assert after[untouched["id"]] == untouched
    assert client.get(url(a)).headers["etag"] == '"2"'
    stale = client.patch(url(a), json={"title": "x"}, headers={"If-Match": '"1"'})
    assert assert_problem(stale, 412, "precondition-failed")["version"] == 2


# --- GET: ETag and If-None-Match -----------------------------------------------------------------------------------


def test_get_answers_the_version_as_etag(client: Any) -> None:
    row = task(client)
    assert client.get(url(row)).headers["etag"] == '"1"'
    client.patch(url(row), json={"title": "again"})
    assert client.get(url(row)).headers["etag"] == '"2"'


def test_if_none_match_with_the_current_version_is_304_with_no_body(client: Any) -> None:
    row = task(client)
    response = client.get(url(row), headers={"If-None-Match": '"1"'})
    assert response.status_code == 304, response.text
    assert response.content == b""
    assert response.headers["etag"] == '"1"'


@pytest.mark.parametrize("header", ['"7", "1"', 'W/"1"', "*"])
def test_if_none_match_lists_weak_tags_and_star_match_the_current_version(client: Any, header: str) -> None:
    row = task(client)
    response = client.get(url(row), headers={"If-None-Match": header})
    assert response.status_code == 304, response.text
    assert response.content == b""


def test_if_none_match_with_a_stale_version_is_200_with_the_row(client: Any) -> None:
    row = task(client)
    changed = client.patch(url(row), json={"title": "newer"}).json()
    response = client.get(url(row), headers={"If-None-Match": '"1"'})
    assert response.status_code == 200, response.text
    assert response.json() == changed
    assert response.headers["etag"] == '"2"'


def test_fields_still_tag_the_row(client: Any) -> None:
    row = task(client)
    response = client.get(url(row), params={"fields": "title"})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'


def test_a_get_that_embeds_other_rows_has_no_etag_and_ignores_if_none_match(client: Any) -> None:
    row = task(client)
    response = client.get(url(row), params={"include": "user"}, headers={"If-None-Match": '"1"'})
    assert response.status_code == 200, response.text
    assert "etag" not in response.headers
    assert response.json()["user"]["id"] == row["user_id"]


def test_get_of_a_missing_row_with_if_none_match_is_404(client: Any) -> None:
    response = client.get(f"{API}/tasks/{MISSING_ID}", headers={"If-None-Match": "*"})
    assert_problem(response, 404, "not-found")


# --- PATCH with If-Match ------------------------------------------------------------------------------------------


def test_patch_at_the_matching_version_is_200_with_the_new_etag(client: Any) -> None:
    row = task(client)
    first = client.patch(url(row), json={"title": "v2"}, headers={"If-Match": '"1"'})
    assert first.status_code == 200, first.text
    assert first.headers["etag"] == '"2"'
    second = client.patch(url(row), json={"title": "v3"}, headers={"If-Match": first.headers["etag"]})
    assert second.status_code == 200, second.text
    assert second.headers["etag"] == '"3"'
    assert stored(client, row)["title"] == "v3"


def test_patch_at_a_stale_version_is_412_with_the_current_one_and_changes_nothing(client: Any) -> None:
    row = task(client)
    client.patch(url(row), json={"title": "v2"})
    client.patch(url(row), json={"title": "v3"})
    before = stored(client, row)
    response = client.patch(url(row), json={"title": "lost"}, headers={"If-Match": '"2"'})
    body = assert_problem(response, 412, "precondition-failed")
    assert body["version"] == 3
    assert stored(client, row) == before


@pytest.mark.parametrize("header", ['"99"', 'W/"1"', '"abc"'])
def test_patch_with_a_tag_that_cannot_match_is_412(client: Any, header: str) -> None:
    row = task(client)
    response = client.patch(url(row), json={"title": "lost"}, headers={"If-Match": header})
    assert assert_problem(response, 412, "precondition-failed")["version"] == 1
    assert stored(client, row) == row


def test_an_empty_patch_at_a_stale_version_is_412(client: Any) -> None:
    row = task(client)
    client.patch(url(row), json={"title": "v2"})
    response = client.patch(url(row), json={}, headers={"If-Match": '"1"'})
    assert assert_problem(response, 412, "precondition-failed")["version"] == 2
    current = client.patch(url(row), json={}, headers={"If-Match": '"2"'})
    assert current.status_code == 200, current.text
    assert current.json()["version"] == 2


def test_if_match_star_patches_at_any_version(client: Any) -> None:
    row = task(client)
    client.patch(url(row), json={"title": "v2"})
    response = client.patch(url(row), json={"title": "v3"}, headers={"If-Match": "*"})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 3
    assert response.headers["etag"] == '"3"'


@pytest.mark.parametrize("header", ['"1"', "*"])
def test_if_match_on_a_missing_row_is_404(client: Any, header: str) -> None:
    patched = client.patch(f"{API}/tasks/{MISSING_ID}", json={"title": "x"}, headers={"If-Match": header})
    assert_problem(patched, 404, "not-found")
    deleted = client.delete(f"{API}/tasks/{MISSING_ID}", headers={"If-Match": header})
    assert_problem(deleted, 404, "not-found")


@pytest.mark.parametrize("header", ["1", '"1', '"1", "2"', "W/1", ""])
def test_a_malformed_if_match_is_422_naming_it_and_changes_nothing(client: Any, header: str) -> None:
    row = task(client)
    assert_if_match_invalid(client.patch(url(row), json={"title": "x"}, headers={"If-Match": header}))
    assert_if_match_invalid(client.delete(url(row), headers={"If-Match": header}))
    assert stored(client, row) == row


def test_the_412_problem_names_the_row(client: Any) -> None:
    row = task(client)
    body = assert_problem(
        client.patch(url(row), json={"title": "x"}, headers={"If-Match": '"5"'}), 412, "precondition-failed"
    )
    assert row["id"] in body["detail"]


# --- DELETE with If-Match -----------------------------------------------------------------------------------------


def test_delete_at_a_stale_version_is_412_and_keeps_the_row(client: Any) -> None:
    row = task(client)
    client.patch(url(row), json={"title": "v2"})
    before = stored(client, row)
    response = client.delete(url(row), headers={"If-Match": '"1"'})
    assert assert_problem(response, 412, "precondition-failed")["version"] == 2
    assert stored(client, row) == before


def test_delete_at_the_matching_version_is_204(client: Any) -> None:
    row = task(client)
    client.patch(url(row), json={"title": "v2"})
    response = client.delete(url(row), headers={"If-Match": '"2"'})
    assert response.status_code == 204, response.text
    assert client.get(url(row)).status_code == 404


def test_delete_with_if_match_star_is_204(client: Any) -> None:
    row = task(client)
    assert client.delete(url(row), headers={"If-Match": "*"}).status_code == 204
    assert client.get(url(row)).status_code == 404


# --- concurrency: required ---------------------------------------------------------------------------------------

LEDGERS = """\
version: 1
resources:
  owners:
    fields:
      name: {type: string, required: true}
  ledgers:
    concurrency: required
    fields:
      owner_id: {type: uuid, references: owners, on_delete: cascade, filter: true}
      total: {type: integer, default: 0}
"""


@pytest.fixture(scope="module", params=BACKENDS)
def ledgers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """An app over a manifest whose ``ledgers`` are ``concurrency: required`` (``owners`` keep the default)."""
    folder = tmp_path_factory.mktemp("ledgers")
    manifest = folder / "resources.yaml"
    manifest.write_text(LEDGERS, encoding="utf-8")
    with fresh_database(request.param, folder, "ledgers") as database_url:
        settings = make_settings(database_url, manifest_path=manifest)
        assert make_migration(settings, "ledgers") is not None
        upgrade(settings)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            client.headers[KEY_HEADER] = API_KEY
            yield client


def ledger(client: Any, **body: Any) -> dict[str, Any]:
    return factories.create(client, "ledgers", **body)


def test_a_required_resource_refuses_a_patch_without_if_match_with_428(ledgers: Any) -> None:
    row = ledger(ledgers, total=1)
    response = ledgers.patch(url(row, "ledgers"), json={"total": 2})
    body = assert_problem(response, 428, "precondition-required")
    assert "If-Match" in body["detail"]
    assert stored(ledgers, row, "ledgers") == row


def test_a_required_resource_refuses_a_delete_without_if_match_with_428(ledgers: Any) -> None:
    row = ledger(ledgers)
    assert_problem(ledgers.delete(url(row, "ledgers")), 428, "precondition-required")
    assert stored(ledgers, row, "ledgers") == row


def test_a_required_resource_takes_a_patch_and_a_delete_with_if_match(ledgers: Any) -> None:
    row = ledger(ledgers, total=1)
    patched = ledgers.patch(url(row, "ledgers"), json={"total": 2}, headers={"If-Match": '"1"'})
    assert patched.status_code == 200, patched.text
    assert patched.json()["total"] == 2
    assert patched.headers["etag"] == '"2"'
    stale = ledgers.patch(url(row, "ledgers"), json={"total": 3}, headers={"If-Match": '"1"'})
    assert assert_problem(stale, 412, "precondition-failed")["version"] == 2
    starred = ledgers.patch(url(row, "ledgers"), json={"total": 4}, headers={"If-Match": "*"})
    assert starred.status_code == 200, starred.text
    deleted = ledgers.delete(url(row, "ledgers"), headers={"If-Match": '"3"'})
    assert deleted.status_code == 204, deleted.text
    assert ledgers.get(url(row, "ledgers")).status_code == 404


def test_a_required_resource_still_creates_and_reads_without_if_match(ledgers: Any) -> None:
    response = ledgers.post(f"{API}/ledgers", json={"total": 5})
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    assert ledgers.get(url(response.json(), "ledgers")).status_code == 200


def test_resources_without_the_setting_take_writes_without_if_match(ledgers: Any) -> None:
    owner = factories.create(ledgers, "owners", name="Ada")
    patched = ledgers.patch(url(owner, "owners"), json={"name": "Grace"})
    assert patched.status_code == 200, patched.text
    assert ledgers.delete(url(owner, "owners")).status_code == 204


def test_the_openapi_document_lists_428_only_on_the_required_writes(ledgers: Any) -> None:
    document = ledgers.get("/schema/openapi.json").json()
    operations = {
        op["operationId"]: op for item in document["paths"].values() for op in item.values() if isinstance(op, dict)
    }
    for name in ("update_ledger", "delete_ledger"):
        assert "428" in operations[name]["responses"], name
        assert "412" in operations[name]["responses"], name
        assert "If-Match" in {p["name"] for p in operations[name].get("parameters", [])}, name
    for name in ("update_owner", "delete_owner", "create_ledger", "get_ledger", "list_ledgers"):
        assert "428" not in operations[name]["responses"], name


# --- concurrent conditional PATCHes through a live server with two workers ----------------------------------------

RACERS = 20
ROUNDS = 3


@pytest.mark.slow
def test_concurrent_patches_at_one_version_let_exactly_one_win(backend: str, tmp_path: Path) -> None:
    """Each round, 20 clients (a connection each, released together) PATCH one task with the same If-Match: one 200,
    nineteen 412 naming the version the winner made, and the row holds the winner's title at that version."""
    with (
        fresh_database(backend, tmp_path, "race") as database_url,
        live_server(database_url, tmp_path, env={"SERVICE_API_KEYS": API_KEY}, args=("--workers", "2")) as server,
    ):
        headers = {KEY_HEADER: API_KEY}
        with httpx.Client(base_url=f"{server.base}{API}", headers=headers, timeout=30) as api:
            user = api.post("/users", json={"email": "race@example.com"}).json()
            created = api.post("/tasks", json={"user_id": user["id"], "title": "start"})
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]

            for version in range(1, ROUNDS + 1):
                gate = threading.Barrier(RACERS)

                def racer(n: int, version: int = version, gate: threading.Barrier = gate) -> tuple[str, httpx.Response]:
                    title = f"round {version} racer {n}"
                    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as own:
                        gate.wait(timeout=30)
                        response = own.patch(
                            f"/tasks/{task_id}", json={"title": title}, headers={"If-Match": f'"{version}"'}
                        )
                    return title, response

                with ThreadPoolExecutor(RACERS) as pool:
                    answers = list(pool.map(racer, range(RACERS)))

                statuses = sorted(response.status_code for _, response in answers)
                assert statuses == [200] + [412] * (RACERS - 1), [r.text for _, r in answers if r.status_code >= 500]
                (winner, won), *_ = [(title, r) for title, r in answers if r.status_code == 200]
                assert won.json()["title"] == winner
                assert won.headers["etag"] == f'"{version + 1}"'
                for _, response in answers:
                    if response.status_code == 412:
                        assert response.json()["type"] == "urn:flux-dao:problem:precondition-failed"
                        assert response.json()["version"] == version + 1
                row = api.get(f"/tasks/{task_id}").json()
                assert (row["title"], row["version"]) == (winner, version + 1)


@pytest.mark.parametrize("header", ['"2147483648"', '"999999999999999999"'])
def test_an_if_match_beyond_any_version_is_refused_412_on_both_backends(client: TestClient, header: str) -> None:  # type: ignore[type-arg]
    """A tag larger than the version column can hold names no row's version: 412, never a database error."""
    user = client.post("/api/v1/users", json={"email": "big-tag@example.com"}).json()
    for method, body in (("PATCH", {"onboarded": True}), ("PATCH", {}), ("DELETE", None)):
        answer = client.request(method, f"/api/v1/users/{user['id']}", json=body, headers={"If-Match": header})
        assert answer.status_code == 412, answer.text
        assert answer.json()["version"] == 1
