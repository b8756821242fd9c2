"""Shared fixtures: one migrated database per backend (SQLite file and a fresh PostgreSQL database), one app per
backend, and a ``client`` that wipes every table after each test.

PostgreSQL is required: when 127.0.0.1:5432 does not answer, every postgres test fails (never skips), so CI cannot
pass without it. ``-m sqlite`` / ``-m postgres`` select one backend.
"""

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flux_dao.config import DatabaseSettings, Settings
from flux_dao.http.app import create_app
from flux_dao.http.plugin import FluxDaoPlugin
from flux_dao.store.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "resources.yaml"
PG_DSN = os.environ.get("FLUX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "test-key-0123456789"
KEY_HEADER = "X-Flux-Service-Key"

ADOPTED = os.environ.get("FLUX_TEST_ADOPTED") == "1"
"""Give the postgres tests a database of the earlier Flux service's schema and rows, brought to the migration head
by ``flux-dao adopt`` instead of by the migrations (tests/adopt/test_adopt.py runs the acceptance tests so)."""

BACKENDS = [pytest.param("sqlite", marks=pytest.mark.sqlite), pytest.param("postgres", marks=pytest.mark.postgres)]


def _pg_admin(sql: str) -> None:
    async def run() -> None:
        try:
            conn = await asyncpg.connect(PG_DSN, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(f"PostgreSQL at {PG_DSN} is required for the postgres tests and is not reachable: {exc!r}")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session, dropped at the end."""
    name = f"flux_dao_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database of ``backend``."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_database"))
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'flux_dao.db'}"


def make_settings(url: str, **overrides: object) -> Settings:
    return replace(
        Settings(database=DatabaseSettings(url=url), manifest_path=MANIFEST, api_keys=(API_KEY,)),
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def settings(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a database migrated to head with the project's own migrations."""
    result = make_settings(database_url(backend, request, tmp_path_factory))
    if backend == "postgres" and ADOPTED:
        from flux_dao.store.adopt import State, adopt
        from tests.adopt.earlier import fill_earlier, install_earlier

        dsn = result.database.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        install_earlier(dsn)
        fill_earlier(dsn)
        adoption = adopt(result, apply=True, revision_dir=tmp_path_factory.mktemp("adoption"))
        assert adoption.state is State.APPLIED, adoption
    else:
        upgrade(result)
    return result


@pytest.fixture(scope="session")
def session_client(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers[KEY_HEADER] = API_KEY
        yield client


def wipe(client: TestClient) -> None:  # type: ignore[type-arg]
    """Delete every row, children first, through the app's own engine."""
    plugin = client.app.plugins.get(FluxDaoPlugin)
    tables = [r.table for r in plugin.resources.items]

    async def run() -> None:
        async with plugin.db.writing() as conn:
            if plugin.db.is_postgres:
                names = ", ".join(t.name for t in tables)
                await conn.all(sa.text(f"TRUNCATE {names} CASCADE"), {})
            else:
                for table in reversed(tables):
                    await conn.rowcount(table.delete(), {})

    assert client.blocking_portal is not None
    client.blocking_portal.call(run)


@pytest.fixture
def client(session_client: TestClient) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The backend's app, authenticated with a valid service key; every table is emptied after the test."""
    session_client.headers[KEY_HEADER] = API_KEY
    try:
        yield session_client
    finally:
        session_client.headers[KEY_HEADER] = API_KEY
        wipe(session_client)


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path, prefix: str = "fresh") -> Iterator[str]:
    """An empty database of ``backend``: a SQLite file in ``folder``, or a PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / f'{prefix}.db'}"
        return
    name = f"flux_dao_{prefix}_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of ``backend`` for this test alone."""
    with fresh_database(backend, tmp_path) as url:
        yield url


def sql_uuid(url: str, value: str) -> str:
    """A UUID as an SQL literal for ``url``'s backend: 16 bytes on SQLite (a GUID's storage), text on PostgreSQL."""
    return f"X'{value.replace('-', '')}'" if url.startswith("sqlite") else f"'{value}'"


def run_sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run SQL as an outside tool would (sqlite3 / asyncpg, not the service); the rows of the last statement."""
    if url.startswith("sqlite"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                rows = conn.execute(statement).fetchall()
            conn.commit()
            return rows

    async def run() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=5)
        try:
            records = []
            for statement in statements:
                records = await conn.fetch(statement)
            return [tuple(r.values()) for r in records]
        finally:
            await conn.close()

    return asyncio.run(run())
