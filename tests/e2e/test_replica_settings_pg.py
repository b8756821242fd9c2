"""Poolers and read replicas on the real PostgreSQL: prepared statement names, startup settings, the direct URL
migrations use, and consistency tokens (with the "standby" being the primary itself, so it is reported down).

The replica rig (``tests/rig``) proves the same against pgbouncer and a streaming standby; these run in a second.
"""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flux_dao.config import DatabaseSettings, PreparedStatements, Settings
from flux_dao.http.app import create_app
from flux_dao.store.consistency import parse_position
from flux_dao.store.db import Database, _UniquelyNamedConnection
from flux_dao.store.migrations import alembic_config, live_drift, migration_heads, upgrade
from tests import factories
from tests.conftest import API_KEY, KEY_HEADER, MANIFEST, fresh_database, make_settings, run_sql
from tests.factories import API
from tests.problems import assert_problem

pytestmark = pytest.mark.postgres

TOKEN = "X-Flux-Consistency"
CLOSED_PORT_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/flux"
DOUBLE = sa.text("SELECT CAST(:n AS integer) * 2")
USERS = sa.text("SELECT count(*) FROM users WHERE email <> :email")
PREPARED = sa.text("SELECT name FROM pg_prepared_statements ORDER BY name")
SHOW_TIMEOUT = sa.text("SHOW statement_timeout")
WAL_NOW = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's own database, migrated to head (dropped at the end)."""
    with fresh_database("postgres", tmp_path_factory.mktemp("replicas"), prefix="replicas") as fresh:
        upgrade(make_settings(fresh))
        yield fresh


def on_database(url: str, mode: PreparedStatements, read: Any, **settings: Any) -> tuple[Any, Database]:
    """``read(conn)`` on one pooled connection of a fresh ``Database`` (closed afterwards), and that Database."""

    async def run() -> Any:
        db = Database(DatabaseSettings(url=url, prepared_statements=mode, pool_size=1, **settings))
        await db.start()
        try:
            async with db.reading() as conn:
                return await read(conn), db
        finally:
            await db.dispose()

    return asyncio.run(run())  # type: ignore[no-any-return]


async def read_and_list_prepared(conn: Any) -> list[str]:
    for n in range(3):
        assert await conn.first(DOUBLE, {"n": n}) == (2 * n,)
    assert await conn.scalar(USERS, {"email": "nobody@example.com"}) >= 0
    return [row[0] for row in await conn.all(PREPARED, {})]


# -- DB_PREPARED_STATEMENTS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [PreparedStatements.ON, PreparedStatements.AUTO])
def test_named_statements_carry_this_processs_tag(url, mode):
    names, db = on_database(url, mode, read_and_list_prepared)
    assert len(names) >= 3, names  # DOUBLE, USERS and the look at pg_prepared_statements itself
    prefix = f"__flux_{_UniquelyNamedConnection._tag}_"
    assert all(name.startswith(prefix) for name in names), names
    assert db.named_statements  # straight to PostgreSQL: auto found no pooler


def test_off_prepares_no_named_statement(url):
    names, db = on_database(url, PreparedStatements.OFF, read_and_list_prepared)
    assert names == []
    assert not db.named_statements


def test_the_process_tag_is_the_same_on_every_connection(url):
    first, _ = on_database(url, PreparedStatements.ON, read_and_list_prepared)
    second, _ = on_database(url, PreparedStatements.ON, read_and_list_prepared)
    assert {name.split("_asyncpg_")[0] for name in first + second} == {f"__flux_{_UniquelyNamedConnection._tag}"}


# -- statement_timeout as a startup setting ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_timeout(url: str) -> str:
    """``statement_timeout`` a session gets when the client sets none."""
    value = str(run_sql(url, "SHOW statement_timeout")[0][0])
    assert value != "5s"  # else the tests below could not tell
    return value


async def show_timeout(conn: Any) -> str:
    return str(await conn.scalar(SHOW_TIMEOUT, {}))


def test_off_sends_no_statement_timeout(url, server_timeout):
    shown, _ = on_database(url, PreparedStatements.OFF, show_timeout, statement_timeout=5.0)
    assert shown == server_timeout


@pytest.mark.parametrize("mode", [PreparedStatements.ON, PreparedStatements.AUTO])
def test_on_and_auto_send_db_statement_timeout(url, mode):
    shown, _ = on_database(url, mode, show_timeout, statement_timeout=5.0)
    assert shown == "5s"
    shown, _ = on_database(url, mode, show_timeout, statement_timeout=0.25)
    assert shown == "250ms"


# -- DATABASE_DIRECT_URL: migrations -------------------------------------------------------------------------------


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[Settings]:
    """Settings whose DATABASE_URL cannot be reached, with DATABASE_DIRECT_URL at an empty database."""
    with fresh_database("postgres", tmp_path, prefix="direct") as fresh:
        database = DatabaseSettings(url=CLOSED_PORT_URL, direct_url=fresh, connect_timeout=2.0)
        yield Settings(database=database, manifest_path=MANIFEST)


def at_revisions(settings: Settings) -> frozenset[str]:
    assert settings.database.direct_url is not None
    rows = run_sql(settings.database.direct_url, "SELECT version_num FROM alembic_version")
    return frozenset(str(row[0]) for row in rows)


