"""Keyset cursors under concurrent writes (issue #9): a walk over 10,000 tasks while other clients insert and delete.

A live ``flux-dao serve`` (a real process, so the writers and the walker really run at the same time) serves a fresh
database seeded with 10,000 tasks by SQL: ``scheduled_at`` has 997 distinct values and 10% nulls, ``created_at``
2,500 distinct values and ``duration_minutes`` 50 distinct values and 1 in 7 nulls, so every page boundary falls
among ties and the ``id`` tie-breaker and nulls-last ordering carry the walk. While one client follows
``next_cursor`` (``limit`` 200, changing a little between pages), two writer threads insert tasks through the API
(sort keys spread over the same range, nulls included) and delete random existing ones.

After each walk: no id twice; every task that existed when the walk began and was not deleted during it was seen;
nothing was seen that never existed; the ids come in the requested order (nulls last, ``id`` breaking ties).
"""

import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, KEY_HEADER, fresh_database, run_sql, sql_uuid
from tests.factories import API
from tests.live import LiveServer, live_server

pytestmark = pytest.mark.slow

ROWS = 10_000
LIMITS = (200, 173, 200, 211)
BASE = datetime(2030, 1, 1, tzinfo=UTC)

SQLITE_SEED = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
INSERT INTO tasks (user_id, title, status, trigger_type, scheduled_at, duration_minutes, created_at)
SELECT {user}, 'seed ' || i, CASE i % 3 WHEN 0 THEN 'pending' WHEN 1 THEN 'missed' ELSE 'done' END, 'time',
       CASE WHEN i % 10 = 0 THEN NULL
            ELSE strftime('%Y-%m-%d %H:%M:%S', '2030-01-01', '+' || (i % 997) || ' minutes') || '.000000' END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 1 + i % 50 END,
       strftime('%Y-%m-%d %H:%M:%S', '2025-01-01', '+' || (i % 2500) || ' seconds') || '.000000'
FROM n
"""
POSTGRES_SEED = """
INSERT INTO tasks (user_id, title, status, trigger_type, scheduled_at, duration_minutes, created_at)
SELECT {user}, 'seed ' || i, (ARRAY['missed', 'done', 'pending'])[1 + i % 3], 'time',
       CASE WHEN i % 10 = 0 THEN NULL ELSE timestamptz '2030-01-01 00:00:00Z' + (i % 997) * interval '1 minute' END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 1 + i % 50 END,
       timestamptz '2025-01-01 00:00:00Z' + (i % 2500) * interval '1 second'
