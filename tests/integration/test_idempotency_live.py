"""``Idempotency-Key`` on a real ``flux-dao serve``: what a retrying client over a real network notices.

- **Two workers, then a restart**: the same keyed POST sent many times at once, each over a new connection (so both
  workers take some), creates one row; every other answer is its replay. After the server is stopped and started
  again on the same database, the repeat is still a replay.
- **The database link cut during the write** (PostgreSQL through ``tests.faultproxy.FaultProxy``): the client gets a
  503, the link comes back, the client retries the same keyed POST until it succeeds: one row.
- **The answer lost on the way back** (the client gives up before a slow write answers), then retried: one row, and
  the retry gets the first request's answer. Both backends.

Budget: about 45 s (75 s on a busy 2-core machine), nearly all of it seven server starts; every test is slow-marked.
"""

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flux_dao.store.migrations import upgrade
from tests.conftest import API_KEY, KEY_HEADER, PG_DSN, make_settings, run_sql
from tests.faultproxy import FaultProxy, pg_direct
from tests.live import LiveServer, live_server
from tests.problems import assert_problem

API = "/api/v1"
REPLAYED = "idempotent-replayed"


def new_key() -> str:
    return f"live-{uuid.uuid4()}"


def create_user(base: str) -> str:
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    response = httpx.post(f"{base}{API}/users", json={"email": email}, headers={KEY_HEADER: API_KEY}, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def tasks_titled(url: str, title: str) -> int:
    """How many tasks hold ``title``, read with SQL (not through the service)."""
    rows = run_sql(url, f"SELECT COUNT(*) FROM tasks WHERE title = '{title}'")  # noqa: S608 (a test's own uuid)
    count = rows[0][0]
    assert isinstance(count, int)
    return count


def post_until_answered(url: str, body: dict[str, Any], key: str, request_id: str, deadline: float) -> httpx.Response:
    """POST over a new connection; while the key's first request runs (409 in progress), wait a little and again."""
    headers = {KEY_HEADER: API_KEY, "Idempotency-Key": key, "X-Request-ID": request_id}
    while True:
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        if response.status_code != 409:
            return response
        assert_problem(response, 409, "idempotency-in-progress")
        assert int(response.headers["retry-after"]) >= 1
        assert time.monotonic() < deadline, "the key stayed in progress"
        time.sleep(0.02)


# --- two workers, then a restart ------------------------------------------------------------------------------------

SENDERS = 16
SENDS = 48
WORKER_STARTED = re.compile(r"\[(\d+)\] uvicorn\.error: Application startup complete")
WORKER_DIED = re.compile(r"Child process \[(\d+)\] died")
KEYED_POST_SERVED = re.compile(r"\[(\d+)\] flux_dao\.access: POST .* request_id=idem-")


def wait_for_workers(server: LiveServer, count: int, timeout: float = 60.0) -> None:
    """Until ``count`` workers have started and are alive (a loaded machine may start, or restart, one late)."""
    deadline = time.monotonic() + timeout
    while True:
        output = server.output
        alive = set(WORKER_STARTED.findall(output)) - set(WORKER_DIED.findall(output))
        if len(alive) >= count:
            return
        assert time.monotonic() < deadline, f"{count} workers did not start:\n{output}"
        time.sleep(0.1)


@pytest.mark.slow
def test_replay_holds_across_two_workers_and_a_restart(fresh_url: str, tmp_path: Path) -> None:
    """The same keyed POST, sent 48 times at once from 16 threads over new connections, then again one at a time
    until both workers have answered it: one row, one answer that ran, every other its replay, byte for byte. After
    a restart on the same database the key still replays (and still refuses another body)."""
    env = {"SERVICE_API_KEYS": API_KEY, "FLUX_DAO_LOG_FORMAT": "text", "LOG_LEVEL": "INFO"}
    title = f"once-{uuid.uuid4().hex}"
    key = new_key()
    with live_server(fresh_url, tmp_path, env=env, args=("--workers", "2")) as server:
        wait_for_workers(server, 2)
        url = f"{server.base}{API}/tasks"
        body = {"user_id": create_user(server.base), "title": title}
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(SENDERS) as pool:
            answers = list(pool.map(lambda n: post_until_answered(url, body, key, f"idem-{n}", deadline), range(SENDS)))
        # the kernel decides which worker accepts a connection: go on until both have answered the key
        while len(set(KEYED_POST_SERVED.findall(server.output))) < 2:
            assert time.monotonic() < deadline, f"the requests did not reach both workers:\n{server.output}"
            answers.append(post_until_answered(url, body, key, f"idem-{len(answers)}", deadline))

    assert [a.status_code for a in answers] == [201] * len(answers), [a.text for a in answers if a.status_code != 201]
    ran = [a for a in answers if REPLAYED not in a.headers]
    assert len(ran) == 1, f"{len(ran)} requests ran instead of one"
    first = ran[0]
    for answer in answers:
        assert answer.content == first.content
        assert (answer.headers["location"], answer.headers["etag"]) == (first.headers["location"], '"1"')
    assert sum(a.headers.get(REPLAYED) == "true" for a in answers) == len(answers) - 1
    assert tasks_titled(fresh_url, title) == 1

    with live_server(fresh_url, tmp_path, env=env) as restarted:
        url = f"{restarted.base}{API}/tasks"
        headers = {KEY_HEADER: API_KEY, "Idempotency-Key": key}
        repeat = httpx.post(url, json=body, headers=headers, timeout=30)
        assert repeat.status_code == 201, repeat.text
        assert repeat.content == first.content
        assert repeat.headers[REPLAYED] == "true"
        assert repeat.headers["location"] == first.headers["location"]
        reused = httpx.post(url, json={**body, "title": "another"}, headers=headers, timeout=30)
        assert_problem(reused, 422, "idempotency-key-reused")
    assert tasks_titled(fresh_url, title) == 1


# --- the answer lost on the way back (both backends) ---------------------------------------------------------------

CLIENT_TIMEOUT = 0.5
SLOW_WRITE = 2.0


SQLITE_SLOW_TRIGGER = (
    "CREATE TRIGGER flux_test_slow BEFORE INSERT ON tasks BEGIN SELECT count(*) FROM ("
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000) SELECT x FROM c); END"
)


