"""Issue #9's index proof: at 100,000 tasks the declared range and ``in`` operators on indexed fields, and sorting
on an indexed field under a cursor, are answered through an index, never a full scan of the table.

A fresh database of each backend is migrated (by a live ``flux-dao serve``, which then hands out real cursors),
seeded with SQL (20,000 users, 20,000 goals, 100,000 tasks, 100,000 notifications, 50,000 conversations and 50,000
patterns, with the skew real data has: most tasks done, most goals completed, a few days' rows in any window) and
ANALYZEd. ``flux_dao.ops.explain.explain_list`` explains the statement the service runs for a list query's rows.

Two levels of proof:

- "uses an index": no full scan of the table (PostgreSQL ``Seq Scan on <table>``; SQLite a bare ``SCAN <table>``)
  and an index in the plan. This is the issue's criterion. With the default order (``created_at desc``) and a limit,
  the planner may rightly walk the order's index and filter, so this alone does not show the filter is sargable.
- "seeks": the filter sorted by its own field, and every cursor page, look rows up through an index condition
  (PostgreSQL ``Index Cond`` or a bitmap index scan; SQLite ``SEARCH <table>``), rather than reading an index from
  one end: what keeps a page 5,000 rows deep as fast as the first.

A coverage test reads ``resources.yaml`` and the database's indexes: every declared range or ``in`` operator on a
field that leads an index must appear in ``FILTER_CASES``, so an operator opened later cannot go unproved.
"""

# ruff: noqa: S608 (the seed SQL is assembled from constants of this file, no outside input)

import asyncio
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import API_KEY, KEY_HEADER, MANIFEST, fresh_database, run_sql
from tests.factories import API
from tests.live import LiveServer, live_server

pytestmark = pytest.mark.slow

PATHS = {"tasks": "tasks", "goals": "goals", "notification_log": "notification-log", "conversations": "conversations",
         "patterns": "patterns", "users": "users"}  # fmt: skip
MINUTES = 1_440_000  # 1,000 days: every seeded timestamp column spreads over this many minutes from its base


def postgres_ts(base: str, minutes: str) -> str:
    return f"(timestamptz '{base} 00:00:00Z' + ({minutes}) * interval '1 minute')"


def sqlite_ts(base: str, minutes: str) -> str:
    return f"(strftime('%Y-%m-%d %H:%M:%S', '{base}', '+' || ({minutes}) || ' minutes') || '.000000')"


