"""Limits and database failures end as clear problems, never as 500s or hangs."""

import asyncio
import random
import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flux_dao.errors import DatabaseUnavailableError
from flux_dao.repository import BulkUpdatePlan
from flux_dao.web.app import create_app
from flux_dao.web.plugin import FluxDaoPlugin
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, make_settings
from tests.factories import API


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