@contextlib.contextmanager
def slow_task_inserts(url: str) -> Iterator[None]:
    """Make task inserts slow (a trigger): sleeping ``SLOW_WRITE`` seconds on PostgreSQL; on SQLite, counting to
    four million (a second or more, during which the worker, running SQLite on its event loop, answers nothing)."""
    if url.startswith("sqlite"):
        run_sql(url, SQLITE_SLOW_TRIGGER)
        drop = ["DROP TRIGGER flux_test_slow"]
    else:
        run_sql(
            url,
            "CREATE FUNCTION flux_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"PERFORM pg_sleep({SLOW_WRITE}); RETURN NEW; END $$",
            "CREATE TRIGGER flux_test_slow BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION flux_test_slow()",
        )
        drop = ["DROP TRIGGER flux_test_slow ON tasks", "DROP FUNCTION flux_test_slow()"]
    try:
        yield
    finally:
        run_sql(url, *drop)


@pytest.mark.slow
def test_a_post_whose_answer_was_lost_is_retried_into_one_row(fresh_url: str, tmp_path: Path) -> None:
    """The client gives up on a keyed POST before its (slow) write answers, and retries with the same key until it
    gets an answer: the retries meanwhile are told the first still runs (PostgreSQL) or wait behind it (SQLite, whose
    worker is busy with the write), then get its answer, replayed; one row."""
    env = {"SERVICE_API_KEYS": API_KEY, "DB_STATEMENT_TIMEOUT": "60"}
    with live_server(fresh_url, tmp_path, env=env) as server:
        url = f"{server.base}{API}/tasks"
        title = f"lost-{uuid.uuid4().hex}"
        body = {"user_id": create_user(server.base), "title": title}
        key = new_key()
        headers = {KEY_HEADER: API_KEY, "Idempotency-Key": key}
        with slow_task_inserts(fresh_url):
            started = time.monotonic()
            with pytest.raises(httpx.TimeoutException):
                httpx.post(url, json=body, headers=headers, timeout=CLIENT_TIMEOUT)
            in_progress = 0
            while True:
                retry = httpx.post(url, json=body, headers=headers, timeout=30)
                if retry.status_code != 409:
                    break
                assert_problem(retry, 409, "idempotency-in-progress")
                in_progress += 1
                assert time.monotonic() - started < 30, "the key stayed in progress"
                time.sleep(0.1)
        # the first request ran on (a client that gives up does not stop a write): the retries waited for it
        # (PostgreSQL: told it still runs; SQLite: queued behind it), then got its answer
        assert retry.status_code == 201, retry.text
        assert retry.json()["title"] == title
        assert retry.headers[REPLAYED] == "true"
        if fresh_url.startswith("postgresql"):
            assert in_progress >= 1
        again = httpx.post(url, json=body, headers=headers, timeout=10)
        assert again.content == retry.content
        assert again.headers[REPLAYED] == "true"
        assert server.process.poll() is None
    assert tasks_titled(fresh_url, title) == 1


