"""The floor: the same task endpoints hand-written on raw asyncpg, encoded with msgspec.

A minimal Litestar app serving the same paths and JSON shapes as flux-dao's task routes, with the same SQL, so the
ratio flux-dao / floor measures what the generic engine costs. No auth, no validation beyond msgspec decoding.
Run: ``BENCH_DSN=postgresql://... uvicorn bench.floor:create_app --factory``.
"""

import base64
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, Response, get, patch, post

COLUMNS = (
    "id, user_id, goal_id, title, description, status, scheduled_at, duration_minutes, trigger_type, "
    "location_trigger, reminder_sent_at, whatsapp_sent_at, call_sent_at, completed_at, recurrence_rule, "
    "shared_with_goal_ids, created_at"
)


class Task(msgspec.Struct):
    id: uuid.UUID
    user_id: uuid.UUID
    goal_id: uuid.UUID | None
    title: str
    description: str | None
    status: str
    scheduled_at: datetime | None
    duration_minutes: int | None
    trigger_type: str
    location_trigger: str | None
    reminder_sent_at: datetime | None
    whatsapp_sent_at: datetime | None
    call_sent_at: datetime | None
    completed_at: datetime | None
    recurrence_rule: str | None
    shared_with_goal_ids: list[uuid.UUID] | None
    created_at: datetime


class Goal(msgspec.Struct):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: str | None
    class_tags: list[str] | None
    status: str
    parent_goal_id: uuid.UUID | None
    pipeline_order: int | None
    activated_at: datetime | None
    completed_at: datetime | None
    target_weeks: int
    plan_json: Any
    created_at: datetime
    tasks: list[Task] | msgspec.UnsetType = msgspec.UNSET


class User(msgspec.Struct):
    id: uuid.UUID
    email: str
    onboarded: bool
    profile: Any
    notification_preferences: Any
    created_at: datetime
    goals: list[Goal] | msgspec.UnsetType = msgspec.UNSET


class TaskPage(msgspec.Struct):
    items: list[Task]
    total: int | None
    page: int | None
    page_size: int
    has_next: bool
    has_prev: bool
    next_cursor: str | None


class TaskCreate(msgspec.Struct, forbid_unknown_fields=True):
    user_id: uuid.UUID
    title: str
    scheduled_at: datetime | None = None
    goal_id: uuid.UUID | None = None
    status: str = "pending"


class TaskPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: str


class BulkUpdate(msgspec.Struct, forbid_unknown_fields=True):
    task_ids: list[uuid.UUID]
    new_status: str


_pool: Any = None


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: msgspec.json.encode(v).decode(), decoder=msgspec.json.decode, schema="pg_catalog"
    )


async def _reset(conn: asyncpg.Connection) -> None:
    """The same pool settings as flux-dao: no reset round trip per release."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _startup() -> None:
    global _pool
    _pool = await asyncpg.create_pool(
        os.environ["BENCH_DSN"], min_size=10, max_size=10, init=_init, reset=_reset, statement_cache_size=1024
    )


async def _shutdown() -> None:
    await _pool.close()


@get("/api/v1/tasks/{task_id:uuid}")
async def get_task(task_id: uuid.UUID) -> Response[Any]:
    row = await _pool.fetchrow(f"SELECT {COLUMNS} FROM tasks WHERE id = $1", task_id)
    if row is None:
        return Response({"detail": "not found"}, status_code=404)
    return Response(Task(*row))


def _cursor(*key: Any) -> str:
    """An opaque next-page token: the last row's sort key (flux-dao's also binds filters and sort; not needed here)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode()


_S2_ROWS = f"SELECT {COLUMNS} FROM tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
_S2_COUNT = "SELECT count(*) FROM tasks WHERE user_id = $1"
# S8: a user's tasks in some statuses over a half-open scheduled_at range, soonest first (nulls last, id tie-breaker)
_S8_WHERE = "user_id = $1 AND status = ANY($2::text[]) AND scheduled_at >= $3 AND scheduled_at < $4"
_S8_ROWS = (
    f"SELECT {COLUMNS} FROM tasks WHERE {_S8_WHERE} ORDER BY scheduled_at ASC NULLS LAST, id ASC LIMIT $5 OFFSET $6"
)
_S8_COUNT = f"SELECT count(*) FROM tasks WHERE {_S8_WHERE}"


@get("/api/v1/tasks")
async def list_tasks(
    user_id: uuid.UUID,
    limit: int = 100,
    skip: int = 0,
    count: bool = True,
    status__in: str | None = None,
    scheduled_at__gte: datetime | None = None,
    scheduled_at__lt: datetime | None = None,
    sort: str | None = None,
) -> TaskPage:
    if status__in is None and scheduled_at__gte is None and scheduled_at__lt is None and sort is None:
        return await _page(_S2_ROWS, _S2_COUNT, (user_id,), limit, skip, count, "created_at")
    if status__in is None or scheduled_at__gte is None or scheduled_at__lt is None or sort != "scheduled_at":
        raise NotImplementedError("the floor serves S2's and S8's parameters only")
    args = (user_id, status__in.split(","), scheduled_at__gte, scheduled_at__lt)
    return await _page(_S8_ROWS, _S8_COUNT, args, limit, skip, count, "scheduled_at")