FROM generate_series(1, {rows}) AS i
"""


@dataclass
class Served:
    server: LiveServer
    url: str
    user_id: str


def present_ids(url: str) -> set[str]:
    """The ids of every task in the database right now, read with SQL (not through the service)."""
    rows = run_sql(url, "SELECT id FROM tasks")
    return {str(uuid.UUID(bytes=r[0])) if isinstance(r[0], bytes) else str(r[0]) for r in rows}


@pytest.fixture(scope="module")
def served(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A live server over a fresh database holding one user and 10,000 seeded tasks."""
    folder = tmp_path_factory.mktemp(f"cursor-walk-{backend}")
    args = ("--workers", "2") if backend == "postgres" else ()
    with (
        fresh_database(backend, folder, "cursor_walk") as url,
        live_server(url, folder, env={"SERVICE_API_KEYS": API_KEY}, args=args) as server,
    ):
        response = httpx.post(
            f"{server.base}{API}/users", json={"email": "walker@example.com"}, headers={KEY_HEADER: API_KEY}
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]
        seed = SQLITE_SEED if backend == "sqlite" else POSTGRES_SEED
        run_sql(url, seed.format(rows=ROWS, user=sql_uuid(url, user_id)))
        counts = run_sql(
            url,
            "SELECT COUNT(*), COUNT(scheduled_at), COUNT(DISTINCT scheduled_at), COUNT(duration_minutes), "
            "COUNT(DISTINCT duration_minutes), COUNT(DISTINCT created_at) FROM tasks",
        )
        assert counts == [(ROWS, ROWS - ROWS // 10, 997, ROWS - ROWS // 7, 50, 2500)], counts
        yield Served(server, url, user_id)


@dataclass
class Writes:
    """What the writer threads did, with the monotonic time of each write."""

    inserted: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    times: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def writer(served: Served, victims: list[str], writes: Writes, stop: threading.Event, seed: int) -> None:
    """Insert a task and delete a random existing one, again and again, until ``stop`` is set."""
    rng = random.Random(seed)  # noqa: S311 (test data, not security)
    with httpx.Client(base_url=f"{served.server.base}{API}", headers={KEY_HEADER: API_KEY}, timeout=30) as api:
        while not stop.is_set():
            minute = rng.randrange(997)
            body = {
                "user_id": served.user_id,
                "title": f"concurrent {seed}",
                "status": rng.choice(["pending", "missed", "done"]),
                "scheduled_at": None if rng.random() < 0.1 else (BASE + timedelta(minutes=minute)).isoformat(),
                "duration_minutes": None if rng.random() < 0.15 else rng.randint(1, 50),
            }
            created = api.post("/tasks", json=body)
            with writes.lock:
                victim = victims.pop(rng.randrange(len(victims))) if victims else None
            deleted = api.delete(f"/tasks/{victim}") if victim else None
            with writes.lock:
                writes.times.append(time.monotonic())
                if created.status_code == 201:
                    writes.inserted.add(created.json()["id"])
                else:
                    writes.failures.append(f"POST {created.status_code} {created.text[:200]}")
                if deleted is not None and deleted.status_code in (200, 204):
                    writes.deleted.add(str(victim))
                elif deleted is not None:
                    writes.failures.append(f"DELETE {deleted.status_code} {deleted.text[:200]}")
            time.sleep(0.002)


def walk(served: Served, params: dict[str, str]) -> tuple[list[dict[str, Any]], float, float]:
    """Follow ``next_cursor`` to the end; the items, and the monotonic times of the first and last answers."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    first = last = 0.0
    with httpx.Client(base_url=f"{served.server.base}{API}", headers={KEY_HEADER: API_KEY}, timeout=60) as api:
        for number in range(10 * ROWS // min(LIMITS)):
            query = {**params, "limit": str(LIMITS[number % len(LIMITS)])}
            if cursor is not None:
                query["cursor"] = cursor
            response = api.get("/tasks", params=query)
            assert response.status_code == 200, f"page {number + 1}: {response.text}"
            page = response.json()
            first = first or time.monotonic()
            last = time.monotonic()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items, first, last
            time.sleep(0.01)  # leave the writers room between pages
    pytest.fail("the walk did not end")


def value(name: str, raw: Any) -> Any:
    return datetime.fromisoformat(raw) if raw is not None and name.endswith("_at") else raw


def compare(terms: list[tuple[str, bool]], a: dict[str, Any], b: dict[str, Any]) -> int:
    """The list order: each term ascending or descending, nulls last either way."""
    for name, descending in terms:
        x, y = value(name, a[name]), value(name, b[name])
        if x == y:
            continue
        if x is None:
            return 1
        if y is None:
            return -1
        result = -1 if x < y else 1
        return -result if descending else result
    return 0


ORDERS = {
    # the query's sort parameter (none: the default order) -> the terms, id last in the first term's direction
    "": [("created_at", True), ("id", True)],
    "scheduled_at": [("scheduled_at", False), ("id", False)],
    "-duration_minutes,scheduled_at": [("duration_minutes", True), ("scheduled_at", False), ("id", True)],
}


@pytest.mark.parametrize("sort", list(ORDERS))
def test_cursor_walk_under_concurrent_inserts_and_deletes(served, sort):
    before = present_ids(served.url)
    victims = list(before)
    random.Random(len(sort)).shuffle(victims)  # noqa: S311 (test data, not security)
    writes, stop = Writes(), threading.Event()
    threads = [threading.Thread(target=writer, args=(served, victims, writes, stop, n)) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        items, first, last = walk(served, {"sort": sort} if sort else {})
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert not writes.failures, writes.failures[:5]
    during = [t for t in writes.times if first < t < last]
    assert len(during) >= 20, f"only {len(during)} writes landed during the walk: no concurrency to speak of"
    assert writes.deleted, "nothing was deleted during the walk"

    seen = [item["id"] for item in items]
    duplicates = sorted(i for i, n in Counter(seen).items() if n > 1)
    assert not duplicates, f"{len(duplicates)} ids returned twice, e.g. {duplicates[:5]}"
    skipped = before - writes.deleted - set(seen)
    assert not skipped, f"{len(skipped)} rows that existed throughout were never returned, e.g. {sorted(skipped)[:5]}"
    phantoms = set(seen) - before - writes.inserted
    assert not phantoms, f"rows that never existed: {sorted(phantoms)[:5]}"

    terms = ORDERS[sort]
    neighbours: list[tuple[dict[str, Any], dict[str, Any]]] = list(itertools.pairwise(items))
    out_of_order = [(n, a["id"], b["id"]) for n, (a, b) in enumerate(neighbours) if compare(terms, a, b) > 0]
    assert not out_of_order, f"{len(out_of_order)} neighbours out of order, first {out_of_order[:3]}"
