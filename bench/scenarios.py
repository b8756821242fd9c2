"""The scenarios, as lists of concrete requests drawn from the seeded data.

S0..S8 are compared with the floor (S0 is the constant endpoint, ``/health``: what the server and the request
wrapper cost before any database work): each is a fixed list of requests (random ids, users and days, drawn with a fixed
seed); the load generator picks from it at random. The same list drives flux-dao and the floor, which serve the same
paths. S9 and S10 compare flux-dao with itself (``PAIRED``): two request lists alternated on flux-dao, their p50s
set side by side.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import httpx
import msgspec

from bench.seed import STATUSES, WINDOW_DAYS, Dataset

Request = tuple[str, str, str | None]
"""(method, path with query, JSON body or None)."""

API = "/api/v1/tasks"
USERS_API = "/api/v1/users"
S8_DAYS = 7


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    build: Callable[[Dataset, random.Random], Request]
    variants: int = 1000


def _day(data: Dataset, rng: random.Random) -> tuple[str, str]:
    day = data.start + timedelta(days=rng.randrange(WINDOW_DAYS))
    return day.strftime("%Y-%m-%dT00:00:00Z"), day.strftime("%Y-%m-%dT23:59:59Z")


def _s0(d: Dataset, r: random.Random) -> Request:
    return "GET", "/health", None


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


def _s8(d: Dataset, r: random.Random) -> Request:
    """A user's pending or missed tasks due in a 7-day window inside the seeded 30 days, soonest first."""
    since = d.start + timedelta(days=r.randrange(WINDOW_DAYS - S8_DAYS + 1))
    until = since + timedelta(days=S8_DAYS)
    query = (
        f"user_id={r.choice(d.user_ids)}&status__in=pending,missed&scheduled_at__gte={since:%Y-%m-%dT%H:%M:%SZ}"
        f"&scheduled_at__lt={until:%Y-%m-%dT%H:%M:%SZ}&sort=scheduled_at&limit=50"
    )
    return "GET", f"{API}?{query}", None


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("S0", "constant endpoint (/health)", _s0, variants=1),
        Scenario("S1", "GET task by id", _s1),
        Scenario("S2", "list a user's tasks, 20 per page, with total", _s2),
        Scenario("S2b", "the same, count skipped", _s2b),
        Scenario("S3", "POST task", _s3),
        Scenario("S4", "PATCH task status", _s4),
        Scenario("S5", "by-timerange, one user, one day", _s5),
        Scenario("S6", "statistics, one user, 30 days", _s6),
        Scenario("S7", "bulk-update-state of 100 ids", _s7, variants=200),
        Scenario("S8", "a user's pending|missed tasks, next 7 days", _s8),
    )
}


@dataclass(frozen=True)
class Paired:
    """A check of flux-dao against itself: ``probe`` p50 / ``base`` p50 must stay at most ``target``.

    With ``floor``, the floor serves both lists too, alternated with flux-dao, for the same factor on raw asyncpg
    (what the SQL and the payload cost before any engine overhead); the target applies to flux-dao only.
    """

    key: str
    title: str
    base: str
    probe: str
    target: float
    floor: bool = False


CURSOR_PAGE = 100
CURSOR_QUERY = f"{API}?limit={CURSOR_PAGE}&count=false"
"""S9's list: the default order (created_at desc, id desc; an index on created_at). ``count=false`` keeps a COUNT
over the whole table (the same on both pages) from hiding what the depth costs."""

PAIRED: dict[str, Paired] = {
    p.key: p
    for p in (
        Paired("S9", "cursor page 5,000 rows deep vs the first page", "first", "deep", 1.2),
        Paired("S10", "GET user include=goals.tasks vs S1 GET task", "S1", "include", 2.0, floor=True),
    )
}

ALL = (*SCENARIOS, *PAIRED)


def include_requests(data: Dataset, seed: int = 7, variants: int = 1000) -> list[Request]:
    """S10: a user with their goals and each goal's tasks (10 goals, about 10 tasks each, in the seeded data)."""
    rng = random.Random(seed)
    return [("GET", f"{USERS_API}/{rng.choice(data.user_ids)}?include=goals.tasks", None) for _ in range(variants)]


def cursor_requests(
    url: str, headers: dict[str, str], depth: int, variants: int = 10
) -> tuple[list[Request], list[Request]]:
    """S9's two lists: the first page, and pages at least ``depth`` rows deep reached by walking the cursor.

    The walk goes through the API once (``depth / 100`` pages), then keeps the cursors of the next ``variants`` pages
    so the deep list replays several row sets, each at least ``depth`` rows in.
    """
    first: Request = ("GET", CURSOR_QUERY, None)
    deep: list[Request] = []
    rows = 0
    cursor: str | None = None
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while len(deep) < variants:
            path = CURSOR_QUERY if cursor is None else f"{CURSOR_QUERY}&cursor={quote(cursor, safe='')}"
            response = client.get(path)
            response.raise_for_status()
            body = response.json()
            if cursor is not None and rows >= depth:
                deep.append(("GET", path, None))
            rows += len(body["items"])
            cursor = body.get("next_cursor")
            if cursor is None:
                break
    if not deep:
        raise RuntimeError(f"the cursor walk ended after {rows} rows, before {depth} rows deep: seed more data")
    return [first], deep


def requests_for(scenario: Scenario, data: Dataset, seed: int = 7) -> list[Request]:
    """The scenario's request list, the same for every target."""
    rng = random.Random(seed)
    return [scenario.build(data, rng) for _ in range(scenario.variants)]
