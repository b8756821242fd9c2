"""Limits and database failures end as clear problems, never as 500s or hangs."""

import asyncio
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flux_dao.errors import DatabaseUnavailableError
from flux_dao.http.app import create_app
from flux_dao.http.plugin import FluxDaoPlugin
from flux_dao.query import BulkUpdatePlan
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, PG_DSN, _pg_admin, make_settings
from tests.factories import API
from tests.live import live_server


def test_request_body_over_the_limit_is_413_problem(settings):
    small = replace(settings, max_body=2048)
    with TestClient(create_app(small), raise_server_exceptions=False) as client:
        client.headers[KEY_HEADER] = API_KEY
        body = {"email": "big@example.com", "profile": {"notes": "x" * 4096}}
        response = client.post(f"{API}/users", json=body)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:flux-dao:problem:payload-too-large"


@pytest.mark.postgres
def test_statement_over_the_timeout_is_cancelled_and_reported_unavailable(pg_database):
    settings = make_settings(pg_database)
    settings = replace(settings, database=replace(settings.database, statement_timeout=0.2))
    with TestClient(create_app(settings)) as client:
        plugin = client.app.plugins.get(FluxDaoPlugin)
        repository = plugin.repositories["users"]

        async def slow() -> None:
            async def run(conn):
                return await conn.scalar(sa.text("SELECT pg_sleep(2)"), {})

            await repository._reading(run)

        assert client.blocking_portal is not None
        with pytest.raises(DatabaseUnavailableError):
            client.blocking_portal.call(slow)


def test_concurrent_bulk_updates_over_the_same_rows_all_succeed(client):
    user = factories.user(client)
    ids = [uuid.UUID(factories.task(client, user["id"], title=f"t{n}")["id"]) for n in range(30)]
    repository = client.app.plugins.get(FluxDaoPlugin).repositories["tasks"]
    rng = random.Random(3)  # noqa: S311 (test data, not security)
    statuses = ["pending", "done", "missed", "rescheduled"]

    async def hammer() -> list[int]:
        plans = []
        for n in range(24):
            chosen = rng.sample(ids, 20)
            plans.append(BulkUpdatePlan(query="bulk-update-state", ids=tuple(chosen), value=statuses[n % 4]))
        return list(await asyncio.gather(*(repository.bulk_update(p) for p in plans)))

    assert client.blocking_portal is not None
    counts = client.blocking_portal.call(hammer)
    assert counts == [20] * 24
    listed = client.get(f"{API}/tasks", params={"user_id": user["id"], "limit": 100}).json()
    assert listed["total"] == 30
    assert {item["status"] for item in listed["items"]} <= set(statuses)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A PostgreSQL database for one live server alone (its rows never meet other tests)."""
    name = f"flux_dao_bulk_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_DSN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
@pytest.mark.postgres
def test_many_concurrent_bulk_updates_over_shared_tasks_never_fail(fresh_pg_url, tmp_path):
    """The earlier service's deadlock: concurrent bulk-update-state calls over overlapping ids of a small table.

    16 HTTP clients each send 12 bulk updates of 8 ids drawn (in random order, with repeats) from the same 10 tasks,
    against a live server with 2 workers. Every answer is 200 (or a 503 problem if a deadlock outlived the retries),
    never a 500; each 200 counts its distinct ids; afterwards every task holds a status some client sent.
    """
    statuses = ["pending", "done", "missed", "rescheduled"]
    with live_server(fresh_pg_url, tmp_path, env={"SERVICE_API_KEYS": API_KEY}, args=("--workers", "2")) as server:
        api = httpx.Client(base_url=f"{server.base}{API}", headers={KEY_HEADER: API_KEY}, timeout=30)
        user = api.post("/users", json={"email": "bulk@example.com"}).json()
        ids = [api.post("/tasks", json={"user_id": user["id"], "title": f"t{n}"}).json()["id"] for n in range(10)]

        def client(seed: int) -> list[tuple[int, int, dict[str, Any]]]:
            rng = random.Random(seed)  # noqa: S311 (test data, not security)
            answers = []
            with httpx.Client(base_url=api.base_url, headers=api.headers, timeout=30) as own:
                for n in range(12):
                    chosen = [rng.choice(ids) for _ in range(8)]
                    body = {"task_ids": chosen, "new_status": statuses[(seed + n) % 4]}
                    response = own.post("/tasks/bulk-update-state", json=body)
                    answers.append((response.status_code, len(set(chosen)), response.json()))
            return answers

        with ThreadPoolExecutor(16) as pool:
            answers = [a for batch in pool.map(client, range(16)) for a in batch]
        final = api.get("/tasks", params={"user_id": user["id"]}).json()
        api.close()

    assert {status for status, _, _ in answers} <= {200, 503}, [a for a in answers if a[0] not in {200, 503}][:3]
    for status, distinct, body in answers:
        if status == 200:
            assert body == {"updated_count": distinct}
        else:
            assert body["type"] == "urn:flux-dao:problem:unavailable"
    assert sum(1 for status, _, _ in answers if status == 200) >= len(answers) * 0.9
    assert final["total"] == 10
    assert {item["status"] for item in final["items"]} <= set(statuses)
