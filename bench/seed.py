"""A deterministic data set of a stated size, written with COPY to PostgreSQL or in flux-dao's format to SQLite.

Per scale unit: 1,000 users, 10 goals and 100 tasks each (100k tasks), ``scheduled_at`` and ``created_at`` spread
over 30 days, mixed statuses, and one notification row per 100 tasks. ``--scale 10`` gives 1M tasks.

The rows come from one generator (``generate``), seeded, ids included (``Ids``), so every seeding of a size writes the
very same rows: PostgreSQL, SQLite and PocketBase get identical data.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import sqlalchemy as sa

from flux_dao.manifest import load_manifest
from flux_dao.schema.tables import build_tables

USERS_PER_SCALE = 1000
GOALS_PER_USER = 10
TASKS_PER_USER = 100
STATUSES = ("pending", "done", "missed", "rescheduled", "cancelled")
STATUS_WEIGHTS = (40, 35, 10, 10, 5)
WINDOW_DAYS = 30
CHUNK = 50_000
START = datetime(2030, 1, 1, tzinfo=UTC)
SAMPLE_ROWS = 10
"""Whole task rows kept in the Dataset, to check that a target reads back what was written."""


class UserRow(NamedTuple):
    id: UUID
    email: str
    onboarded: bool
    created_at: datetime


class GoalRow(NamedTuple):
    id: UUID
    user_id: UUID
    title: str
    status: str
    target_weeks: int
    created_at: datetime


class TaskRow(NamedTuple):
    id: UUID
    user_id: UUID
    goal_id: UUID
    title: str
    status: str
    scheduled_at: datetime
    duration_minutes: int
    trigger_type: str
    created_at: datetime


class NotificationRow(NamedTuple):
    id: UUID
    task_id: UUID
    channel: str
    sent_at: datetime


@dataclass
class Chunk:
    """Rows to write together, in foreign-key order (``tables``)."""

    users: list[UserRow] = field(default_factory=list)
    goals: list[GoalRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    notification_log: list[NotificationRow] = field(default_factory=list)

    def tables(self) -> list[tuple[str, list[Any]]]:
        """(table name, rows) for each table, parents first; the field names of a row are its columns."""
        return [
            ("users", self.users),
            ("goals", self.goals),
            ("tasks", self.tasks),
            ("notification_log", self.notification_log),
        ]


@dataclass
class Dataset:
    """What the load generator needs to pick from."""

    start: datetime
    user_ids: list[UUID] = field(default_factory=list)
    task_ids: list[UUID] = field(default_factory=list)
    """A sample of task ids (at most 5,000)."""
    tasks: int = 0
    sample_tasks: list[TaskRow] = field(default_factory=list)
    """The first few sampled tasks, whole, for the read-back checks."""


class Ids:
    """UUIDv7s in the order rows are made, like the service's uuid7() at insert, from a seeded stream.

    Each id's time is one millisecond after the previous one's (from ``START``), so ids ascend in insertion order as
    they did when the seed called uuid7(): the heap and the id index stay in the same order (a bulk UPDATE over a
    physical scan locks rows in id order), and the same seed gives the same ids on every backend and run.
    """

    def __init__(self, seed_value: int) -> None:
        self.rng = random.Random(seed_value)
        self.millis = int(START.timestamp() * 1000)

    def next(self) -> UUID:
        self.millis += 1
        return uuid7(self.millis, self.rng)


def uuid7(millis: int, rng: random.Random) -> UUID:
    """A UUIDv7 (RFC 9562): ``millis`` in the first 48 bits, version 7, variant 10, the other bits from ``rng``."""
    rand_a, rand_b = rng.getrandbits(12), rng.getrandbits(62)
    return UUID(int=(millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


def generate(data: Dataset, scale: float, seed_value: int = 42) -> Iterator[Chunk]:
    """The rows, in chunks of about ``CHUNK`` tasks (the users come first, alone); fills ``data`` as it goes."""
    rng = random.Random(seed_value)
    ids = Ids(seed_value + 1)  # on a stream of their own: times and statuses are the ones earlier runs drew
    start = data.start
    users = max(1, int(USERS_PER_SCALE * scale))
    joined = start - timedelta(days=WINDOW_DAYS + 1)
    first = Chunk(users=[UserRow(ids.next(), f"bench{i}@example.com", False, joined) for i in range(users)])
    data.user_ids = [user.id for user in first.users]
    yield first
    chunk = Chunk()
    seconds = WINDOW_DAYS * 86400
    for uid in data.user_ids:
        goals = [ids.next() for _ in range(GOALS_PER_USER)]
        chunk.goals += [GoalRow(g, uid, "Bench goal", "active", 6, start) for g in goals]
        for _ in range(TASKS_PER_USER):
            created = start + timedelta(seconds=rng.randrange(seconds))
            scheduled = start + timedelta(seconds=rng.randrange(seconds))
            status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
            task = TaskRow(ids.next(), uid, rng.choice(goals), "Bench task", status, scheduled, 30, "time", created)
            chunk.tasks.append(task)
            if len(data.task_ids) < 5000 and rng.random() < 0.05:
                data.task_ids.append(task.id)
                if len(data.sample_tasks) < SAMPLE_ROWS:
                    data.sample_tasks.append(task)
            if rng.random() < 0.01:
                chunk.notification_log.append(NotificationRow(ids.next(), task.id, "push", scheduled))
        if len(chunk.tasks) >= CHUNK:
            data.tasks += len(chunk.tasks)
            yield chunk
            chunk = Chunk()
    data.tasks += len(chunk.tasks)
    yield chunk


async def seed(dsn: str, scale: float, seed_value: int = 42) -> Dataset:
    """Empty the flux tables of a PostgreSQL database and fill them with COPY; returns the ids to request."""
    data = Dataset(start=START)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE notification_log, patterns, conversations, tasks, goals, users CASCADE")
        for chunk in generate(data, scale, seed_value):
            for table, rows in chunk.tables():
                if rows:
                    await conn.copy_records_to_table(table, records=rows, columns=list(type(rows[0])._fields))
        await conn.execute("VACUUM ANALYZE")  # settle visibility and statistics: no autovacuum during the runs
    finally:
        await conn.close()
    return data


def seed_sqlite(path: Path, manifest: Path, scale: float, seed_value: int = 42) -> Dataset:
    """Fill a migrated, empty flux-dao SQLite file with the same rows, in flux-dao's own storage format.

    The inserts go through the tables flux-dao builds from ``manifest``, so ids and datetimes are stored exactly as
    the service stores them (through its column types), on a plain synchronous ``sqlite3`` connection: one
    transaction, one executemany per table and chunk, seconds for 100k tasks where the HTTP API takes minutes.
    """
    tables = build_tables(load_manifest(manifest)).tables
    data = Dataset(start=START)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
    try:
        with engine.begin() as conn:
            for chunk in generate(data, scale, seed_value):
                for table, rows in chunk.tables():
                    if rows:
                        conn.execute(tables[table].insert(), [row._asdict() for row in rows])
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the SQLite seed broke {len(broken)} foreign keys, e.g. {broken[:3]}")
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")  # the planner's statistics, like PostgreSQL's VACUUM ANALYZE
    finally:
        engine.dispose()
    return data