def seed_statements(backend: str) -> list[str]:
    """SQL that fills every table; uniform timestamps, skewed enums, one in twenty timestamps null where nullable."""
    ts = postgres_ts if backend == "postgres" else sqlite_ts

    def series(count: int) -> str:
        if backend == "postgres":
            return f"generate_series(1::bigint, {count}) AS s(i)"
        return (
            f"(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {count}) SELECT i FROM r) AS s"
        )

    spread = f"((i * 7919) % {MINUTES})"
    return [
        f"""INSERT INTO users (email, onboarded, created_at)
            SELECT 'u' || i || '@example.com', false, {ts("2028-01-01", spread)} FROM {series(20_000)}""",
        "CREATE TEMP TABLE u AS SELECT id, ROW_NUMBER() OVER (ORDER BY email) AS n FROM users",
        f"""INSERT INTO goals (user_id, title, status, target_weeks, activated_at, completed_at, created_at)
            SELECT u.id, 'goal ' || i,
                   CASE WHEN i % 100 < 2 THEN 'active' WHEN i % 100 < 4 THEN 'pipeline'
                        WHEN i % 100 < 90 THEN 'completed' ELSE 'abandoned' END,
                   6, {ts("2030-01-01", spread)}, {ts("2030-01-02", spread)}, {ts("2028-01-01", spread)}
            FROM {series(20_000)} JOIN u ON u.n = 1 + i % 1000""",
        "CREATE TEMP TABLE g AS SELECT id, ROW_NUMBER() OVER (ORDER BY title) AS n FROM goals",
        # about 20 children for each of the first 997 goals
        """UPDATE goals SET parent_goal_id =
            (SELECT p.id FROM g AS me JOIN g AS p ON p.n = 1 + me.n % 997 WHERE me.id = goals.id)""",
        f"""INSERT INTO tasks (user_id, goal_id, title, status, trigger_type, scheduled_at, completed_at,
                               duration_minutes, created_at)
            SELECT u.id, CASE WHEN i % 10 < 3 THEN g.id END, 'task ' || i,
                   CASE WHEN i % 100 < 2 THEN 'pending' WHEN i % 100 < 4 THEN 'missed'
                        WHEN i % 100 < 6 THEN 'rescheduled' WHEN i % 100 < 8 THEN 'cancelled' ELSE 'done' END,
                   'time',
                   CASE WHEN i % 20 = 7 THEN NULL ELSE {ts("2030-01-01", spread)} END,
                   CASE WHEN i % 100 >= 8 THEN {ts("2030-01-01", f"{spread} + 60")} END,
                   1 + (i * 31) % 600,
                   {ts("2028-01-01", f"(i * 104729) % {MINUTES}")}
            FROM {series(100_000)} JOIN u ON u.n = 1 + i % 1000 LEFT JOIN g ON g.n = 1 + i % 20000""",
        "CREATE TEMP TABLE t AS SELECT id, ROW_NUMBER() OVER (ORDER BY title) AS n FROM tasks",
        f"""INSERT INTO notification_log (task_id, channel, sent_at, response)
            SELECT t.id, CASE WHEN i % 100 < 2 THEN 'whatsapp' WHEN i % 100 < 4 THEN 'call' ELSE 'push' END,
                   CASE WHEN i % 20 = 7 THEN NULL ELSE {ts("2030-01-01", spread)} END, NULL
            FROM {series(100_000)} JOIN t ON t.n = 1 + (i * 13) % 100000""",
        f"""INSERT INTO conversations (user_id, langgraph_thread_id, context_type, last_message_at, created_at)
            SELECT u.id, 'thread-' || i,
                   CASE WHEN i % 100 < 2 THEN 'onboarding' WHEN i % 100 < 4 THEN 'reschedule'
                        WHEN i % 100 < 50 THEN 'goal' ELSE 'task' END,
                   CASE WHEN i % 20 = 7 THEN NULL ELSE {ts("2030-01-01", spread)} END, {ts("2028-01-01", spread)}
            FROM {series(50_000)} JOIN u ON u.n = 1 + i % 1000""",
        f"""INSERT INTO patterns (user_id, pattern_type, confidence, created_at, updated_at)
            SELECT u.id, CASE WHEN i % 100 < 3 THEN 'sleep' ELSE 'kind' || (i % 40) END, ((i * 37) % 1000) / 1000.0,
                   {ts("2028-01-01", spread)}, {ts("2030-01-01", spread)}
            FROM {series(50_000)} JOIN u ON u.n = 1 + i % 1000""",
        "ANALYZE",
    ]


# --- the cases ------------------------------------------------------------------------------------------------------