def heads(settings: Settings) -> frozenset[str]:
    found = migration_heads(settings.migrations_dir)
    assert found
    return found


def test_the_migrations_run_on_the_direct_url(direct):
    from alembic import command

    command.upgrade(alembic_config(direct), "head")  # what `upgrade` runs, through migrations/env.py
    assert at_revisions(direct) == heads(direct)


def test_upgrade_and_the_drift_check_need_only_the_direct_url(direct):
    move = upgrade(direct)
    assert set(move.after) == heads(direct)
    assert at_revisions(direct) == heads(direct)
    assert live_drift(direct) == []


# -- X-Flux-Consistency --------------------------------------------------------------------------------------------


def client_for(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers[KEY_HEADER] = API_KEY
        yield client


@pytest.fixture(scope="module")
def routed(url: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """An app whose DATABASE_READ_URL is the primary itself: not in recovery, so the standby is down."""
    yield from client_for(make_settings(url, database=DatabaseSettings(url=url, read_url=url)))


@pytest.fixture(scope="module")
def unrouted(url: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    yield from client_for(make_settings(url))


def wal_now(url: str) -> int:
    position = run_sql(url, WAL_NOW)[0][0]
    assert isinstance(position, int)
    return position


def token_of(response: Any) -> int:
    assert TOKEN in response.headers, dict(response.headers)
    position = parse_position(response.headers[TOKEN])
    assert position is not None, response.headers[TOKEN]
    return position


def test_a_write_answers_a_position_within_the_primarys_wal(routed, url):
    before = wal_now(url)
    response = routed.post(f"{API}/users", json={"email": "token-create@example.com"})
    assert response.status_code == 201, response.text
    written = token_of(response)
    assert before < written <= wal_now(url)


def test_updates_and_deletes_answer_a_position_too(routed, url):
    created = routed.post(f"{API}/users", json={"email": "token-update@example.com"})
    user_id = created.json()["id"]
    updated = routed.patch(f"{API}/users/{user_id}", json={"onboarded": True})
    assert updated.status_code == 200, updated.text
    assert token_of(created) < token_of(updated) <= wal_now(url)
    deleted = routed.delete(f"{API}/users/{user_id}")
    assert deleted.status_code == 204, deleted.text
    assert token_of(updated) < token_of(deleted) <= wal_now(url)


def test_reads_take_a_token_and_answer_none(routed):
    created = routed.post(f"{API}/users", json={"email": "token-read@example.com"})
    token = created.headers[TOKEN]
    found = routed.get(f"{API}/users/{created.json()['id']}", headers={TOKEN: token})
    assert found.status_code == 200, found.text
    assert found.json()["email"] == "token-read@example.com"
    assert TOKEN not in found.headers
    listed = routed.get(f"{API}/users", params={"email": "token-read@example.com"}, headers={TOKEN: token.lower()})
    assert listed.status_code == 200, listed.text
    assert TOKEN not in listed.headers


def test_ready_reports_the_standby_down_and_stays_ready(routed):
    response = routed.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    standby = body["standby"]
    assert standby["state"] == "down"
    assert "not a standby" in standby["reason"]
    assert "lag_seconds" not in standby


@pytest.mark.parametrize("token", ["garbage", "1/2/3", "123456789/0", "0/16B3748 x", ""])
def test_a_malformed_token_is_refused_naming_the_header(routed, token):
    problem = assert_problem(routed.get(f"{API}/users", headers={TOKEN: token}), 422, "validation-error")
    assert TOKEN in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == [TOKEN]


def test_a_malformed_token_on_a_write_is_refused_before_it_runs(routed, url):
    email = "token-refused@example.com"
    response = routed.post(f"{API}/users", json={"email": email}, headers={TOKEN: "nope"})
    assert_problem(response, 422, "validation-error")
    assert run_sql(url, f"SELECT count(*) FROM users WHERE email = '{email}'") == [(0,)]  # noqa: S608


def test_without_a_read_url_no_token_is_answered(unrouted):
    user = factories.user(unrouted)
    response = unrouted.patch(f"{API}/users/{user['id']}", json={"onboarded": True})
    assert response.status_code == 200, response.text
    assert TOKEN not in response.headers
    ready = unrouted.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}


def test_a_malformed_token_does_not_hide_a_missing_key(routed):
    answer = routed.get(f"{API}/tasks", headers={TOKEN: "yesterday", KEY_HEADER: "not-a-key"})
    assert_problem(answer, 401, "unauthorized")


def test_the_probes_ignore_the_token(routed):
    assert routed.get("/health", headers={TOKEN: "yesterday"}).status_code == 200
    assert routed.get("/ready", headers={TOKEN: "yesterday"}).status_code == 200


def test_a_malformed_token_is_refused_without_a_read_url_too(unrouted):
    """The header means nothing without a standby, but a request is refused or accepted alike whatever the layout."""
    answer = unrouted.get(f"{API}/tasks", headers={TOKEN: "yesterday"})
    problem = assert_problem(answer, 422, "validation-error")
    assert [error["field"] for error in problem["errors"]] == [TOKEN]
    assert unrouted.get(f"{API}/tasks", headers={TOKEN: "0/16B3748"}).status_code == 200
