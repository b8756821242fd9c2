"""Graceful shutdown of a real ``flux-dao serve`` process on SIGTERM (issue #4, operations).

What a deployment relies on when it stops or rolls a replica:

- a request already being served when SIGTERM arrives completes with its normal answer, and its write is stored;
- new connections are refused at once (the listening socket is closed), while that request is still running;
- the process exits 0, and on PostgreSQL it has closed every pooled connection properly (no ``flux-dao`` session
  left, none that PostgreSQL saw abandoned), with no ERROR or traceback in the log;
- a request that outlives ``FLUX_DAO_SHUTDOWN_GRACE`` does not keep the process alive: it is cancelled when the grace
  period ends (uvicorn logs one ERROR saying so) and nothing of it is stored (on PostgreSQL the statement is
  cancelled on the server, not left to commit later; the client gets a 503 ``shutting-down`` problem with
  Retry-After instead of uvicorn's bare 500; on SQLite the request's wait for the write lock is cancelled alike). The
  process exits 0 right after the grace period on both backends.

Exit codes: uvicorn 0.54 itself, after a graceful shutdown, raises SIGTERM again under the handler it found, so with
the default handler the process dies of it (-15) whether or not the grace period was exceeded; ``flux-dao serve``
installs a handler that exits 0 instead.

A request is held "in flight" without a fault proxy: the test takes a lock the request needs (a row lock with
``SELECT ... FOR UPDATE`` on PostgreSQL, SQLite's write lock with ``BEGIN IMMEDIATE``) and PATCHes that row.

Budget: about 20 s (four server starts of 1-2 s each, the 2 s grace period twice, SQLite's 4 s busy timeout once).
"""

import asyncio
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.conftest import API_KEY, BACKENDS, KEY_HEADER, PG_DSN, _pg_admin
from tests.live import LiveServer, live_server

GRACE = 2  # seconds, for the request that outlives the grace period
ENV = {"SERVICE_API_KEYS": API_KEY, "FLUX_DAO_LOG_FORMAT": "text"}


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of ``backend`` used by this test alone: on PostgreSQL a fresh one, so that its session counters
    and ``pg_stat_activity`` show only this test's server."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'flux_dao.db'}"
        return
    name = f"flux_dao_shutdown_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_DSN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class RowLock:
    """Holds the lock a PATCH of one row needs, from outside the service, until ``release``."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.is_postgres = database_url.startswith("postgresql")
        self._runner = asyncio.Runner()
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    def pg(self, sql: str, *args: Any) -> list[Any]:
        """Run one query on a short-lived admin connection to the test database (not the lock's)."""

        async def run() -> list[Any]:
            conn = await asyncpg.connect(self._dsn, server_settings={"application_name": "flux-dao-test"})
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return self._runner.run(run())

    @property
    def _dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def hold(self, user_id: str) -> None:
        if self.is_postgres:
            self._pg = self._runner.run(
                asyncpg.connect(self._dsn, server_settings={"application_name": "flux-dao-test"})
            )
            self._runner.run(self._pg.execute("BEGIN"))
            self._runner.run(self._pg.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user_id)))
        else:
            self._sqlite = sqlite3.connect(urlsplit(self.url).path.removeprefix("/"), isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")  # SQLite's write lock: every write waits for it

    def wait_until_blocked(self, request: threading.Thread) -> None:
        """Return once the service's PATCH is waiting for the lock (observed in ``pg_stat_activity`` on PostgreSQL;
        on SQLite, which shows nothing, once the request has had time to reach it and has not finished)."""
        deadline = time.monotonic() + 10
        if self.is_postgres:
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'flux-dao' AND wait_event_type = 'Lock'"
            )
            while self.pg(query)[0][0] == 0:
                assert time.monotonic() < deadline, "the PATCH never waited for the row lock"
                time.sleep(0.05)
        else:
            time.sleep(0.5)
        assert request.is_alive(), "the PATCH finished although the lock is held"

    def release(self) -> None:
        if self._pg is not None:
            self._runner.run(self._pg.execute("ROLLBACK"))
            self._runner.run(self._pg.close())
            self._pg = None
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None

    def onboarded(self, user_id: str) -> bool:
        """The stored value, read directly (the service has exited)."""
        if self.is_postgres:
            return bool(self.pg("SELECT onboarded FROM users WHERE id = $1", uuid.UUID(user_id))[0][0])
        with sqlite3.connect(urlsplit(self.url).path.removeprefix("/")) as conn:
            row = conn.execute("SELECT onboarded FROM users WHERE id = ?", (uuid.UUID(user_id).bytes,)).fetchone()
        return bool(row[0])

    def assert_pool_closed_cleanly(self) -> None:
        """No ``flux-dao`` session is left on the database, and PostgreSQL saw every one of them end with a proper
        Terminate message: ``sessions_abandoned`` counts sessions whose client just went away (a pool that was
        never closed, a process that died)."""
        if not self.is_postgres:
            return
        deadline = time.monotonic() + 5
        left = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'flux-dao'"
        )
        while (count := self.pg(left)[0][0]) != 0:
            assert time.monotonic() < deadline, f"{count} flux-dao connection(s) still open after exit"
            time.sleep(0.05)
        time.sleep(0.2)  # a backend reports its session statistics as it exits, just after leaving pg_stat_activity
        stats = self.pg(
            "SELECT sessions, sessions_abandoned, sessions_fatal, sessions_killed "
            "FROM pg_stat_database WHERE datname = current_database()"
        )[0]
        assert stats["sessions"] > 0, "the server never connected: the check below would prove nothing"
        assert (stats["sessions_abandoned"], stats["sessions_fatal"], stats["sessions_killed"]) == (0, 0, 0), dict(
            stats
        )

    def __enter__(self) -> "RowLock":
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
        self._runner.close()