LATE = "2032-09-20T00:00:00Z"  # the last week of the 1,000 days from 2030-01-01
EARLY = "2030-01-05T00:00:00Z"  # the first four days
FILTER_CASES: list[tuple[str, str]] = [
    ("tasks", f"scheduled_at__gte={LATE}"),
    ("tasks", f"scheduled_at__gt={LATE}"),
    ("tasks", f"scheduled_at__lt={EARLY}"),
    ("tasks", f"scheduled_at__lte={EARLY}"),
    ("tasks", "scheduled_at__gte=2031-01-01T00:00:00Z&scheduled_at__lt=2031-01-02T00:00:00Z"),
    ("tasks", "created_at__gte=2030-09-22T00:00:00Z"),
    ("tasks", "created_at__gt=2030-09-22T00:00:00Z"),
    ("tasks", "created_at__lt=2028-01-04T00:00:00Z"),
    ("tasks", "created_at__lte=2028-01-04T00:00:00Z"),
    ("tasks", "created_at__gte=2029-06-01T00:00:00Z&created_at__lt=2029-06-02T00:00:00Z"),
    ("tasks", f"completed_at__gte={LATE}"),
    ("tasks", f"completed_at__gt={LATE}"),
    ("tasks", f"completed_at__lt={EARLY}"),
    ("tasks", f"completed_at__lte={EARLY}"),
    ("tasks", "duration_minutes__gt=595"),
    ("tasks", "duration_minutes__gte=596"),
    ("tasks", "duration_minutes__lt=5"),
    ("tasks", "duration_minutes__lte=4"),
    ("tasks", "status__in=pending,missed"),
    ("tasks", "status__in=rescheduled"),
    ("tasks", "status__in=pending&status__in=cancelled"),
    ("tasks", "goal_id__in={goal_1},{goal_2},{goal_3}"),
    ("tasks", "user_id={user_1}&scheduled_at__gte=2031-01-01T00:00:00Z&scheduled_at__lt=2031-03-01T00:00:00Z"),
    (
        "tasks",
        "user_id={user_1}&status__in=pending,missed&scheduled_at__gte=2031-01-01T00:00:00Z"
        "&scheduled_at__lt=2031-06-01T00:00:00Z&sort=scheduled_at&limit=50",
    ),
    ("goals", "status__in=active,pipeline"),
    ("goals", "status__in=active"),
    ("goals", f"activated_at__gte={LATE}"),
    ("goals", f"activated_at__lt={EARLY}"),
    ("goals", f"completed_at__gte={LATE}"),
    ("goals", f"completed_at__lt={EARLY}"),
    ("goals", "created_at__gte=2030-09-22T00:00:00Z"),
    ("goals", "created_at__gt=2030-09-22T00:00:00Z"),
    ("goals", "created_at__lt=2028-01-04T00:00:00Z"),
    ("goals", "created_at__lte=2028-01-04T00:00:00Z"),
    ("goals", "parent_goal_id__in={goal_1},{goal_2}"),
    ("users", "email__in=u1@example.com,u2@example.com,u3@example.com"),
    ("notification_log", f"sent_at__gte={LATE}"),
    ("notification_log", f"sent_at__lt={EARLY}"),
    ("notification_log", "channel__in=whatsapp,call"),
    ("conversations", f"last_message_at__gte={LATE}"),
    ("conversations", f"last_message_at__lt={EARLY}"),
    ("conversations", "context_type__in=onboarding,reschedule"),
    ("patterns", f"updated_at__gte={LATE}"),
    ("patterns", f"updated_at__gt={LATE}"),
    ("patterns", f"updated_at__lt={EARLY}"),
    ("patterns", f"updated_at__lte={EARLY}"),
    ("patterns", "pattern_type__in=sleep,nap"),
    ("patterns", "confidence__gte=0.995"),
    ("patterns", "confidence__lte=0.004"),
]
SORT_CASES: list[tuple[str, str]] = [
    # (resource, query): sorts on an indexed field, without counting (a count of the whole table is a full scan)
    ("tasks", "count=false"),  # the default order: created_at desc, id desc
    ("tasks", "count=false&sort=-created_at"),
    ("tasks", "count=false&sort=created_at"),
    ("tasks", "count=false&sort=scheduled_at"),
    ("tasks", "count=false&sort=-scheduled_at"),
    ("tasks", "count=false&user_id={user_1}&sort=scheduled_at"),
    ("tasks", "count=false&user_id={user_1}&sort=-created_at"),
    ("notification_log", "count=false"),  # sent_at desc, nulls last
    ("notification_log", "count=false&sort=sent_at"),
    ("conversations", "count=false&sort=last_message_at"),
    ("patterns", "count=false"),  # updated_at desc
]