async def _page(
    rows_sql: str, count_sql: str, args: tuple[Any, ...], limit: int, skip: int, count: bool, key: str
) -> TaskPage:
    """flux-dao's page logic: one row more than the page tells ``has_next``; the COUNT only when the page does not
    prove the total (a last page that is not empty, or the first page, ends the result)."""
    async with _pool.acquire() as conn:
        rows = await conn.fetch(rows_sql, *args, limit + 1, skip)
        items = [Task(*r) for r in rows[:limit]]
        more = len(rows) > limit
        if not count:
            total = None
        elif not more and (items or skip == 0):
            total = skip + len(items)
        else:
            total = await conn.fetchval(count_sql, *args)
    cursor = _cursor(getattr(items[-1], key), items[-1].id) if more else None
    return TaskPage(items, total, skip // limit + 1, limit, more, skip > 0, cursor)


_USER = "SELECT id, email, onboarded, profile, notification_preferences, created_at FROM users WHERE id = $1"
_GOAL_COLUMNS = (
    "id, user_id, title, description, class_tags, status, parent_goal_id, pipeline_order, activated_at, completed_at, "
    "target_weeks, plan_json, created_at"
)
# S10's embeds, one statement per level whatever the number of parents: each parent's children in the child's default
# order (created_at desc, id desc), at most include_limit (20) per parent
_GOALS_OF_USERS = (
    f"SELECT c.* FROM unnest($1::uuid[]) AS p(parent_id) JOIN LATERAL (SELECT {_GOAL_COLUMNS} FROM goals "
    "WHERE goals.user_id = p.parent_id ORDER BY created_at DESC, id DESC LIMIT $2) AS c ON true"
)
_TASKS_OF_GOALS = (
    f"SELECT c.* FROM unnest($1::uuid[]) AS p(parent_id) JOIN LATERAL (SELECT {COLUMNS} FROM tasks "
    "WHERE tasks.goal_id = p.parent_id ORDER BY created_at DESC, id DESC LIMIT $2) AS c ON true"
)
INCLUDE_LIMIT = 20


@get("/api/v1/users/{user_id:uuid}")
async def get_user(user_id: uuid.UUID, include: str | None = None) -> Response[Any]:
    """S10 (``include=goals.tasks``): the user, their goals, and each goal's tasks."""
    if include not in (None, "goals.tasks"):
        raise NotImplementedError("the floor serves S10's include only")
    async with _pool.acquire() as conn:
        row = await conn.fetchrow(_USER, user_id)
        if row is None:
            return Response({"detail": "not found"}, status_code=404)
        user = User(*row)
        if include:
            user.goals = [Goal(*r) for r in await conn.fetch(_GOALS_OF_USERS, [user_id], INCLUDE_LIMIT)]
            ids = [g.id for g in user.goals]
            tasks = [Task(*r) for r in await conn.fetch(_TASKS_OF_GOALS, ids, INCLUDE_LIMIT)] if ids else []
            by_goal: dict[uuid.UUID | None, list[Task]] = {}
            for task in tasks:
                by_goal.setdefault(task.goal_id, []).append(task)
            for goal in user.goals:
                goal.tasks = by_goal.get(goal.id, [])
    return Response(user)


@post("/api/v1/tasks", status_code=201)
async def create_task(data: TaskCreate) -> Task:
    row = await _pool.fetchrow(
        f"INSERT INTO tasks (id, user_id, goal_id, title, status, scheduled_at, trigger_type, created_at) "
        f"VALUES ($1, $2, $3, $4, $5, $6, 'time', $7) RETURNING {COLUMNS}",
        uuid.uuid4(),
        data.user_id,
        data.goal_id,
        data.title,
        data.status,
        data.scheduled_at,
        datetime.now(UTC),
    )
    return Task(*row)


@patch("/api/v1/tasks/{task_id:uuid}")
async def update_task(task_id: uuid.UUID, data: TaskPatch) -> Response[Any]:
    row = await _pool.fetchrow(f"UPDATE tasks SET status = $1 WHERE id = $2 RETURNING {COLUMNS}", data.status, task_id)
    if row is None:
        return Response({"detail": "not found"}, status_code=404)
    return Response(Task(*row))


@get("/api/v1/tasks/by-timerange")
async def by_timerange(user_id: uuid.UUID, start_at: datetime, end_at: datetime) -> list[Task]:
    rows = await _pool.fetch(
        f"SELECT {COLUMNS} FROM tasks WHERE user_id = $1 AND scheduled_at >= $2 AND scheduled_at <= $3 "
        "ORDER BY scheduled_at, id",
        user_id,
        start_at,
        end_at,
    )
    return [Task(*r) for r in rows]


@get("/api/v1/tasks/statistics")
async def statistics(user_id: uuid.UUID, start_date: datetime, end_date: datetime) -> dict[str, Any]:
    rows = await _pool.fetch(
        "SELECT status, count(*) FROM tasks WHERE user_id = $1 AND created_at >= $2 AND created_at <= $3 "
        "GROUP BY status",
        user_id,
        start_date,
        end_date,
    )
    by_status = {r[0]: r[1] for r in rows}
    total = sum(by_status.values())
    rate = round(by_status.get("done", 0) / total, 4) if total else 0.0
    return {"user_id": str(user_id), "total_tasks": total, "by_status": by_status, "completion_rate": rate}


@post("/api/v1/tasks/bulk-update-state", status_code=200)
async def bulk_update(data: BulkUpdate) -> dict[str, int]:
    result = await _pool.execute(
        "UPDATE tasks SET status = $1 WHERE id = ANY($2::uuid[])", data.new_status, sorted(set(data.task_ids))
    )
    return {"updated_count": int(result.split()[-1])}


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    return Litestar(
        [get_task, list_tasks, create_task, update_task, by_timerange, statistics, bulk_update, get_user, health],
        on_startup=[_startup],
        on_shutdown=[_shutdown],
        openapi_config=None,
    )