# --- the database link cut during the write (PostgreSQL, through the fault proxy) ----------------------------------

FAULT_ENV = {
    "SERVICE_API_KEYS": API_KEY,
    "DB_CONNECT_TIMEOUT": "1",
    "DB_POOL_TIMEOUT": "1",
    "DB_STATEMENT_TIMEOUT": "2",
    "DB_POOL_SIZE": "4",
}
PROMPT_RETRY = 5.0
"""How long after the link is back a retry may still be refused (503 or 409 in progress)."""


@dataclass
class Proxied:
    proxy: FaultProxy
    server: LiveServer
    direct: str
    """asyncpg DSN of the same database, bypassing proxy and service."""

    @property
    def url(self) -> str:
        return self.direct.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """A fresh PostgreSQL database migrated directly, and a live server reaching it only through a fault proxy."""
    name = f"flux_dao_idem_faults_{uuid.uuid4().hex[:12]}"
    pg_direct(PG_DSN, f'CREATE DATABASE "{name}"')
    direct = f"{PG_DSN.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(make_settings(direct.replace("postgresql://", "postgresql+asyncpg://", 1)))
        with FaultProxy() as proxy:
            through_proxy = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{name}"
            workdir = tmp_path_factory.mktemp("idempotency-faults")
            with live_server(through_proxy, workdir, env=FAULT_ENV, args=("--no-migrate",)) as server:
                yield Proxied(proxy, server, direct)
                assert server.process.poll() is None, "the service died during the fault tests"
    finally:
        pg_direct(PG_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cut_during_a_slow_insert(service: Proxied, url: str, body: dict[str, Any], key: str) -> httpx.Response:
    """Send the keyed POST, and cut the database link while its INSERT runs (a trigger makes it take a second);
    the link stays cut a moment after the answer, then comes back."""
    pg_direct(
        service.direct,
        "CREATE FUNCTION flux_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_sleep(1); RETURN NEW; END $$",
    )
    pg_direct(
        service.direct,
        "CREATE TRIGGER flux_test_slow BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION flux_test_slow()",
    )
    headers = {KEY_HEADER: API_KEY, "Idempotency-Key": key}
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, url, json=body, headers=headers, timeout=30)
            time.sleep(0.4)
            service.proxy.cut()
            response = pending.result()
        time.sleep(0.2)
    finally:
        service.proxy.restore()
        time.sleep(1.0)  # the aborted statement ends on the server before the trigger goes
        pg_direct(service.direct, "DROP TRIGGER IF EXISTS flux_test_slow ON tasks")
        pg_direct(service.direct, "DROP FUNCTION IF EXISTS flux_test_slow()")
    assert_problem(response, 503, "unavailable")
    assert int(response.headers["retry-after"]) >= 1
    return response


@pytest.mark.slow
@pytest.mark.postgres
def test_a_post_retried_after_a_cut_database_link_stores_one_row(proxied: Proxied) -> None:
    """The link to PostgreSQL is cut while a keyed POST's INSERT runs: the client gets a 503, the link comes back,
    and the client retries the same request (honouring 503s, and 409 in progress with its Retry-After) until it
    succeeds: exactly one row, and repeats replay it.

    The cut also stops the service from releasing the key at once; it releases it in the background as soon as the
    database answers again, so the retry succeeds within seconds, not after the claim's 60 s lease.
    """
    url = f"{proxied.server.base}{API}/tasks"
    title = f"cut-{uuid.uuid4().hex}"
    body = {"user_id": create_user(proxied.server.base), "title": title}
    key = new_key()
    cut_during_a_slow_insert(proxied, url, body, key)
    assert tasks_titled(proxied.url, title) == 0  # the cut aborted the INSERT: nothing committed

    headers = {KEY_HEADER: API_KEY, "Idempotency-Key": key}
    restored = time.monotonic()
    while True:
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        if response.status_code == 201:
            break
        if response.status_code == 503:
            assert_problem(response, 503, "unavailable")
        else:
            assert_problem(response, 409, "idempotency-in-progress")
        assert time.monotonic() - restored < PROMPT_RETRY, "the key was not released soon after the link came back"
        time.sleep(0.2)
    assert REPLAYED not in response.headers  # the first never committed: the retry is the one that ran
    assert response.json()["title"] == title
    repeat = httpx.post(url, json=body, headers=headers, timeout=30)
    assert repeat.status_code == 201
    assert repeat.content == response.content
    assert repeat.headers[REPLAYED] == "true"
    assert tasks_titled(proxied.url, title) == 1