@dataclass
class Seeded:
    backend: str
    url: str
    server: LiveServer
    names: dict[str, str]

    def fill(self, query: str) -> str:
        return query.format_map(self.names)

    def cursor(self, resource: str, query: str, pages: int = 3) -> str:
        """A real ``next_cursor``: the one the service gives after ``pages`` pages of 25 (a user has 100 tasks)."""
        cursor: str | None = None
        with httpx.Client(base_url=f"{self.server.base}{API}", headers={KEY_HEADER: API_KEY}, timeout=60) as api:
            for _ in range(pages):
                params = httpx.QueryParams(self.fill(query)).merge({"limit": "25"})
                if cursor:
                    params = params.set("cursor", cursor)
                response = api.get(f"/{PATHS[resource]}", params=params)
                assert response.status_code == 200, response.text
                answer = response.json()
                assert isinstance(answer["next_cursor"], str), answer
                cursor = answer["next_cursor"]
        assert cursor is not None
        return cursor

    def plan(self, resource: str, query: str) -> str:
        from flux_dao.ops.explain import explain_list

        # the cursor secret is derived from the service keys, as the live server derives it
        return str(asyncio.run(explain_list(self.url, resource, self.fill(query), api_keys=(API_KEY,))))


def names_of(url: str) -> dict[str, str]:
    def ids(sql: str) -> list[str]:
        import uuid

        return [str(uuid.UUID(bytes=r[0])) if isinstance(r[0], bytes) else str(r[0]) for r in run_sql(url, sql)]

    users = ids("SELECT id FROM users ORDER BY email LIMIT 2")
    goals = ids("SELECT id FROM goals ORDER BY title LIMIT 3")
    return {"user_1": users[0], "user_2": users[1], "goal_1": goals[0], "goal_2": goals[1], "goal_3": goals[2]}


