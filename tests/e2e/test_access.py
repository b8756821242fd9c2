"""Scoped keys (FLUX_DAO_KEYS_FILE), the per-key rate limit, CORS and who may read the docs.

Access control does not depend on the backend, so these run on one migrated SQLite file; the key check itself is
also exercised on PostgreSQL by test_auth_and_probes.
"""

import hashlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from flux_dao.config import Exposure, Settings
from flux_dao.http.app import create_app
from flux_dao.http.keys import KeysFileError
from flux_dao.store.migrations import upgrade
from tests.conftest import API_KEY, KEY_HEADER, make_settings
from tests.factories import API
from tests.live import live_server
from tests.problems import assert_problem

SCHEDULER_KEY = "scheduler-secret-0001"
OBSERVER_KEY = "observer-secret-0002"
PLANNER_KEY = "planner-secret-0003"
WINDOW = {"start_date": "2024-01-01T00:00:00Z", "end_date": "2030-01-01T00:00:00Z"}


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS_FILE = f"""
scheduler:
  key_sha256: {sha256(SCHEDULER_KEY)}
  scopes: [tasks:read, tasks:write, users:read]
observer:
  key_sha256: {sha256(OBSERVER_KEY).upper()}
  scopes: ["*:read"]
planner:
  key: {PLANNER_KEY}
  scopes: ["goals:*", "tasks:read"]
"""


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('access') / 'access.db'}")
    upgrade(settings)
    return settings


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    path.write_text(KEYS_FILE)
    return path