def start_patch(server: LiveServer, user_id: str) -> tuple[threading.Thread, dict[str, Any]]:
    """PATCH the user in a thread; the outcome (``response`` or ``error``) lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["response"] = httpx.patch(
                f"{server.base}/api/v1/users/{user_id}",
                json={"onboarded": True},
                headers={KEY_HEADER: API_KEY},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def sigterm(server: LiveServer) -> float:
    server.process.send_signal(signal.SIGTERM)
    return time.monotonic()


def assert_refuses_new_connections(server: LiveServer, sent_at: float) -> None:
    """A new TCP connection is refused within a second of SIGTERM, while the process is still running."""
    port = int(server.base.rsplit(":", 1)[1])
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except ConnectionRefusedError:
            break
        assert time.monotonic() - sent_at < 1.0, "still accepting connections 1 s after SIGTERM"
        time.sleep(0.05)
    assert server.process.poll() is None, "the process exited without waiting for the in-flight request"


def create_user(server: LiveServer) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base}/api/v1/users",
        json={"email": f"{uuid.uuid4().hex[:8]}@example.com"},
        headers={KEY_HEADER: API_KEY},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(database: str, tmp_path: Path) -> None:
    with RowLock(database) as lock, live_server(database, tmp_path, env=ENV) as server:
        user = create_user(server)
        assert user["onboarded"] is False
        lock.hold(user["id"])
        request, outcome = start_patch(server, user["id"])
        lock.wait_until_blocked(request)

        sent_at = sigterm(server)
        assert_refuses_new_connections(server, sent_at)
        time.sleep(0.3)
        assert request.is_alive()  # still waiting for the lock
        assert server.process.poll() is None  # and the process waits for it
        lock.release()

        request.join(timeout=10)
        assert "error" not in outcome, outcome
        response = outcome["response"]
        assert response.status_code == 200, response.text
        changed = response.json()
        assert changed == {**user, "onboarded": True, "version": 2, "updated_at": changed["updated_at"]}
        assert server.process.wait(timeout=10) == 0, server.output
        assert lock.onboarded(user["id"]) is True
        lock.assert_pool_closed_cleanly()
    log = server.output
    assert "Application shutdown complete" in log, log
    assert "Traceback" not in log, log
    assert "ERROR" not in log, log


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_request_longer_than_the_grace_period_does_not_hold_the_process(database: str, tmp_path: Path) -> None:
    """uvicorn 0.54 cancels what still runs when the grace period ends, logs one ERROR, runs the app's shutdown and
    exits; flux-dao makes that exit 0 (uvicorn alone re-raises SIGTERM and dies of it: -15, in both tests)."""
    # the limits that would end the wait on their own (statement timeout, SQLite's busy timeout) are longer than
    # the grace period, so only the shutdown can end it
    env = {**ENV, "FLUX_DAO_SHUTDOWN_GRACE": str(GRACE), "DB_STATEMENT_TIMEOUT": "60", "DB_CONNECT_TIMEOUT": "4"}
    # PostgreSQL: the statement is cancelled on the server; SQLite: the request's wait for the write lock (an
    # asyncio sleep between tries, never a busy wait inside SQLite) is cancelled. Either way the client gets a 503
    # problem, the process is gone within a moment of the grace period, and nothing is committed.
    slack = 2
    with RowLock(database) as lock, live_server(database, tmp_path, env=env) as server:
        user = create_user(server)
        lock.hold(user["id"])
        request, outcome = start_patch(server, user["id"])
        lock.wait_until_blocked(request)

        sent_at = sigterm(server)
        assert_refuses_new_connections(server, sent_at)
        code = server.process.wait(timeout=GRACE + slack + 2)
        took = time.monotonic() - sent_at
        lock.release()  # only now: the request was cut off while it still waited

        assert code == 0, server.output
        assert GRACE <= took < GRACE + slack, f"exited {took:.1f} s after SIGTERM with a {GRACE} s grace period"
        request.join(timeout=5)
        # the client learns it failed: a 503 problem, not the server's bare 500 nor a closed connection
        assert "response" in outcome, outcome
        response = outcome["response"]
        assert response.status_code == 503, outcome
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"] == "urn:flux-dao:problem:shutting-down"
        assert lock.onboarded(user["id"]) is False  # and it did fail: the UPDATE was cancelled, not left to commit
        lock.assert_pool_closed_cleanly()
    log = server.output
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in log, log
    assert "did not close in time" not in log, log
