import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from flux_dao.config import Settings, parse_api_keys
from flux_dao.http.app import create_app
from flux_dao.store.migrations import make_migration, upgrade
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, make_settings, run_sql
from tests.factories import API
from tests.live import live_server
from tests.manifests import PRIORITY, project_copy
from tests.problems import assert_problem

SOME_ID = "01900000-0000-7000-8000-0000000000cc"
UNREACHABLE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/x"
WINDOW = {"start_date": "2024-01-01T00:00:00Z", "end_date": "2030-01-01T00:00:00Z"}
RANGE = {"start_at": "2024-01-01T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}

# (method, path, query params, JSON body): a GET list, a GET by id, a POST, a PATCH, a DELETE and the extra queries.
ROUTES = [
    ("GET", "users", None, None),
    ("GET", "tasks/", None, None),
    ("GET", f"tasks/{SOME_ID}", None, None),
    ("POST", "users", None, {"email": "nokey@example.com"}),
    ("PATCH", f"goals/{SOME_ID}", None, {"title": "x"}),
    ("DELETE", f"notification-log/{SOME_ID}", None, None),
    ("GET", "tasks/by-timerange", {"user_id": SOME_ID, **RANGE}, None),
    ("GET", "tasks/statistics", {"user_id": SOME_ID, **WINDOW}, None),
    ("POST", "tasks/bulk-update-state", None, {"task_ids": [SOME_ID], "new_status": "done"}),
]
ROUTE_IDS = [f"{m} {p.replace(SOME_ID, '{id}')}" for m, p, _, _ in ROUTES]


def call(client: Any, method: str, path: str, params: Any, body: Any, **kwargs: Any) -> Any:
    return client.request(method, f"{API}/{path}", params=params, json=body, **kwargs)


@pytest.fixture
def anonymous(client: TestClient) -> TestClient:  # type: ignore[type-arg]
    del client.headers[KEY_HEADER]
    return client


# --- the service key ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "params", "body"), ROUTES, ids=ROUTE_IDS)
def test_missing_key_is_401_problem(anonymous, method, path, params, body):
    response = call(anonymous, method, path, params, body)
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "params", "body"), ROUTES, ids=ROUTE_IDS)
def test_wrong_key_is_401_problem(anonymous, method, path, params, body):
    response = call(anonymous, method, path, params, body, headers={KEY_HEADER: "not-the-key"})
    assert_problem(response, 401, "unauthorized")


def test_empty_key_is_401_problem(anonymous):
    assert_problem(anonymous.get(f"{API}/users", headers={KEY_HEADER: ""}), 401, "unauthorized")


def test_key_with_extra_characters_is_401(anonymous):
    assert_problem(anonymous.get(f"{API}/users", headers={KEY_HEADER: API_KEY + "x"}), 401, "unauthorized")


def test_rejected_create_stores_nothing(client):
    response = client.post(f"{API}/users", json={"email": "sneaky@example.com"}, headers={KEY_HEADER: "wrong"})
    assert_problem(response, 401, "unauthorized")
    assert client.get(f"{API}/users").json()["total"] == 0


def test_rejected_delete_deletes_nothing(client):
    user = factories.user(client)
    response = client.delete(f"{API}/users/{user['id']}", headers={KEY_HEADER: "wrong"})
    assert_problem(response, 401, "unauthorized")
    assert client.get(f"{API}/users/{user['id']}").json() == user


@pytest.mark.parametrize("name", ["x-flux-service-key", "X-FLUX-SERVICE-KEY", "x-Flux-Service-key"])
def test_header_name_is_case_insensitive(anonymous, name):
    response = anonymous.get(f"{API}/users", headers={name: API_KEY})
    assert response.status_code == 200, response.text


def test_missing_key_with_malformed_body_is_still_401(anonymous):
    response = anonymous.post(f"{API}/tasks", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(response, 401, "unauthorized")


def test_wrong_key_with_invalid_body_is_still_401(anonymous):
    response = anonymous.post(f"{API}/users", json={"email": 5, "bogus": True}, headers={KEY_HEADER: "nope"})
    assert_problem(response, 401, "unauthorized")


def test_valid_key_is_accepted(client):
    assert client.get(f"{API}/users").status_code == 200


def test_every_configured_key_is_accepted(settings):
    two_keys = make_settings(settings.database.url, api_keys=("k1", "k2"))
    with TestClient(create_app(two_keys), raise_server_exceptions=False) as c:
        for key in ("k1", "k2"):
            response = c.get(f"{API}/users", headers={KEY_HEADER: key})
            assert response.status_code == 200, (key, response.text)
        assert_problem(c.get(f"{API}/users", headers={KEY_HEADER: API_KEY}), 401, "unauthorized")
        assert_problem(c.get(f"{API}/users"), 401, "unauthorized")


def test_parse_api_keys_accepts_a_json_list():
    assert parse_api_keys('["k1", "k2"]') == ("k1", "k2")


def test_parse_api_keys_accepts_a_comma_separated_list():
    assert parse_api_keys("k1, k2 ,k3") == ("k1", "k2", "k3")


def test_parse_api_keys_accepts_a_single_key():
    assert parse_api_keys("only-one") == ("only-one",)


def test_parse_api_keys_of_nothing_is_no_keys():
    assert parse_api_keys(None) == ()
    assert parse_api_keys("") == ()


# --- probes are open, docs need a key from afar -----------------------------------------------------------------------


def test_health_is_open(anonymous):
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_open_and_ready_on_migrated_database(anonymous):
    response = anonymous.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


def test_openapi_document_needs_a_key_from_a_remote_client_by_default(anonymous):
    assert_problem(anonymous.get("/schema/openapi.json"), 401, "unauthorized")
    response = anonymous.get("/schema/openapi.json", headers={KEY_HEADER: API_KEY})
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")


# --- readiness and availability without a usable database ----------------------------------------------------------


@pytest.fixture(scope="module")
def unreachable() -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(make_settings(UNREACHABLE_URL)), raise_server_exceptions=False) as c:
        c.headers[KEY_HEADER] = API_KEY
        yield c