def serve(settings: Settings) -> TestClient:  # type: ignore[type-arg]
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def scoped(migrated: Settings, keys_file: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The API with the full-access SERVICE_API_KEYS key and the three scoped keys of KEYS_FILE."""
    with serve(replace(migrated, keys_file=keys_file)) as client:
        yield client


@pytest.fixture(scope="module")
def user_id(scoped: TestClient) -> str:  # type: ignore[type-arg]
    response = scoped.post(f"{API}/users", json={"email": "scoped@example.com"}, headers={KEY_HEADER: API_KEY})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def as_key(key: str) -> dict[str, str]:
    return {KEY_HEADER: key}


# --- scopes ---------------------------------------------------------------------------------------------------------


def test_scoped_key_may_do_what_its_scopes_grant(scoped, user_id):
    created = scoped.post(f"{API}/tasks", json={"user_id": user_id, "title": "plan"}, headers=as_key(SCHEDULER_KEY))
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    assert scoped.get(f"{API}/tasks/{task_id}", headers=as_key(SCHEDULER_KEY)).status_code == 200
    patched = scoped.patch(f"{API}/tasks/{task_id}", json={"title": "replan"}, headers=as_key(SCHEDULER_KEY))
    assert patched.status_code == 200, patched.text
    bulk = {"task_ids": [task_id], "new_status": "done"}
    assert scoped.post(f"{API}/tasks/bulk-update-state", json=bulk, headers=as_key(SCHEDULER_KEY)).status_code == 200
    assert scoped.get(f"{API}/users/{user_id}", headers=as_key(SCHEDULER_KEY)).status_code == 200


@pytest.mark.parametrize(
    ("key", "method", "path", "body", "scope"),
    [
        (SCHEDULER_KEY, "POST", "users", {"email": "no@example.com"}, "users:write"),
        (SCHEDULER_KEY, "GET", "goals", None, "goals:read"),
        (SCHEDULER_KEY, "DELETE", "patterns/01900000-0000-7000-8000-0000000000cc", None, "patterns:write"),
        (OBSERVER_KEY, "POST", "tasks/bulk-update-state", {"task_ids": [], "new_status": "done"}, "tasks:write"),
        (OBSERVER_KEY, "PATCH", "users/01900000-0000-7000-8000-0000000000cc", {"timezone": "UTC"}, "users:write"),
        (PLANNER_KEY, "POST", "tasks", {"title": "x"}, "tasks:write"),
        (PLANNER_KEY, "GET", "users", None, "users:read"),
    ],
)
def test_known_key_without_the_scope_is_403_naming_the_scope(scoped, key, method, path, body, scope):
    response = scoped.request(method, f"{API}/{path}", json=body, headers=as_key(key))
    problem = assert_problem(response, 403, "forbidden")
    assert problem["scope"] == scope
    assert scope in problem["detail"]


@pytest.mark.parametrize(
    ("key", "path", "query", "scope"),
    [
        (PLANNER_KEY, "goals", "include=user", "users:read"),  # goals:* and tasks:read, not users
        (PLANNER_KEY, "tasks", "include=goal.user", "users:read"),  # a nested embed counts too
        (SCHEDULER_KEY, "tasks", "include=goal", "goals:read"),
        (SCHEDULER_KEY, "users", "goals.status=active", "goals:read"),  # an embed filter brings its embed in
        (
            SCHEDULER_KEY,
            "tasks/by-timerange",
            "include=goal&user_id={user}&start_at=2030-01-01T00:00:00Z&end_at=2030-01-02T00:00:00Z",
            "goals:read",
        ),
    ],
)
def test_an_embed_needs_the_read_scope_of_what_it_brings_in(scoped, user_id, key, path, query, scope):
    response = scoped.get(f"{API}/{path}?{query.format(user=user_id)}", headers=as_key(key))
    problem = assert_problem(response, 403, "forbidden")
    assert problem["scope"] == scope


def test_an_embed_within_the_keys_scopes_is_served(scoped, user_id):
    goal = scoped.post(f"{API}/goals", json={"user_id": user_id, "title": "g"}, headers=as_key(PLANNER_KEY)).json()
    embedded = scoped.get(f"{API}/goals/{goal['id']}?include=tasks", headers=as_key(PLANNER_KEY))
    assert embedded.status_code == 200, embedded.text
    assert embedded.json()["tasks"] == []
    assert scoped.get(f"{API}/tasks?include=user", headers=as_key(SCHEDULER_KEY)).status_code == 200
    assert scoped.get(f"{API}/goals?include=user", headers=as_key(OBSERVER_KEY)).status_code == 200


def test_a_read_only_key_may_ask_which_methods_a_path_allows(scoped):
    response = scoped.options(f"{API}/tasks", headers=as_key(OBSERVER_KEY))
    assert response.status_code == 204, response.text
    assert "POST" in response.headers["allow"]


def test_scope_is_checked_before_the_body_is_validated(scoped):
    response = scoped.post(f"{API}/users", json={"email": 5}, headers=as_key(OBSERVER_KEY))
    assert_problem(response, 403, "forbidden")


def test_read_wildcard_reads_every_resource_and_its_queries(scoped, user_id):
    for path in ("users", "goals", "tasks", "conversations", "patterns", "notification-log"):
        assert scoped.get(f"{API}/{path}", headers=as_key(OBSERVER_KEY)).status_code == 200, path
    params = {"user_id": user_id, **WINDOW}
    assert scoped.get(f"{API}/tasks/statistics", params=params, headers=as_key(OBSERVER_KEY)).status_code == 200


def test_action_wildcard_grants_reads_and_writes_of_one_resource(scoped, user_id):
    created = scoped.post(f"{API}/goals", json={"user_id": user_id, "title": "g"}, headers=as_key(PLANNER_KEY))
    assert created.status_code == 201, created.text
    goal_id = created.json()["id"]
    assert scoped.get(f"{API}/goals/{goal_id}", headers=as_key(PLANNER_KEY)).status_code == 200
    assert scoped.delete(f"{API}/goals/{goal_id}", headers=as_key(PLANNER_KEY)).status_code == 204


def test_environment_keys_keep_full_access_beside_a_keys_file(scoped, user_id):
    response = scoped.post(f"{API}/goals", json={"user_id": user_id, "title": "env"}, headers=as_key(API_KEY))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("headers", [{}, as_key(""), as_key("not-a-key"), as_key(sha256(SCHEDULER_KEY))])
def test_missing_or_unknown_key_is_401_even_with_a_keys_file(scoped, headers):
    response = scoped.get(f"{API}/tasks", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert 'header="X-Flux-Service-Key"' in response.headers["www-authenticate"]


def test_keys_file_alone_protects_the_api(migrated, keys_file):
    with serve(replace(migrated, api_keys=(), keys_file=keys_file)) as client:
        assert_problem(client.get(f"{API}/tasks"), 401, "unauthorized")
        assert client.get(f"{API}/tasks", headers=as_key(OBSERVER_KEY)).status_code == 200


# --- the keys file is checked at start-up -------------------------------------------------------------------------

BAD_KEYS_FILES = {
    "unknown resource": ("scheduler:\n  key: k1\n  scopes: [chores:read]\n", ["scheduler", "chores:read"]),
    "unknown action": ("scheduler:\n  key: k1\n  scopes: [tasks:delete]\n", ["scheduler", "tasks:delete"]),
    "no action": ("scheduler:\n  key: k1\n  scopes: [tasks]\n", ["scheduler", "tasks"]),
    "both keys": (f"a:\n  key: k1\n  key_sha256: {sha256('k1')}\n  scopes: ['*:read']\n", ["'a'", "exactly one"]),
    "no key": ("a:\n  scopes: ['*:read']\n", ["'a'", "exactly one"]),
    "short digest": ("a:\n  key_sha256: abc123\n  scopes: ['*:read']\n", ["'a'", "64 hexadecimal"]),
    "empty scopes": ("a:\n  key: k1\n  scopes: []\n", ["'a'", "scopes is empty"]),
    "unknown field": ("a:\n  key: k1\n  scope: ['*:read']\n", ["scope"]),
    "same key twice": (
        f"a:\n  key: k1\n  scopes: ['*:read']\nb:\n  key_sha256: {sha256('k1')}\n  scopes: ['*:*']\n",
        ["'a'", "'b'"],
    ),
    "same as an environment key": (f"a:\n  key: {API_KEY}\n  scopes: ['*:read']\n", ["service-key-1", "'a'"]),
    "not a mapping": ("- a\n- b\n", ["keys.yaml"]),
    "no keys": ("{}\n", ["defines no keys"]),
    "empty file": ("", ["keys.yaml"]),
}


@pytest.mark.parametrize("case", sorted(BAD_KEYS_FILES))
def test_invalid_keys_file_is_refused_naming_the_key(migrated, tmp_path, case):
    text, fragments = BAD_KEYS_FILES[case]
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(KeysFileError) as caught:
        create_app(replace(migrated, keys_file=path))
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_keys_file_is_refused_naming_it(migrated, tmp_path):
    with pytest.raises(KeysFileError, match="cannot read the keys file"):
        create_app(replace(migrated, keys_file=tmp_path / "absent.yaml"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [("FLUX_DAO_RATE_LIMIT", "-1"), ("FLUX_DAO_RATE_LIMIT", "inf"), ("FLUX_DAO_RATE_BURST", "-2")],
)
def test_nonsense_rate_settings_are_refused_naming_the_variable(variable, value):
    with pytest.raises(ValueError, match=variable):
        Settings.from_env({variable: value})


# --- rate limit -----------------------------------------------------------------------------------------------------


def test_rate_limit_is_off_by_default(scoped):
    statuses = {scoped.get(f"{API}/tasks", headers=as_key(OBSERVER_KEY)).status_code for _ in range(60)}
    assert statuses == {200}


def test_key_over_its_rate_gets_429_with_retry_after_then_recovers(migrated, keys_file):
    with serve(replace(migrated, keys_file=keys_file, rate_limit=1.0, rate_burst=3)) as client:
        statuses = [client.get(f"{API}/tasks", headers=as_key(OBSERVER_KEY)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = client.get(f"{API}/tasks", headers=as_key(OBSERVER_KEY))
        problem = assert_problem(limited, 429, "rate-limited")
        assert "observer" in problem["detail"]
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 2
        # every key has its own bucket
        assert client.get(f"{API}/tasks", headers=as_key(SCHEDULER_KEY)).status_code == 200
        time.sleep(retry_after)
        assert client.get(f"{API}/tasks", headers=as_key(OBSERVER_KEY)).status_code == 200


def test_failed_key_attempts_are_limited_by_address_not_charged_to_a_key(migrated):
    with serve(replace(migrated, rate_limit=1.0, rate_burst=2)) as client:
        assert_problem(client.get(f"{API}/tasks", headers=as_key("guess-1")), 401, "unauthorized")
        assert_problem(client.get(f"{API}/tasks"), 401, "unauthorized")
        guessing = client.get(f"{API}/tasks", headers=as_key("guess-3"))
        assert_problem(guessing, 429, "rate-limited")
        assert int(guessing.headers["retry-after"]) >= 1
        # the real key has a bucket of its own
        assert client.get(f"{API}/tasks", headers=as_key(API_KEY)).status_code == 200


# --- CORS -----------------------------------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://flux.example.com",
    "Access-Control-Request-Method": "PATCH",
    "Access-Control-Request-Headers": "x-flux-service-key, content-type",
}


def test_cors_is_off_unless_origins_are_configured(scoped):
    preflight = scoped.options(f"{API}/tasks", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    response = scoped.get(f"{API}/tasks", headers={"Origin": PREFLIGHT["Origin"], **as_key(API_KEY)})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_configured_origin_may_call_the_api_from_a_browser(migrated):
    with serve(replace(migrated, cors_origins=("https://flux.example.com",))) as client:
        preflight = client.options(f"{API}/tasks", headers=PREFLIGHT)
        assert preflight.status_code in {200, 204}, preflight.text
        assert preflight.headers["access-control-allow-origin"] == "https://flux.example.com"
        assert "x-flux-service-key" in preflight.headers["access-control-allow-headers"].lower()
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        response = client.get(f"{API}/tasks", headers={"Origin": "https://flux.example.com", **as_key(API_KEY)})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://flux.example.com"
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
        other = client.options(f"{API}/tasks", headers={**PREFLIGHT, "Origin": "https://evil.example.com"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example.com"


# --- docs exposure --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/schema/openapi.json", "/schema", "/docs", "/schema/assets/swagger-ui.css"])
def test_docs_off_are_not_served(migrated, path):
    with serve(replace(migrated, docs=Exposure.OFF)) as client:
        assert_problem(client.get(path, headers=as_key(API_KEY)), 404, "not-found")


def test_docs_public_need_no_key(migrated):
    with serve(replace(migrated, docs=Exposure.PUBLIC)) as client:
        assert client.get("/schema/openapi.json").status_code == 200


@pytest.mark.parametrize("exposure", [Exposure.KEY, Exposure.AUTO])
def test_docs_behind_a_key_accept_any_valid_key_from_afar(migrated, keys_file, exposure):
    with serve(replace(migrated, docs=exposure, keys_file=keys_file)) as client:
        assert_problem(client.get("/schema/openapi.json"), 401, "unauthorized")
        assert_problem(client.get("/schema", headers=as_key("wrong")), 401, "unauthorized")
        assert client.get("/schema/openapi.json", headers=as_key(SCHEDULER_KEY)).status_code == 200
        for path in ("/docs", "/schema/assets/swagger-ui-bundle.js"):
            assert_problem(client.get(path, follow_redirects=False), 401, "unauthorized")
            assert client.get(path, headers=as_key(SCHEDULER_KEY), follow_redirects=False).status_code in {200, 302}


@pytest.mark.parametrize("exposure", [Exposure.KEY, Exposure.AUTO])
def test_metrics_behind_a_key_accept_any_valid_key_from_afar(migrated, keys_file, exposure):
    with serve(replace(migrated, metrics=exposure, keys_file=keys_file)) as client:
        assert_problem(client.get("/metrics"), 401, "unauthorized")
        assert_problem(client.get("/metrics", headers=as_key("wrong")), 401, "unauthorized")
        response = client.get("/metrics", headers=as_key(OBSERVER_KEY))
        assert response.status_code == 200
        assert "flux_dao_http_requests_total" in response.text


@pytest.mark.parametrize(("exposure", "status"), [("auto", 200), ("key", 401)])
@pytest.mark.parametrize("path", ["/schema/openapi.json", "/metrics"])
def test_docs_and_metrics_auto_are_public_to_loopback_clients(tmp_path, exposure, status, path):
    env = {"SERVICE_API_KEYS": API_KEY, "FLUX_DAO_DOCS": exposure, "FLUX_DAO_METRICS": exposure}
    with live_server(f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}", tmp_path, env=env) as server:
        response = httpx.get(f"{server.base}{path}")
        assert response.status_code == status, response.text
        assert httpx.get(f"{server.base}{path}", headers=as_key(API_KEY)).status_code == 200


def test_openapi_documents_the_access_problems(scoped):
    doc: dict[str, Any] = scoped.get("/schema/openapi.json", headers=as_key(API_KEY)).json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if not path.startswith(API) or not isinstance(operation, dict):
                continue
            for status in ("401", "403", "429"):
                content = operation["responses"][status]["content"]
                assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}, (
                    method,
                    path,
                    status,
                )


def test_serve_refuses_to_start_on_an_invalid_keys_file(tmp_path):
    from click.testing import CliRunner

    from flux_dao.ops.cli import main

    path = tmp_path / "keys.yaml"
    path.write_text("scheduler:\n  key: k1\n  scopes: [chores:read]\n")
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", "FLUX_DAO_KEYS_FILE": str(path)}
    result = CliRunner().invoke(main, ["serve", "--no-migrate"], env=env)
    assert result.exit_code == 1
    assert "chores:read" in result.output
    assert str(path) in result.output


def test_request_log_names_the_scoped_key_never_the_key(scoped, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="flux_dao.access"):
        assert scoped.get(f"{API}/tasks", headers=as_key(SCHEDULER_KEY)).status_code == 200
        assert scoped.get(f"{API}/goals", headers=as_key(SCHEDULER_KEY)).status_code == 403
    lines = [r.fields for r in caplog.records if r.name == "flux_dao.access"]
    assert [(line["key_name"], line["status"]) for line in lines] == [("scheduler", 200), ("scheduler", 403)]
    assert SCHEDULER_KEY not in caplog.text
    assert sha256(SCHEDULER_KEY) not in caplog.text
