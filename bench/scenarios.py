"""The scenarios S1..S7, as lists of concrete requests drawn from the seeded data.

Each scenario is a fixed list of requests (random ids, users and days, drawn with a fixed seed); the load generator
picks from it at random. The same list drives flux-dao and the floor, which serve the same paths.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import msgspec

from bench.seed import STATUSES, WINDOW_DAYS, Dataset

Request = tuple[str, str, str | None]
"""(method, path with query, JSON body or None)."""

API = "/api/v1/tasks"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    build: Callable[[Dataset, random.Random], Request]
    variants: int = 1000


def _day(data: Dataset, rng: random.Random) -> tuple[str, str]:
    day = data.start + timedelta(days=rng.randrange(WINDOW_DAYS))
    return day.strftime("%Y-%m-%dT00:00:00Z"), day.strftime("%Y-%m-%dT23:59:59Z")


def _s1(d: Dataset, r: random.Random) -> Request:
    return "GET", f"{API}/{r.choice(d.task_ids)}", None


def _s2(d: Dataset, r: random.Random) -> Request:
    return "GET", f"{API}?user_id={r.choice(d.user_ids)}&limit=20", None


def _s2b(d: Dataset, r: random.Random) -> Request:
    return "GET", f"{API}?user_id={r.choice(d.user_ids)}&limit=20&count=false", None


def _s3(d: Dataset, r: random.Random) -> Request:
    body = {"user_id": str(r.choice(d.user_ids)), "title": "bench create", "scheduled_at": _day(d, r)[0]}
    return "POST", API, msgspec.json.encode(body).decode()


def _s4(d: Dataset, r: random.Random) -> Request:
    return "PATCH", f"{API}/{r.choice(d.task_ids)}", msgspec.json.encode({"status": r.choice(STATUSES)}).decode()


def _s5(d: Dataset, r: random.Random) -> Request:
    start, end = _day(d, r)
    return "GET", f"{API}/by-timerange?user_id={r.choice(d.user_ids)}&start_at={start}&end_at={end}", None


def _s6(d: Dataset, r: random.Random) -> Request:
    end = (d.start + timedelta(days=WINDOW_DAYS)).strftime("%Y-%m-%dT00:00:00Z")
    start = d.start.strftime("%Y-%m-%dT00:00:00Z")
    return "GET", f"{API}/statistics?user_id={r.choice(d.user_ids)}&start_date={start}&end_date={end}", None


def _s7(d: Dataset, r: random.Random) -> Request:
    ids = [str(i) for i in r.sample(d.task_ids, min(100, len(d.task_ids)))]
    return "POST", f"{API}/bulk-update-state", msgspec.json.encode({"task_ids": ids, "new_status": "pending"}).decode()


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("S1", "GET task by id", _s1),
        Scenario("S2", "list a user's tasks, 20 per page, with total", _s2),
        Scenario("S2b", "the same, count skipped", _s2b),
        Scenario("S3", "POST task", _s3),
        Scenario("S4", "PATCH task status", _s4),
        Scenario("S5", "by-timerange, one user, one day", _s5),
        Scenario("S6", "statistics, one user, 30 days", _s6),
        Scenario("S7", "bulk-update-state of 100 ids", _s7, variants=200),
    )
}


def requests_for(scenario: Scenario, data: Dataset, seed: int = 7) -> list[Request]:
    """The scenario's request list, the same for every target."""
    rng = random.Random(seed)
    return [scenario.build(data, rng) for _ in range(scenario.variants)]
