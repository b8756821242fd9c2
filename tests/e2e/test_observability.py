"""Operations through HTTP: ``/metrics`` (Prometheus text), ``X-Request-ID``, and the one-line-per-request log.

Budget: about 15 s in all; the in-process tests take under a second each per backend, the two live-server tests
(``flux-dao serve`` with JSON logs, and with ``--workers 2`` and text logs) 4-6 s each.
"""

import json
import logging
import re
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flux_dao.config import Exposure
from flux_dao.http.app import create_app
from flux_dao.http.plugin import FluxDaoPlugin
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, make_settings
from tests.factories import API
from tests.live import live_server
from tests.problems import assert_problem

REQUESTS = "flux_dao_http_requests_total"
DURATION_COUNT = "flux_dao_http_request_duration_seconds_count"
DURATION_SUM = "flux_dao_http_request_duration_seconds_sum"
PROBLEMS = "flux_dao_problems_total"
UNMATCHED = "<unmatched>"
HEX_ID = re.compile(r"^[0-9a-f]{32}$")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Any, base: str = "") -> Samples:
    response = client.get(f"{base}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def label_values(samples: Samples, label: str) -> set[str]:
    return {dict(labels)[label] for _, labels in samples if label in dict(labels)}


# --- /metrics -------------------------------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_method_and_status(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    before = scrape(client)
    for _ in range(2):
        assert client.get(f"{API}/tasks/{task['id']}").status_code == 200
    assert client.get(f"{API}/tasks/", params={"user_id": user["id"]}).status_code == 200
    assert client.patch(f"{API}/tasks/{task['id']}", json={"status": "done"}).status_code == 200
    after = scrape(client)

    by_id = {"route": "/api/v1/tasks/{task_id}", "method": "GET", "status": "200"}
    assert delta(before, after, REQUESTS, **by_id) == 2
    assert delta(before, after, DURATION_COUNT, **by_id) == 2
    assert delta(before, after, DURATION_SUM, **by_id) > 0
    assert delta(before, after, REQUESTS, route="/api/v1/tasks", method="GET", status="200") == 1
    patch = {"route": "/api/v1/tasks/{task_id}", "method": "PATCH", "status": "200"}
    assert delta(before, after, REQUESTS, **patch) == 1
    assert not any(task["id"] in route or user["id"] in route for route in label_values(after, "route"))


def test_duration_histogram_buckets_are_cumulative_and_end_at_the_count(client):
    before = scrape(client)
    for _ in range(5):
        assert client.get("/health").status_code == 200
    after = scrape(client)
    labels = {"route": "/health", "method": "GET", "status": "200"}
    bucket = "flux_dao_http_request_duration_seconds_bucket"
    bounds = sorted(
        {dict(key)["le"] for name, key in after if name == bucket and dict(key).get("route") == "/health"},
        key=float,
    )
    assert bounds[0] == "0.001"
    assert bounds[-1] == "+Inf"
    counts = [value(after, bucket, **labels, le=le) for le in bounds]
    assert counts == sorted(counts)  # cumulative: each bucket holds the ones below it
    assert counts[-1] == value(after, DURATION_COUNT, **labels) == value(after, REQUESTS, **labels)
    assert delta(before, after, bucket, **labels, le="+Inf") == 5
    assert 0 < delta(before, after, DURATION_SUM, **labels) < 5 * 10


def test_route_label_is_bounded_to_the_app_routes(client):
    for n in range(20):
        client.get(f"/no/such/path/{n}")
        client.get(f"{API}/tasks/{uuid.uuid4()}/{n}")
    client.request("FROBNICATE", f"{API}/tasks")
    client.delete(f"{API}/conversations/{uuid.uuid4()}")  # the path exists, the method does not: 405
    samples = scrape(client)
    templates = {route.path_format for route in client.app.routes}
    assert label_values(samples, "route") <= templates | {UNMATCHED}
    assert value(samples, REQUESTS, route=UNMATCHED, method="GET", status="404") >= 40
    assert value(samples, REQUESTS, route=UNMATCHED, method="OTHER", status="405") >= 1
    assert label_values(samples, "method") <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


def test_problems_are_counted_by_type(client):
    before = scrape(client)
    assert_problem(client.get(f"{API}/tasks/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(client.get("/no/such/path"), 404, "not-found")
    assert_problem(client.get(f"{API}/tasks/not-a-uuid"), 422, "validation-error")
    assert_problem(client.post(f"{API}/users", json={"email": 5}), 422, "validation-error")
    assert_problem(client.post(f"{API}/users", json={}), 422, "validation-error")
    assert_problem(client.get(f"{API}/users", headers={KEY_HEADER: "not-the-key"}), 401, "unauthorized")
    after = scrape(client)

    assert delta(before, after, PROBLEMS, type="not-found") == 2
    assert delta(before, after, PROBLEMS, type="validation-error") == 3
    assert delta(before, after, PROBLEMS, type="unauthorized") == 1
    assert delta(before, after, REQUESTS, route="/api/v1/users", method="GET", status="401") == 1
    assert delta(before, after, REQUESTS, route=UNMATCHED, method="GET", status="404") == 1


def test_pool_gauges_show_this_workers_pool(client, backend):
    factories.user(client)
    samples = scrape(client)
    assert value(samples, "flux_dao_db_pool_in_use") == 0  # the scrape itself holds none
    waiting = ("flux_dao_db_pool_waiting", frozenset())
    if backend == "postgres":
        assert value(samples, "flux_dao_db_pool_max") == 10  # DB_POOL_SIZE
        assert value(samples, "flux_dao_db_pool_connections") >= 1
        assert samples[waiting] == 0
    else:  # one connection per worker, which no request waits for: no waiting gauge
        assert value(samples, "flux_dao_db_pool_max") == 1
        assert value(samples, "flux_dao_db_pool_connections") == 1
        assert waiting not in samples


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_requests_waiting_for_a_connection_are_counted(settings):
    app = create_app(replace(settings, database=replace(settings.database, pool_size=1)))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers[KEY_HEADER] = API_KEY
        db = app.plugins.get(FluxDaoPlugin).db
        portal = client.blocking_portal
        assert portal is not None
        pool, held = portal.call(db.acquire)  # the pool's only connection, taken by someone else
        with ThreadPoolExecutor(1) as executor:
            waiter = executor.submit(client.get, f"{API}/tasks/{uuid.uuid4()}")
            deadline = time.monotonic() + 5
            while value(samples := scrape(client), "flux_dao_db_pool_waiting") != 1:
                assert time.monotonic() < deadline, "the waiting request never showed"
                time.sleep(0.02)
            assert value(samples, "flux_dao_db_pool_in_use") == 1
            assert value(samples, "flux_dao_db_pool_connections") == 1
            portal.call(pool.release, held)
            assert_problem(waiter.result(timeout=10), 404, "not-found")
        samples = scrape(client)
        assert value(samples, "flux_dao_db_pool_waiting") == 0
        assert value(samples, "flux_dao_db_pool_in_use") == 0


@pytest.mark.sqlite
def test_public_metrics_need_no_key(tmp_path):
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", metrics=Exposure.PUBLIC))
    with TestClient(app) as client:  # not a loopback client ("testclient"), no key
        assert client.get("/health").status_code == 200
        samples = scrape(client)
    assert value(samples, REQUESTS, route="/health", method="GET", status="200") == 1
    assert value(samples, "flux_dao_db_pool_max") == 1  # SQLite: the worker's one connection


@pytest.mark.sqlite
def test_metrics_off_means_no_route(tmp_path):
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", metrics=Exposure.OFF))
    with TestClient(app) as client:
        client.headers[KEY_HEADER] = API_KEY
        assert_problem(client.get("/metrics"), 404, "not-found")
        assert "/metrics" not in {route.path for route in app.routes}


# --- X-Request-ID ---------------------------------------------------------------------------------------------------


def test_request_id_is_echoed(client):
    response = client.get(f"{API}/users", headers={"X-Request-ID": "caller-id.42/x:7"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "caller-id.42/x:7"
    longest = "r" * 128
    assert client.get("/health", headers={"X-Request-ID": longest}).headers["X-Request-ID"] == longest


def test_request_id_is_generated_when_absent(client):
    first = client.get("/health").headers["X-Request-ID"]
    second = client.get("/health").headers["X-Request-ID"]
    assert HEX_ID.match(first)
    assert HEX_ID.match(second)
    assert first != second


@pytest.mark.parametrize(
    "bad",
    [b"r" * 129, "caf\u00e9".encode("latin-1"), b"tab\there", b"nul\x00", b"", b"abc key_name=admin status=200"],
    ids=["too-long", "not-ascii", "tab", "nul", "empty", "forged-fields"],
)
def test_bad_request_id_is_replaced(client, bad):
    response = client.get("/health", headers=[("X-Request-ID", bad)])
    assert response.status_code == 200
    assert HEX_ID.match(response.headers["X-Request-ID"])


def test_problem_carries_the_request_id(client):
    response = client.get(f"{API}/tasks/{uuid.uuid4()}", headers={"X-Request-ID": "trace-me-1"})
    body = assert_problem(response, 404, "not-found")
    assert body["request_id"] == "trace-me-1"
    assert response.headers["X-Request-ID"] == "trace-me-1"
    generated = assert_problem(client.get("/no/such/path"), 404, "not-found")
    assert HEX_ID.match(generated["request_id"])


# --- the request log ------------------------------------------------------------------------------------------------


def test_one_log_record_per_request_with_its_fields(client, caplog):
    user = factories.user(client)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="flux_dao.access"):
        client.get(f"{API}/users/{user['id']}", headers={"X-Request-ID": "log-ok"})
        client.get(f"{API}/users", headers={"X-Request-ID": "log-401", KEY_HEADER: "nope"})
        client.get("/no/such/path", headers={"X-Request-ID": "log-404"})
        client.get(f"{API}/users/", headers={"X-Request-ID": "log-slash"})
    records = {r.fields["request_id"]: r.fields for r in caplog.records if r.name == "flux_dao.access"}
    assert len([r for r in caplog.records if r.name == "flux_dao.access"]) == 4
    ok, unauthorized, unknown = records["log-ok"], records["log-401"], records["log-404"]
    assert ok["method"] == "GET"
    assert ok["route"] == "/api/v1/users/{user_id}"
    assert ok["path"] == f"/api/v1/users/{user['id']}"
    assert ok["status"] == 200
    assert ok["duration_ms"] > 0
    assert ok["key_name"] == "service-key-1"
    assert ok["problem"] is None
    assert ok["client"] == "testclient"
    assert (unauthorized["status"], unauthorized["key_name"], unauthorized["problem"]) == (401, None, "unauthorized")
    assert (unknown["status"], unknown["route"], unknown["problem"]) == (404, None, "not-found")
    slash = records["log-slash"]  # the path as asked, the route it matched
    assert (slash["path"], slash["route"], slash["status"]) == ("/api/v1/users/", "/api/v1/users", 200)


def test_request_records_hold_every_attribute_logging_formats_read(client, caplog):
    every_attribute = (
        "%(name)s %(levelno)s %(levelname)s %(pathname)s %(filename)s %(module)s %(lineno)d %(funcName)s "
        "%(created)f %(msecs)d %(relativeCreated)d %(thread)s %(threadName)s %(process)d %(processName)s %(message)s"
    )
    with caplog.at_level(logging.INFO, logger="flux_dao.access"):
        client.get("/health", headers={"X-Request-ID": "format-all"})
    (record,) = [r for r in caplog.records if r.name == "flux_dao.access"]
    line = logging.Formatter(every_attribute).format(record)  # a %-style format reads the record's __dict__
    assert line.startswith("flux_dao.access 20 INFO ")
    assert line.endswith(" GET /health 200")
    assert record.fields["request_id"] == "format-all"


@pytest.mark.sqlite
def test_serve_logs_json_lines_and_never_the_key_or_body(tmp_path):
    secret = "s3cret-service-key-for-the-log-test"
    wrong = "wrong-key-that-must-not-be-logged"
    marker = f"body-marker-{uuid.uuid4().hex}"
    env = {"SERVICE_API_KEYS": secret, "FLUX_DAO_LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    with live_server(url, tmp_path, env=env) as server:
        key = {KEY_HEADER: secret}
        created = httpx.post(
            f"{server.base}{API}/users",
            json={"email": f"{marker}@example.com"},
            headers={**key, "X-Request-ID": "live-create"},
        )
        assert created.status_code == 201
        user_path = f"{API}/users/{created.json()['id']}"
        assert httpx.get(f"{server.base}{user_path}", headers={**key, "X-Request-ID": "live-get"}).status_code == 200
        denied = httpx.get(f"{server.base}{API}/users", headers={KEY_HEADER: wrong, "X-Request-ID": "live-401"})
        assert denied.status_code == 401
        assert httpx.get(f"{server.base}/nope", headers={"X-Request-ID": "live-404"}).status_code == 404
    output = server.output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines too
    access = [line for line in lines if line["logger"] == "flux_dao.access"]
    counts = Counter(line["request_id"] for line in access)
    assert all(counts[rid] == 1 for rid in ("live-create", "live-get", "live-401", "live-404")), counts
    by_id = {line["request_id"]: line for line in access}
    get_line = by_id["live-get"]
    assert {k: get_line[k] for k in ("method", "route", "path", "status", "key_name", "client", "problem")} == {
        "method": "GET",
        "route": "/api/v1/users/{user_id}",
        "path": user_path,
        "status": 200,
        "key_name": "service-key-1",
        "client": "127.0.0.1",
        "problem": None,
    }
    assert get_line["duration_ms"] > 0
    assert (by_id["live-create"]["status"], by_id["live-create"]["method"]) == (201, "POST")
    assert (by_id["live-401"]["status"], by_id["live-401"]["key_name"]) == (401, None)
    assert (by_id["live-404"]["status"], by_id["live-404"]["route"]) == (404, None)
    assert secret not in output
    assert wrong not in output
    assert marker not in output


@pytest.mark.sqlite
def test_no_request_line_is_lost_under_load_or_at_shutdown(tmp_path):
    env = {"FLUX_DAO_LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    sent = 400
    with live_server(url, tmp_path, env=env) as server, httpx.Client(base_url=server.base) as http:

        def ask(n: int) -> int:
            return http.get("/health", headers={"X-Request-ID": f"load-{n}"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(ask, range(sent))) == {200}
        # stopped (SIGTERM) straight after the last answer: lines still queued must be written before the exit
    access = [
        json.loads(line)
        for line in server.output.splitlines()
        if '"logger":"flux_dao.access"' in line and '"request_id":"load-' in line
    ]
    assert sorted(line["request_id"] for line in access) == sorted(f"load-{n}" for n in range(sent))
    assert all(line["status"] == 200 and line["route"] == "/health" for line in access)


@pytest.mark.sqlite
def test_two_workers_report_one_sum_and_clean_up(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    env = {"FLUX_DAO_LOG_FORMAT": "text", "FLUX_DAO_METRICS": "public", "LOG_LEVEL": "INFO"}
    with live_server(url, tmp_path, env=env, args=("--workers", "2")) as server:
        sent = 0
        pids: set[str] = set()
        while len(pids) < 2:  # a fresh connection per request, until both workers have answered some
            assert sent < 400, f"one worker answered all {sent} requests:\n{server.output}"
            assert httpx.get(f"{server.base}{API}/users", headers={"X-Request-ID": f"spread-{sent}"}).status_code == 200
            sent += 1
            pids = set(re.findall(r"\[(\d+)\] flux_dao.access: .* request_id=spread-", server.output))
        for _ in range(6):  # whichever worker answers the scrape, it reports both workers' requests
            samples = scrape(httpx, server.base)
            assert value(samples, REQUESTS, route="/api/v1/users", method="GET", status="200") == sent
        folder = re.search(r"summed through (\S+)", server.output)
        assert folder is not None, server.output
        assert Path(folder[1]).is_dir()
    assert not Path(folder[1]).exists()
