"""On PostgreSQL the hot queries are index-backed: EXPLAIN shows an index scan for the filtered list, the
by-timerange query and the statistics query, on a table large enough that a sequential scan would be chosen
otherwise."""

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from flux_dao.manifest import load_manifest
from flux_dao.query.compiler import ResourceStatements
from flux_dao.query.plans import Condition, ListPlan
from flux_dao.schema import build_resources
from tests.conftest import MANIFEST

pytestmark = pytest.mark.postgres

SEED = """
INSERT INTO users (id, email, onboarded, created_at)
SELECT gen_random_uuid(), 'plan' || n || '@example.com', false, now() FROM generate_series(1, 200) AS n;
INSERT INTO tasks (id, user_id, title, status, trigger_type, scheduled_at, created_at)
SELECT gen_random_uuid(), u.id, 'task', (ARRAY['pending','done','missed'])[1 + n % 3], 'time',
       timestamptz '2030-01-01' + n * interval '7 minutes', timestamptz '2030-01-01' + n * interval '5 minutes'
FROM users AS u CROSS JOIN generate_series(1, 100) AS n;
ANALYZE users; ANALYZE tasks;
"""


@pytest.fixture(scope="module")
def plans(pg_database: str) -> dict[str, str]:
    """EXPLAIN output of the three queries, run against a seeded copy of the schema."""
    from flux_dao.config import DatabaseSettings, Settings
    from flux_dao.store.migrations import upgrade

    upgrade(Settings(database=DatabaseSettings(url=pg_database), manifest_path=MANIFEST))
    tasks = next(r for r in build_resources(load_manifest(MANIFEST)).items if r.entity.name == "tasks")
    statements = ResourceStatements(tasks.entity, tasks.table, postgres=True)
    queries = tasks.entity.queries
    dialect = PGDialect_asyncpg(paramstyle="numeric_dollar")
    dsn = pg_database.replace("postgresql+asyncpg://", "postgresql://")

    async def explain() -> dict[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("TRUNCATE notification_log, tasks, users CASCADE")
            await conn.execute(SEED)
            user_id = await conn.fetchval("SELECT id FROM users LIMIT 1")
            by_user = (Condition("user_id", "eq", user_id),)
            window = {"start": _ts("2030-01-02"), "end": _ts("2030-01-03")}
            cases: dict[str, tuple[Any, dict[str, Any]]] = {
                "list": (
                    statements.rows(ListPlan(conditions=by_user))[0].statement,
                    {"c0": user_id, "limit": 20, "offset": 0},
                ),
                "count": (statements.count(by_user), {"c0": user_id}),
                "by-timerange": (
                    statements.time_range("by-timerange", queries["by-timerange"]),
                    {"f_user_id": user_id, **window},
                ),
                "statistics": (
                    statements.grouped_count("statistics", queries["statistics"]),
                    {"f_user_id": user_id, **window},
                ),
            }
            result = {}
            for name, (statement, params) in cases.items():
                compiled = statement.compile(dialect=dialect)
                args = [params[key] for key in compiled.positiontup]
                rows = await conn.fetch("EXPLAIN " + compiled.string, *args)
                result[name] = "\n".join(row[0] for row in rows)
            await conn.execute("TRUNCATE notification_log, tasks, users CASCADE")
            return result
        finally:
            await conn.close()

    return asyncio.run(explain())


def _ts(day: str) -> Any:
    from datetime import UTC, datetime

    return datetime.fromisoformat(day).replace(tzinfo=UTC)


@pytest.mark.parametrize("query", ["list", "count", "by-timerange", "statistics"])
def test_query_uses_an_index_not_a_sequential_scan(plans, query):
    plan = plans[query]
    assert "Index" in plan, plan
    assert "Seq Scan on tasks" not in plan, plan
