"""A deterministic data set of a stated size, written with COPY.

Per scale unit: 1,000 users, 10 goals and 100 tasks each (100k tasks), ``scheduled_at`` and ``created_at`` spread
over 30 days, mixed statuses, and one notification row per 100 tasks. ``--scale 10`` gives 1M tasks.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

USERS_PER_SCALE = 1000
GOALS_PER_USER = 10
TASKS_PER_USER = 100
STATUSES = ("pending", "done", "missed", "rescheduled", "cancelled")
STATUS_WEIGHTS = (40, 35, 10, 10, 5)
WINDOW_DAYS = 30
CHUNK = 50_000


@dataclass
class Dataset:
    """What the load generator needs to pick from."""

    start: datetime
    user_ids: list[UUID] = field(default_factory=list)
    task_ids: list[UUID] = field(default_factory=list)
    """A sample of task ids (at most 5,000)."""
    tasks: int = 0


async def seed(dsn: str, scale: float, seed_value: int = 42) -> Dataset:
    """Empty the flux tables and fill them; returns the ids to request."""
    rng = random.Random(seed_value)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    users = max(1, int(USERS_PER_SCALE * scale))
    data = Dataset(start=start)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE notification_log, patterns, conversations, tasks, goals, users CASCADE")
        user_rows = []
        for i in range(users):
            uid = uuid7()
            data.user_ids.append(uid)
            user_rows.append((uid, f"bench{i}@example.com", False, start - timedelta(days=WINDOW_DAYS + 1)))
        await conn.copy_records_to_table("users", records=user_rows, columns=["id", "email", "onboarded", "created_at"])
        goal_rows, task_rows, log_rows = [], [], []
        seconds = WINDOW_DAYS * 86400
        for uid in data.user_ids:
            goals = [uuid7() for _ in range(GOALS_PER_USER)]
            goal_rows += [(g, uid, "Bench goal", "active", 6, start) for g in goals]
            for _ in range(TASKS_PER_USER):
                tid = uuid7()
                created = start + timedelta(seconds=rng.randrange(seconds))
                scheduled = start + timedelta(seconds=rng.randrange(seconds))
                status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
                task_rows.append((tid, uid, rng.choice(goals), "Bench task", status, scheduled, 30, "time", created))
                if len(data.task_ids) < 5000 and rng.random() < 0.05:
                    data.task_ids.append(tid)
                if rng.random() < 0.01:
                    log_rows.append((uuid7(), tid, "push", scheduled))
            if len(task_rows) >= CHUNK:
                await _flush(conn, goal_rows, task_rows)
                data.tasks += len(task_rows)
                goal_rows, task_rows = [], []
        await _flush(conn, goal_rows, task_rows)
        data.tasks += len(task_rows)
        await conn.copy_records_to_table(
            "notification_log", records=log_rows, columns=["id", "task_id", "channel", "sent_at"]
        )
        await conn.execute("VACUUM ANALYZE")  # settle visibility and statistics: no autovacuum during the runs
    finally:
        await conn.close()
    return data


async def _flush(conn: asyncpg.Connection, goal_rows: list[tuple[Any, ...]], task_rows: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(
        "goals", records=goal_rows, columns=["id", "user_id", "title", "status", "target_weeks", "created_at"]
    )
    await conn.copy_records_to_table(
        "tasks",
        records=task_rows,
        columns=[
            "id",
            "user_id",
            "goal_id",
            "title",
            "status",
            "scheduled_at",
            "duration_minutes",
            "trigger_type",
            "created_at",
        ],
    )