def test_ready_is_503_when_schema_not_migrated(tmp_path):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        response = c.get("/ready")
    problem = assert_problem(response, 503, "not-ready")
    assert "migrat" in problem["detail"].lower()


def test_api_call_on_unmigrated_database_is_503_naming_the_cause(tmp_path):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        response = c.get(f"{API}/users", headers={KEY_HEADER: API_KEY})
    problem = assert_problem(response, 503, "unavailable")
    assert "migrate" in problem["detail"]


def test_ready_is_503_when_database_unreachable(unreachable):
    problem = assert_problem(unreachable.get("/ready"), 503, "not-ready")
    assert "database" in problem["detail"].lower()


def test_health_stays_200_when_database_unreachable(unreachable):
    response = unreachable.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path", "params", "body"), ROUTES, ids=ROUTE_IDS)
def test_api_call_against_unreachable_database_is_503_with_retry_after(unreachable, method, path, params, body):
    response = call(unreachable, method, path, params, body)
    assert_problem(response, 503, "unavailable")
    assert int(response.headers["retry-after"]) >= 0


def test_unreachable_database_still_checks_the_key_first(unreachable):
    response = unreachable.get(f"{API}/users", headers={KEY_HEADER: "wrong"})
    assert_problem(response, 401, "unauthorized")


# --- schema drift: /ready says the database does not match the manifest --------------------------------------------


def drift_problem(response: Any, difference: str) -> dict[str, Any]:
    problem = assert_problem(response, 503, "schema-drift")
    assert difference in problem["detail"]
    assert "flux-dao makemigrations" in problem["detail"]
    assert difference.split(" ", 1)[0] in [e["field"] for e in problem["errors"]]
    return problem


@pytest.fixture
def ahead(fresh_url: str, tmp_path: Path) -> Settings:
    """A manifest with a field its database lacks: made into a migration, not applied."""
    manifest = project_copy(tmp_path, task_fields=PRIORITY)
    settings = make_settings(fresh_url, manifest_path=manifest)
    upgrade(settings)  # the project's head: without tasks.priority
    make_migration(settings, "task priority")
    return settings


def test_ready_is_503_schema_drift_naming_a_column_the_database_lacks(ahead):
    with TestClient(create_app(ahead), raise_server_exceptions=False) as c:
        drift_problem(c.get("/ready"), "tasks.priority is in the manifest but not in the database")


def test_ready_turns_200_once_the_database_is_migrated(ahead):
    with TestClient(create_app(ahead), raise_server_exceptions=False) as c:
        assert_problem(c.get("/ready"), 503, "schema-drift")
        upgrade(ahead)  # the revision changes: the next probe looks again
        response = c.get("/ready")
        assert response.status_code == 200, response.text


def test_a_column_dropped_by_sql_is_reported_by_ready_within_the_recheck_interval(fresh_url):
    settings = make_settings(fresh_url, schema_recheck=0.5)
    upgrade(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert c.get("/ready").status_code == 200
        if fresh_url.startswith("sqlite"):  # SQLite refuses to drop a column a trigger names: the feed's go first
            run_sql(fresh_url, *(f"DROP TRIGGER flux_dao_changes_tasks_{op}" for op in ("insert", "update", "delete")))
        run_sql(fresh_url, "ALTER TABLE tasks DROP COLUMN recurrence_rule")
        deadline = time.monotonic() + 10
        while (response := c.get("/ready")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        drift_problem(response, "tasks.recurrence_rule is in the manifest but not in the database")
    with TestClient(create_app(replace(settings, schema_recheck=0)), raise_server_exceptions=False) as c:
        drift_problem(c.get("/ready"), "tasks.recurrence_rule")  # a new worker sees it at once


def test_ready_ignores_what_only_the_database_has(fresh_url):
    settings = make_settings(fresh_url)
    upgrade(settings)
    run_sql(
        fresh_url,
        "CREATE TABLE audit_log (id integer PRIMARY KEY)",
        "CREATE INDEX ix_tasks_title ON tasks (title)",
        "ALTER TABLE tasks ADD COLUMN note text",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        response = c.get("/ready")
        assert response.status_code == 200, response.text


def test_serve_no_migrate_starts_and_ready_names_the_missing_column(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'behind.db'}"
    manifest = project_copy(tmp_path, task_fields=PRIORITY)
    settings = make_settings(url, manifest_path=manifest)
    upgrade(settings)
    make_migration(settings, "task priority")
    with live_server(url, tmp_path, manifest=manifest, args=("--no-migrate",)) as server:
        response = httpx.get(f"{server.base}/ready")
        drift_problem(response, "tasks.priority is in the manifest but not in the database")
        assert httpx.get(f"{server.base}/health").status_code == 200  # not ready, still running
    assert "schema drift" in server.output