@pytest.fixture(scope="module")
def seeded(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    folder = tmp_path_factory.mktemp(f"indexes-{backend}")
    with (
        fresh_database(backend, folder, "indexes") as url,
        live_server(url, folder, env={"SERVICE_API_KEYS": API_KEY}) as server,
    ):
        run_sql(url, *seed_statements(backend))
        counts = run_sql(url, "SELECT (SELECT COUNT(*) FROM tasks), (SELECT COUNT(*) FROM goals)")
        assert counts == [(100_000, 20_000)], counts
        yield Seeded(backend, url, server, names_of(url))


# --- plan checks ----------------------------------------------------------------------------------------------------


def plan_lines(plan: str) -> list[str]:
    """Plan lines without SQLite's node numbers (``id parent notused``) or PostgreSQL's arrows."""
    return [re.sub(r"^(\d+ \d+ \d+ )|^\s*(->\s*)?", "", line).strip() for line in plan.splitlines() if line.strip()]


def full_scans(plan: str, backend: str, table: str) -> list[str]:
    if backend == "postgres":
        return [line for line in plan_lines(plan) if re.search(rf"Seq Scan on {table}\b", line)]
    return [line for line in plan_lines(plan) if re.fullmatch(rf"SCAN {table}( AS \w+)?", line)]


def seeks(plan: str, backend: str, table: str) -> bool:
    """Whether the plan finds rows of ``table`` through an index condition rather than reading it from one end."""
    if backend == "postgres":
        return "Index Cond" in plan or "Bitmap Index Scan" in plan
    return any(line.startswith(f"SEARCH {table} ") for line in plan_lines(plan))


def uses_an_index(plan: str, backend: str) -> bool:
    return "Index" in plan if backend == "postgres" else "USING INDEX" in plan or "USING COVERING INDEX" in plan


def operators_in(query: str) -> set[tuple[str, str]]:
    return set(re.findall(r"(?:^|&)(\w+?)__(gte|gt|lte|lt|in)=", query))


def check_declared_and_indexed(seeded: Seeded, resource: str, query: str) -> None:
    undeclared = {(f, op) for f, op in operators_in(query) if (resource, f, op) not in declared_operators()}
    assert not undeclared, f"the case uses operators resources.yaml does not open: {undeclared}"
    unindexed = {f for f, _ in operators_in(query) if (resource, f) not in leading_index_columns(seeded)}
    if unindexed:
        pytest.skip(f"{resource}.{', '.join(sorted(unindexed))} leads no index: no index use to prove")


@pytest.mark.parametrize(("resource", "query"), FILTER_CASES)
def test_filter_on_an_indexed_field_uses_an_index(seeded, resource, query):
    check_declared_and_indexed(seeded, resource, query)
    plan = seeded.plan(resource, query)
    assert not full_scans(plan, seeded.backend, resource), plan
    assert uses_an_index(plan, seeded.backend), plan


SEEK_CASES = [
    (resource, query)
    for resource, query in FILTER_CASES
    # one `in` value: sorting by the field collapses to id and the planner may rightly walk the primary key (the
    # case's index use is proven by the test above)
    if not (re.search(r"__in=[^,&]*(&|$)", query) and query.count("__in=") == 1)
]


@pytest.mark.parametrize(("resource", "query"), SEEK_CASES)
def test_filter_on_an_indexed_field_seeks_when_sorted_by_that_field(seeded, resource, query):
    check_declared_and_indexed(seeded, resource, query)
    field = sorted(operators_in(query))[0][0]
    sorted_by_it = query if "sort=" in query else f"{query}&sort={field}"
    plan = seeded.plan(resource, sorted_by_it)
    assert not full_scans(plan, seeded.backend, resource), plan
    assert seeks(plan, seeded.backend, resource), plan


@pytest.mark.parametrize(("resource", "query"), SORT_CASES)
def test_sort_on_an_indexed_field_uses_an_index_on_the_first_page(seeded, resource, query):
    plan = seeded.plan(resource, f"{query}&limit=100")
    assert not full_scans(plan, seeded.backend, resource), plan
    assert uses_an_index(plan, seeded.backend), plan


@pytest.mark.parametrize(("resource", "query"), SORT_CASES)
def test_sort_on_an_indexed_field_uses_an_index_under_a_cursor(seeded, resource, query):
    cursor = seeded.cursor(resource, query)
    plan = seeded.plan(resource, f"{query}&limit=100&cursor={cursor}")
    assert not full_scans(plan, seeded.backend, resource), plan
    assert uses_an_index(plan, seeded.backend), plan


@pytest.mark.parametrize(("resource", "query"), SORT_CASES)
def test_sort_on_an_indexed_field_seeks_under_a_cursor(seeded, resource, query):
    cursor = seeded.cursor(resource, query)
    plan = seeded.plan(resource, f"{query}&limit=100&cursor={cursor}")
    assert not full_scans(plan, seeded.backend, resource), plan
    assert seeks(plan, seeded.backend, resource), plan


@functools.cache
def declared_operators() -> set[tuple[str, str, str]]:
    """(entity, field, operator) for every range or ``in`` operator resources.yaml opens."""
    manifest: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    found = set()
    for entity, spec in manifest["resources"].items():
        per_field: dict[str, Any] = {name: f.get("filter") for name, f in spec["fields"].items()}
        per_field.update(spec.get("filters") or {})
        for name, ops in per_field.items():
            for op in ops if isinstance(ops, list) else []:
                if op in {"gt", "gte", "lt", "lte", "in"}:
                    found.add((entity, name, op))
    return found


def leading_index_columns(seeded: Seeded) -> set[tuple[str, str]]:
    """(table, column) for each column that is the first column of an index."""
    if seeded.backend == "postgres":
        sql = (
            "SELECT t.relname, a.attname FROM pg_index AS i JOIN pg_class AS t ON t.oid = i.indrelid "
            "JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] "
            "WHERE t.relnamespace = 'public'::regnamespace"
        )
    else:
        sql = (
            "SELECT m.name, ii.name FROM sqlite_master AS m, pragma_index_list(m.name) AS il, "
            "pragma_index_info(il.name) AS ii WHERE m.type = 'table' AND ii.seqno = 0"
        )
    return {(str(table), str(column)) for table, column in run_sql(seeded.url, sql)}


def test_every_declared_range_or_in_operator_on_an_indexed_field_has_a_case(seeded):
    indexed = leading_index_columns(seeded)
    assert ("tasks", "scheduled_at") in indexed, indexed
    required = {(e, f, op) for e, f, op in declared_operators() if (e, f) in indexed}
    covered = {(resource, name, op) for resource, query in FILTER_CASES for name, op in operators_in(query)}
    assert required <= covered, f"declared on an indexed field, with no EXPLAIN case: {sorted(required - covered)}"
    assert ("tasks", "status", "in") in required
    assert ("tasks", "scheduled_at", "gte") in required
