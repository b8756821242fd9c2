"""Proof of the change feed (issue #12): nothing committed is skipped, nothing is handed out twice.

1. **Out-of-order commits** (PostgreSQL; SQLite has one writer at a time, so positions commit in order there). Two
   outside transactions insert users with plain SQL: T1 takes its position first and stays open, T2 takes a later one
   and commits. While T1 is open the feed must hand out neither (``next`` stays below T1's position), over
   ``GET /changes``, a long poll and the stream; once T1 commits, reading on from the same ``next`` gives both, T1's
   first. Rolled back instead, T1's position is passed over and T2 is delivered exactly once. Each in both orders of
   their transaction ids: when the open T1 holds the newest one, other sessions' snapshots do not list it as running
   (``pg_current_snapshot()``'s ``xmax`` is the newest *completed* id + 1, and running ids from ``xmax`` on are left
   out), so a head computed from snapshots alone passes T1's position.
2. **Twenty seconds of mixed writes** (both backends). 8 writer threads create, patch and delete users, goals and
   tasks (deletes cascade and set null), bulk-update task statuses, run batches and upserts, while one consumer
   follows the feed: long polls, then the SSE stream (disconnected once on purpose and resumed with
   ``Last-Event-ID``), across a restart of the server on the same database and port, then long polls again, and
   finally drains to the head. Replaying the consumer's changes from an empty state must give every resource's rows
   exactly as the API lists them; the positions seen are exactly the change log's, strictly increasing; every
   acknowledged write is among the changes.

The restart of the second proof keeps the default ``FLUX_DAO_SHUTDOWN_GRACE`` (10 s): the consumer's open stream
ends with a ``closing`` event as the server starts to shut down (see
``test_an_open_stream_does_not_hold_a_stopping_server``), so the writers lack a server only while it restarts.

Budget: the out-of-order tests about 5 s each (a server start, 1-2 s of waiting); the twenty-second proof about
30 s per backend; the stopping-server test 7 s per backend.
"""

import asyncio
import contextlib
import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import API_KEY, BACKENDS, KEY_HEADER, fresh_database, run_sql
from tests.live import _INHERITED_OUT, MANIFEST, LiveServer, free_port, live_server, start_server

API = "/api/v1"
ENV = {"SERVICE_API_KEYS": API_KEY, "FLUX_DAO_LOG_FORMAT": "text"}
Row = dict[str, Any]


def api_client(server: LiveServer, timeout: float = 30.0) -> httpx.Client:
    return httpx.Client(base_url=f"{server.base}{API}", headers={KEY_HEADER: API_KEY}, timeout=timeout)


# --- 1. out-of-order commits -----------------------------------------------------------------------------------------


class Outside:
    """Direct asyncpg connections to the service's database, as another tool would hold them."""

    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._runner = asyncio.Runner()
        self._conns: list[asyncpg.Connection] = []

    def run(self, coro: Any) -> Any:
        return self._runner.run(coro)

    def connect(self) -> asyncpg.Connection:
        conn = self.run(asyncpg.connect(self.dsn, server_settings={"application_name": "flux-dao-test"}))
        self._conns.append(conn)
        return conn

    def insert_user(self, conn: asyncpg.Connection, email: str) -> tuple[str, int]:
        """Insert a user with plain SQL in ``conn``'s transaction; its id and the position its change took (read in
        the same transaction: nobody else can see it before it commits)."""
        user_id = self.run(conn.fetchval("INSERT INTO users (email) VALUES ($1) RETURNING id::text", email))
        position = self.run(
            conn.fetchval("SELECT position FROM flux_dao_changes WHERE resource = 'users' AND row_id = $1", user_id)
        )
        assert position is not None, "the insert recorded no change"
        return str(user_id), int(position)

    def out_of_order(self, first: str) -> tuple[asyncpg.Connection, str, int, str, int]:
        """T1 inserts a user (taking a position) and stays open; T2 then inserts one (a later position) and commits.
        ``first``: which of the two took its transaction id first (``T2``: T2 does, with ``pg_current_xact_id()``,
        before T1 writes, so the open T1 holds the newest one). T1's connection, then each user's id and position."""
        t1, t2 = self.connect(), self.connect()
        self.run(t1.execute("BEGIN"))
        self.run(t2.execute("BEGIN"))
        if first == "T2":
            self.run(t2.fetchval("SELECT pg_current_xact_id()"))
        id1, pos1 = self.insert_user(t1, f"late-{uuid.uuid4().hex[:8]}@example.com")
        id2, pos2 = self.insert_user(t2, f"early-{uuid.uuid4().hex[:8]}@example.com")
        xid1, xid2 = (int(self.run(c.fetchval("SELECT pg_current_xact_id()::text"))) for c in (t1, t2))
        self.run(t2.execute("COMMIT"))
        assert pos1 < pos2, (pos1, pos2)  # T1 took the earlier position and has not committed
        assert (xid1 < xid2) == (first == "T1"), (first, xid1, xid2)
        return t1, id1, pos1, id2, pos2

    def __enter__(self) -> "Outside":
        return self

    def __exit__(self, *_: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(Exception):
                self.run(conn.close())
        self._runner.close()


class StreamReader:
    """Reads ``GET /changes/stream`` in a thread, keeping each change event with the time it arrived, until it has
    ``want`` of them (then it disconnects) or nothing came for 15 s."""

    def __init__(self, server: LiveServer, after: int, want: int) -> None:
        self.events: list[tuple[float, int, Row]] = []
        self.error: BaseException | None = None
        self.want = want
        self._closing = False
        self.final: tuple[str, Any] | None = None
        """The event that ended the stream, if not a change (``closing``, ``dropped``): its name and data."""
        self._api = api_client(server, timeout=15)
        self._thread = threading.Thread(target=self._read, args=(after,), daemon=True)
        self._thread.start()

    def _read(self, after: int) -> None:
        try:
            with self._api.stream("GET", "/changes/stream", params={"after": after}) as response:
                assert response.status_code == 200, response.read()
                event_id, kind, data = None, "message", []
                for line in response.iter_lines():
                    if line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        payload = json.loads("\n".join(data))
                        if kind != "change":
                            self.final = (kind, payload)
                            return
                        assert event_id is not None
                        self.events.append((time.monotonic(), event_id, payload))
                        event_id, kind, data = None, "message", []
                        if len(self.events) >= self.want:
                            return
            ended = "the stream ended"
            raise AssertionError(ended)
        except BaseException as exc:  # noqa: BLE001 (reported by the test, unless it is closing the stream)
            if not self._closing:
                self.error = exc

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        self._closing = True
        self._api.close()


def follow(api: httpx.Client, after: int, until: int) -> tuple[list[Row], int]:
    """Every change after ``after`` up to position ``until``, following ``next`` with long polls (10 s at most)."""
    items: list[Row] = []
    deadline = time.monotonic() + 10
    while after < until:
        assert time.monotonic() < deadline, f"the feed did not reach position {until}; at {after}, got {items}"
        response = api.get("/changes", params={"after": after, "wait": 2})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["next"] >= after, page
        items += page["items"]
        after = page["next"]
    return items, after


def user_change(item: Row) -> tuple[int, str, str, str]:
    return item["position"], item["resource"], item["op"], item["id"]


FIRST_XID = [
    pytest.param("T1", id="late-one-has-the-older-xid"),
    # the open transaction then holds the newest transaction id: other snapshots do not list it as running
    pytest.param("T2", id="late-one-has-the-newest-xid"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("first", FIRST_XID)
def test_a_change_that_commits_after_a_later_position_is_never_skipped(tmp_path: Path, first: str) -> None:
    with (
        fresh_database("postgres", tmp_path, "late") as url,
        live_server(url, tmp_path, env=ENV) as server,
        api_client(server) as api,
        Outside(url) as db,
    ):
        start = api.get("/changes", params={"after": "now"}).json()["next"]
        t1, id1, pos1, id2, pos2 = db.out_of_order(first)
        assert start < pos1, (start, pos1)
        stream = StreamReader(server, start, want=2)
        try:
            # T2 is committed, but handing it out now would let a reader pass T1's position before T1 commits
            for wait in (0, 1):
                began = time.monotonic()
                response = api.get("/changes", params={"after": start, "wait": wait})
                assert response.status_code == 200, response.text
                early = response.json()
                assert id2 not in {item["id"] for item in early["items"]}, early
                assert early["items"] == [], early
                assert start <= early["next"] < pos1, (early, pos1)
                assert time.monotonic() - began >= wait * 0.9  # it waited for news and found none
            previous = early["next"]

            # a long poll started while T1 is open answers once T1 commits, T1 first
            answer: dict[str, Any] = {}

            def long_poll() -> None:
                with api_client(server) as own:
                    answer["response"] = own.get("/changes", params={"after": previous, "wait": 5})
                    answer["at"] = time.monotonic()

            poll = threading.Thread(target=long_poll, daemon=True)
            poll.start()
            time.sleep(0.7)
            assert poll.is_alive(), answer.get("response")
            assert not stream.events, "the stream sent a change while T1 was open"
            assert stream.error is None, stream.error
            committed = time.monotonic()
            db.run(t1.execute("COMMIT"))
            poll.join(timeout=10)
            assert not poll.is_alive(), "the long poll did not answer after T1 committed"
            response = answer["response"]
            assert response.status_code == 200, response.text
            assert answer["at"] >= committed
            page = response.json()
            assert page["items"], page
            assert user_change(page["items"][0]) == (pos1, "users", "insert", id1)
            rest, _ = follow(api, page["next"], pos2)
            assert [user_change(item) for item in page["items"] + rest] == [
                (pos1, "users", "insert", id1),
                (pos2, "users", "insert", id2),
            ]

            # reading again from the same `next` gives both, none skipped, nothing more
            both, head = follow(api, previous, pos2)
            assert [user_change(item) for item in both] == [
                (pos1, "users", "insert", id1),
                (pos2, "users", "insert", id2),
            ]
            assert [item["row"] for item in both] == [api.get(f"/users/{i}").json() for i in (id1, id2)]
            assert head == pos2
            assert api.get("/changes", params={"after": head}).json() == {"items": [], "next": head}

            # the stream, open all along, sends both in the same order
            stream.wait(timeout=5)
            assert stream.error is None, stream.error
            assert [(event_id, change) for _, event_id, change in stream.events] == [
                (pos1, both[0]),
                (pos2, both[1]),
            ]
            assert stream.events[0][0] >= committed
        finally:
            stream.close()


@pytest.mark.postgres
@pytest.mark.parametrize("first", FIRST_XID)
def test_a_rolled_back_position_is_passed_over_and_the_later_change_delivered_once(tmp_path: Path, first: str) -> None:
    with (
        fresh_database("postgres", tmp_path, "rollback") as url,
        live_server(url, tmp_path, env=ENV) as server,
        api_client(server) as api,
        Outside(url) as db,
    ):
        start = api.get("/changes", params={"after": "now"}).json()["next"]
        t1, id1, pos1, id2, pos2 = db.out_of_order(first)
        assert start < pos1, (start, pos1)
        early = api.get("/changes", params={"after": start, "wait": 1}).json()
        assert early["items"] == [], early
        assert early["next"] < pos1, (early, pos1)

        db.run(t1.execute("ROLLBACK"))
        items, head = follow(api, early["next"], pos2)
        assert [user_change(item) for item in items] == [(pos2, "users", "insert", id2)]
        assert items[0]["row"] == api.get(f"/users/{id2}").json()
        assert api.get(f"/users/{id1}").status_code == 404
        # exactly once: from the start again, and nothing after it
        again, _ = follow(api, start, head)
        assert again == items
        assert api.get("/changes", params={"after": head, "wait": 1}).json() == {"items": [], "next": head}


# --- 2. twenty seconds of mixed writes, a restart, a stream cut and resumed -------------------------------------------

RUN_FOR = 20.0
RESTART_AT = 10.0
SSE_FROM = 4.0
SSE_CUT_AT = 7.0
SSE_UNTIL = 17.0
WRITERS = 8
PATHS = {
    "users": "users",
    "goals": "goals",
    "tasks": "tasks",
    "conversations": "conversations",
    "patterns": "patterns",
    "notification_log": "notification-log",
}
"""Each resource the feed names, and its path."""
TASK_STATUSES = ("pending", "done", "missed", "rescheduled", "cancelled")
GOAL_STATUSES = ("active", "completed", "abandoned", "pipeline")
REFUSALS = {404, 409, 422}
"""Answers a writer may get for a row another writer deleted meanwhile (or a reference to it)."""


class Served:
    """``flux-dao serve`` on one database and one port, restartable (a deployment rolling its only replica)."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server: LiveServer | None = None
        self.starts = 0
        self.runs: list[LiveServer] = []
        self.stops: list[tuple[int, float]] = []
        """Each stop's exit code and how long it took."""

    def start(self) -> None:
        self.starts += 1
        folder = self.workdir / f"run{self.starts}"  # the log file is named after the port
        folder.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
        env.update({"DATABASE_URL": self.url, "PYTHONUNBUFFERED": "1", **ENV})
        args = ["--manifest", str(MANIFEST), "serve", "--port", str(self.port)]
        self.server = start_server(args, env, folder, self.port)
        self.runs.append(self.server)
        self.server.wait_healthy()

    def stop(self) -> None:
        if self.server is not None:
            began = time.monotonic()
            code = self.server.stop(timeout=30)
            self.stops.append((code, time.monotonic() - began))
            self.server = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Bag:
    """Ids some writer saw created, for others to pick (O(1) add, remove, pick)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (id, owner: the user for goals and tasks, the email for users)
        self.index: dict[str, int] = {}

    def add(self, row_id: str, owner: str) -> None:
        if row_id not in self.index:
            self.index[row_id] = len(self.items)
            self.items.append((row_id, owner))

    def remove(self, row_id: str) -> None:
        at = self.index.pop(row_id, None)
        if at is None:
            return
        last = self.items.pop()
        if at < len(self.items):
            self.items[at] = last
            self.index[last[0]] = at

    def pick(self, rng: random.Random) -> tuple[str, str] | None:
        return rng.choice(self.items) if self.items else None

    def owned_by(self, owner: str) -> list[str]:
        return [row_id for row_id, who in self.items if who == owner]


@dataclass
class Known:
    """What the writers know exists, and what the service acknowledged (a 2xx answer)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: Bag = field(default_factory=Bag)
    goals: Bag = field(default_factory=Bag)
    tasks: Bag = field(default_factory=Bag)
    rows: list[tuple[str, Row]] = field(default_factory=list)
    """(resource, row) a create, update or upsert answered."""
    deletes: list[tuple[str, str]] = field(default_factory=list)
    bulks: list[tuple[list[str], str, int]] = field(default_factory=list)
    """(task ids, status, updated_count) of each bulk update answered 200."""
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(operation, status code or transport error) -> how many."""
    unanswered: list[float] = field(default_factory=list)
    """When a request got no answer (a transport error)."""

    def answered(self, op: str, status: str) -> None:
        with self.lock:
            self.answers[op, status] += 1

    def pick(self, bag: Bag, rng: random.Random) -> tuple[str, str] | None:
        with self.lock:
            return bag.pick(rng)

    def created(self, resource: str, row: Row) -> None:
        self.rows.append((resource, row))
        with self.lock:
            if resource == "users":
                self.users.add(row["id"], row["email"])
            elif resource == "goals":
                self.goals.add(row["id"], row["user_id"])
            elif resource == "tasks":
                self.tasks.add(row["id"], row["user_id"])

    def forget(self, resource: str, row_id: str) -> None:
        with self.lock:
            if resource == "users":
                self.users.remove(row_id)
                for child in (self.goals, self.tasks):
                    for owned in child.owned_by(row_id):
                        child.remove(owned)
            else:
                {"goals": self.goals, "tasks": self.tasks}[resource].remove(row_id)


def when() -> str:
    return f"2031-0{random.randint(1, 9)}-1{random.randint(0, 9)}T0{random.randint(0, 9)}:30:00Z"  # noqa: S311


class Writer:
    """One writer thread's random mix of writes; every 2xx is recorded in ``known``, nothing else."""

    def __init__(self, base: str, known: Known, seed: int, until: float) -> None:
        self.api = httpx.Client(base_url=f"{base}{API}", headers={KEY_HEADER: API_KEY}, timeout=15)
        self.known = known
        self.rng = random.Random(seed)  # noqa: S311 (test data)
        self.until = until
        self.serial = 0
        self.failure: BaseException | None = None
        self.ops: list[tuple[Callable[[], None], int]] = [
            (self.create_user, 8),
            (self.create_goal, 10),
            (self.create_task, 18),
            (self.create_conversation, 2),
            (self.create_pattern, 2),
            (self.patch_task, 16),
            (self.patch_goal, 8),
            (self.delete_task, 4),
            (self.delete_goal, 5),
            (self.delete_user, 3),
            (self.bulk_update, 8),
            (self.batch, 8),
            (self.upsert_user, 6),
        ]

    def run(self) -> None:
        functions = [op for op, _ in self.ops]
        weights = [weight for _, weight in self.ops]
        try:
            while time.monotonic() < self.until:
                self.rng.choices(functions, weights)[0]()
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.failure = exc
        finally:
            self.api.close()

    def send(self, op: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """The answer, or None when there was none (the server is restarting): then nothing is recorded."""
        try:
            response = self.api.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            self.known.answered(op, type(exc).__name__)
            self.known.unanswered.append(time.monotonic())
            time.sleep(0.05)
            return None
        self.known.answered(op, str(response.status_code))
        if response.status_code == 503:
            time.sleep(0.05)
        return response

    def email(self) -> str:
        self.serial += 1
        return f"w{uuid.uuid4().hex[:10]}-{self.serial}@example.com"

    def user(self) -> str | None:
        picked = self.known.pick(self.known.users, self.rng)
        return None if picked is None else picked[0]

    def goal(self) -> tuple[str, str] | None:
        return self.known.pick(self.known.goals, self.rng)

    # -- the writes ---------------------------------------------------------------------------------------------------

    def create_user(self) -> None:
        body = {"email": self.email(), "onboarded": self.rng.random() < 0.5, "profile": {"n": self.serial}}
        response = self.send("create user", "POST", "/users", json=body)
        if response is not None and response.status_code == 201:
            self.known.created("users", response.json())

    def create_goal(self) -> None:
        user_id = self.user()
        if user_id is None:
            return self.create_user()
        body: Row = {"user_id": user_id, "title": f"goal {self.serial}", "class_tags": ["a", str(self.serial % 5)]}
        parent = self.goal()
        if parent is not None and parent[1] == user_id:
            body["parent_goal_id"] = parent[0]
        response = self.send("create goal", "POST", "/goals", json=body)
        if response is not None and response.status_code == 201:
            self.known.created("goals", response.json())
        return None

    def create_task(self) -> None:
        body: Row = {
            "title": f"task {self.serial}",
            "scheduled_at": when(),
            "duration_minutes": self.rng.randint(5, 90),
        }
        goal = self.goal() if self.rng.random() < 0.7 else None
        if goal is not None:
            body |= {"goal_id": goal[0], "user_id": goal[1]}
        elif (user_id := self.user()) is not None:
            body["user_id"] = user_id
        else:
            return self.create_user()
        response = self.send("create task", "POST", "/tasks", json=body)
        if response is not None and response.status_code == 201:
            self.known.created("tasks", response.json())
        return None

    def create_conversation(self) -> None:
        if (user_id := self.user()) is None:
            return
        body = {"user_id": user_id, "langgraph_thread_id": uuid.uuid4().hex, "context_type": "goal"}
        response = self.send("create conversation", "POST", "/conversations", json=body)
        if response is not None and response.status_code == 201:
            self.known.created("conversations", response.json())

    def create_pattern(self) -> None:
        if (user_id := self.user()) is None:
            return
        body = {"user_id": user_id, "pattern_type": "streak", "confidence": round(self.rng.random(), 3)}
        response = self.send("create pattern", "POST", "/patterns", json=body)
        if response is not None and response.status_code == 201:
            self.known.created("patterns", response.json())

    def patch_task(self) -> None:
        if (picked := self.known.pick(self.known.tasks, self.rng)) is None:
            return
        task_id, user_id = picked
        body: Row = {"status": self.rng.choice(TASK_STATUSES), "title": f"task {self.serial} patched"}
        if self.rng.random() < 0.3:
            body["duration_minutes"] = self.rng.randint(1, 120)
        if self.rng.random() < 0.3:
            goal = self.goal()
            body["goal_id"] = goal[0] if goal is not None and goal[1] == user_id else None
        response = self.send("patch task", "PATCH", f"/tasks/{task_id}", json=body)
        if response is not None and response.status_code == 200:
            self.known.rows.append(("tasks", response.json()))
        elif response is not None and response.status_code == 404:
            self.known.forget("tasks", task_id)

    def patch_goal(self) -> None:
        if (picked := self.goal()) is None:
            return
        goal_id, user_id = picked
        body: Row = {"status": self.rng.choice(GOAL_STATUSES), "description": f"d{self.serial}"}
        if self.rng.random() < 0.3:
            other = self.goal()
            body["parent_goal_id"] = other[0] if other is not None and other[1] == user_id else None
        if self.rng.random() < 0.3:
            body["pipeline_order"] = self.rng.randint(1, 9)
        response = self.send("patch goal", "PATCH", f"/goals/{goal_id}", json=body)
        if response is not None and response.status_code == 200:
            self.known.rows.append(("goals", response.json()))
        elif response is not None and response.status_code == 404:
            self.known.forget("goals", goal_id)

    def delete(self, resource: str, row_id: str) -> None:
        response = self.send(f"delete {resource}", "DELETE", f"/{resource}/{row_id}")
        if response is not None and response.status_code == 204:
            self.known.deletes.append((resource, row_id))
        if response is not None and response.status_code in (204, 404):
            self.known.forget(resource, row_id)

    def delete_task(self) -> None:
        if (picked := self.known.pick(self.known.tasks, self.rng)) is not None:
            self.delete("tasks", picked[0])

    def delete_goal(self) -> None:
        if (picked := self.goal()) is not None:
            self.delete("goals", picked[0])

    def delete_user(self) -> None:
        with self.known.lock:
            if len(self.known.users.items) < 10:  # keep some users for the others to write under
                return
        if (user_id := self.user()) is not None:
            self.delete("users", user_id)

    def bulk_update(self) -> None:
        ids = []
        for _ in range(self.rng.randint(1, 6)):
            if (picked := self.known.pick(self.known.tasks, self.rng)) is not None:
                ids.append(picked[0])
        if not ids:
            return
        status = self.rng.choice(TASK_STATUSES)
        body = {"task_ids": ids, "new_status": status}
        response = self.send("bulk update", "POST", "/tasks/bulk-update-state", json=body)
        if response is not None and response.status_code == 200:
            self.known.bulks.append((ids, status, response.json()["updated_count"]))

    def batch(self) -> None:
        if (user_id := self.user()) is None:
            return self.create_user()
        operations: list[Row] = [
            {"op": "create", "resource": "goals", "ref": "g", "body": {"user_id": user_id, "title": "batch goal"}},
            *(
                {
                    "op": "create",
                    "resource": "tasks",
                    "body": {
                        "user_id": user_id,
                        "goal_id": "$g.id",
                        "title": f"batch task {n}",
                        "scheduled_at": when(),
                    },
                }
                for n in range(self.rng.randint(1, 4))
            ),
        ]
        if (picked := self.known.pick(self.known.tasks, self.rng)) is not None:
            operations.append({"op": "update", "resource": "tasks", "id": picked[0], "body": {"status": "rescheduled"}})
        response = self.send("batch", "POST", "/batch", json={"operations": operations})
        if response is None or response.status_code != 200:
            return None
        for operation, result in zip(operations, response.json()["results"], strict=True):
            assert result["status"] in (200, 201), result
            if result["status"] == 201:
                self.known.created(operation["resource"], result["row"])
            else:
                self.known.rows.append((operation["resource"], result["row"]))
        return None

    def upsert_user(self) -> None:
        picked = self.known.pick(self.known.users, self.rng)
        email = picked[1] if picked is not None and self.rng.random() < 0.8 else self.email()
        body = {"email": email, "onboarded": self.rng.random() < 0.5, "profile": {"upserted": self.serial}}
        response = self.send("upsert user", "POST", "/users", params={"on_conflict": "email"}, json=body)
        if response is not None and response.status_code == 201:
            self.known.created("users", response.json())
        elif response is not None and response.status_code == 200:
            self.known.rows.append(("users", response.json()))


class Consumer:
    """Follows the feed in a thread: long polls, then the stream (cut once on purpose, resumed with
    ``Last-Event-ID``, and across the server's restart), then long polls until it reaches ``drain_to``."""

    def __init__(self, base: str, t0: float) -> None:
        self.base = base
        self.t0 = t0
        self.changes: list[tuple[Row, str, float]] = []
        """Each change as received, how (poll / sse), and when (seconds since ``t0``)."""
        self.position: int | None = None
        """Where to go on from: the last `next` or event id (None: not started, read from the oldest kept)."""
        self.drain_to: int | None = None
        self.failure: BaseException | None = None
        self.anomalies: list[str] = []
        self.events: Counter[str] = Counter()
        self.sse_connects: list[tuple[float, str]] = []
        self.cut = False
        self.resume = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the consumer did not reach the head {self.drain_to} (at {self.position})"

    def _done(self) -> bool:
        return self.drain_to is not None and self.position is not None and self.position >= self.drain_to

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=f"{self.base}{API}", headers={KEY_HEADER: API_KEY}) as http:
                while not self._done():
                    if self.drain_to is None and SSE_FROM <= self.elapsed() < SSE_UNTIL:
                        self._stream(http)
                    else:
                        self._poll(http)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.failure = exc

    def _take(self, change: Row, via: str) -> None:
        if self.position is not None and change["position"] <= self.position:
            self.anomalies.append(f"{via}: position {change['position']} after {self.position}")
        self.changes.append((change, via, self.elapsed()))
        self.position = change["position"]

    def _poll(self, http: httpx.Client) -> None:
        params: dict[str, Any] = {"wait": 2}
        if self.position is not None:
            params["after"] = self.position
        try:
            response = http.get("/changes", params=params, timeout=10)
        except httpx.TransportError as exc:
            self.events[f"poll {type(exc).__name__}"] += 1
            time.sleep(0.1)
            return
        self.events[f"poll {response.status_code}"] += 1
        if response.status_code == 503:
            time.sleep(0.1)
            return
        assert response.status_code == 200, response.text
        page = response.json()
        for change in page["items"]:
            self._take(change, "poll")
        if self.position is not None and page["next"] < self.position:
            self.anomalies.append(f"next {page['next']} went back from {self.position}")
        self.position = page["next"]

    def _stream(self, http: httpx.Client) -> None:
        params, headers = {}, {}
        if self.resume:
            headers["Last-Event-ID"] = str(self.position)
        elif self.position is not None:
            params["after"] = str(self.position)
        try:
            with http.stream(
                "GET", "/changes/stream", params=params, headers=headers, timeout=httpx.Timeout(3.0, connect=2.0)
            ) as response:
                if response.status_code == 503:
                    self.events["sse 503"] += 1
                    time.sleep(0.1)
                    return
                assert response.status_code == 200, response.read()
                self.sse_connects.append((self.elapsed(), "Last-Event-ID" if self.resume else "after"))
                self.resume = True
                if self._read_events(response):
                    return
                self.events["sse ended by the server"] += 1
        except httpx.TransportError as exc:
            self.events[f"sse {type(exc).__name__}"] += 1
            time.sleep(0.1)

    def _read_events(self, response: httpx.Response) -> bool:
        """Take the stream's events; True when the consumer leaves it (the cut on purpose, or time to poll)."""
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in response.iter_lines():
            if line.startswith(":"):
                self.events["sse heartbeat"] += 1
            elif line:
                name, _, value = line.partition(":")
                if name == "data":
                    data.append(value.removeprefix(" "))
                else:
                    fields[name] = value.removeprefix(" ")
            else:  # a blank line ends an event
                if data and self._dispatch(fields, json.loads("\n".join(data))):
                    return True
                fields, data = {}, []
                if not self.cut and self.elapsed() >= SSE_CUT_AT:
                    self.cut = True
                    self.events["sse cut on purpose"] += 1
                    return True
                if self.drain_to is not None or self.elapsed() >= SSE_UNTIL:
                    return True
        return False

    def _dispatch(self, fields: dict[str, str], payload: Any) -> bool:
        """Take one event; True when it ends the stream (``dropped``)."""
        kind = fields.get("event", "message")
        if kind == "change":
            if fields.get("id") != str(payload["position"]):
                self.anomalies.append(f"event id {fields.get('id')} for position {payload['position']}")
            self._take(payload, "sse")
            return False
        if kind in {"dropped", "closing"}:  # a slow consumer, or the server shutting down: resume where it says
            self.events[f"sse {kind}"] += 1
            self.position = max(self.position or 0, payload["resume_after"])
            return True
        self.anomalies.append(f"unexpected event {kind}: {payload}")
        return False


def list_everything(api: httpx.Client) -> dict[str, dict[str, Row]]:
    """Every row of every resource as the API lists it, page after page by cursor."""
    tables: dict[str, dict[str, Row]] = {}
    for resource, path in PATHS.items():
        rows: dict[str, Row] = {}
        params: dict[str, Any] = {"limit": 500}
        while True:
            response = api.get(f"/{path}", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            for row in page["items"]:
                assert row["id"] not in rows, (resource, row)
                rows[row["id"]] = row
            if not page["next_cursor"]:
                break
            params = {"limit": 500, "cursor": page["next_cursor"]}
        tables[resource] = rows
    return tables


def replay(changes: list[Row]) -> tuple[dict[str, dict[str, Row]], list[str], Counter[str]]:
    """The tables the changes make from empty, what in them could not happen, and counts for the log."""
    tables: dict[str, dict[str, Row]] = {resource: {} for resource in PATHS}
    wrong: list[str] = []
    counts: Counter[str] = Counter()
    for change in changes:
        rows = tables[change["resource"]]
        key, op, row = change["id"], change["op"], change["row"]
        counts[f"{change['resource']} {op}"] += 1
        if row["id"] != key:
            wrong.append(f"{change['position']}: id {key} but row {row['id']}")
        if op == "insert":
            if key in rows:
                wrong.append(f"{change['position']}: insert of {change['resource']} {key} already there")
            rows[key] = row
        elif op == "update":
            before = rows.get(key)
            if before is None:
                wrong.append(f"{change['position']}: update of {change['resource']} {key} never inserted")
            elif before["version"] == row["version"]:  # not through the API: a reference nulled by a delete
                counts[f"{change['resource']} set null"] += 1
            rows[key] = row
        elif op == "delete":
            if rows.pop(key, None) is None:
                wrong.append(f"{change['position']}: delete of {change['resource']} {key} not there")
        else:
            wrong.append(f"{change['position']}: op {op}")
    return tables, wrong, counts


def stored_positions(url: str) -> list[int]:
    return [int(str(row[0])) for row in run_sql(url, "SELECT position FROM flux_dao_changes ORDER BY position")]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_twenty_seconds_of_writes_replay_exactly_from_the_feed(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "proof") as url:
        served = Served(url, tmp_path)
        served.start()
        try:
            t0 = time.monotonic()
            known = Known()
            writers = [Writer(served.base, known, seed, t0 + RUN_FOR) for seed in range(WRITERS)]
            threads = [threading.Thread(target=w.run, daemon=True) for w in writers]
            consumer = Consumer(served.base, t0)
            consumer.start()
            for thread in threads:
                thread.start()
            time.sleep(max(0.0, t0 + RESTART_AT - time.monotonic()))
            restart_began = time.monotonic() - t0
            served.restart()
            restarted = time.monotonic() - t0
            for thread in threads:
                thread.join(timeout=RUN_FOR + 30)
                assert not thread.is_alive(), "a writer hangs"
            failures = [w.failure for w in writers if w.failure is not None]
            assert not failures, failures
            written = time.monotonic() - t0

            with httpx.Client(base_url=f"{served.base}{API}", headers={KEY_HEADER: API_KEY}, timeout=30) as api:
                last = stored_positions(url)[-1]
                deadline = time.monotonic() + 10
                while (head := api.get("/changes", params={"after": "now"}).json()["next"]) < last:
                    assert time.monotonic() < deadline, f"the head stays at {head}, below the last change {last}"
                    time.sleep(0.1)
                consumer.drain_to = head
                consumer.join(timeout=30)
                assert consumer.failure is None, consumer.failure
                drained = time.monotonic() - t0
                listed = list_everything(api)
            positions = stored_positions(url)
        finally:
            served.stop()

    changes = [change for change, _, _ in consumer.changes]
    seen = [change["position"] for change in changes]
    tables, wrong, counts = replay(changes)
    answers = Counter[str]()
    for (_, status), n in known.answers.items():
        answers[status] += n
    vias = Counter(via for _, via, _ in consumer.changes)
    print(  # noqa: T201 (a summary for the test log)
        f"\n[{backend}] {len(changes)} changes seen ({dict(vias)}) of {len(positions)} logged, head {head}; "
        f"writers {written:.1f} s, restart {restart_began:.1f}-{restarted:.1f} s (stops: "
        f"{[(code, round(took, 1)) for code, took in served.stops]}), drained at {drained:.1f} s\n"
        f"  answers: {dict(answers)}\n  per op: {dict(sorted(known.answers.items()))}\n"
        f"  changes: {dict(sorted(counts.items()))}\n  consumer: {dict(consumer.events)}, "
        f"stream connects {[(round(t, 1), how) for t, how in consumer.sse_connects]}\n"
        f"  rows at the end: { {r: len(rows) for r, rows in listed.items()} }"
    )

    # the run did what it claims: writes on both sides of the restart, the stream cut, resumed and restarted
    assert served.starts == 2
    assert [code for code, _ in served.stops] == [0, 0], [run.output[-3000:] for run in served.runs]
    assert {s for s in answers if s.isdigit()} <= {"200", "201", "204", "503"} | {str(s) for s in REFUSALS}, answers
    lost = [round(at - t0, 1) for at in known.unanswered if not restart_began - 1 <= at - t0 <= restarted + 1]
    assert not lost, f"requests without an answer outside the restart: at {lost} s"
    times = [t for _, _, t in consumer.changes]
    assert any(t < restart_began for t in times)
    assert any(t > restarted for t in times)
    sse = [(t, change["position"]) for change, via, t in consumer.changes if via == "sse"]
    connects = consumer.sse_connects
    assert consumer.cut, "the stream was never cut on purpose"
    resumed = [t for t, how in connects if how == "Last-Event-ID"]
    assert len(resumed) >= 2, connects  # after the cut, and after the restart
    assert any(t < SSE_CUT_AT for t, _ in sse), "no event before the cut"
    assert any(SSE_CUT_AT <= t < restart_began for t, _ in sse), "no event between the cut and the restart"
    assert any(t > restarted for t, _ in sse), "no event on the stream after the restart"
    assert any(t >= RESTART_AT for t in resumed), "the stream was not resumed after the restart"
    assert any(t < SSE_FROM for _, via, t in consumer.changes if via == "poll")
    assert any(t > SSE_UNTIL for _, via, t in consumer.changes if via == "poll")
    for kind in ("users delete", "goals delete", "tasks delete", "tasks update", "goals update", "users update"):
        assert counts[kind] > 0, (kind, counts)
    assert counts["tasks set null"] > 0, counts  # a goal's delete nulled its tasks' goal_id
    acked_deleted_tasks = sum(1 for resource, _ in known.deletes if resource == "tasks")
    assert counts["tasks delete"] > acked_deleted_tasks, counts  # a user's delete removed its tasks (cascade)

    # nothing seen twice, in order, exactly the positions the log holds
    assert not consumer.anomalies, consumer.anomalies[:10]
    assert len(set(seen)) == len(seen), [p for p, n in Counter(seen).items() if n > 1][:10]
    assert seen == sorted(seen)
    assert seen == positions, sorted(set(positions) ^ set(seen))[:20]

    # the replay is every table, exactly
    assert not wrong, wrong[:10]
    for resource in PATHS:
        assert tables[resource].keys() == listed[resource].keys(), (
            resource,
            sorted(tables[resource].keys() ^ listed[resource].keys())[:10],
        )
        different = [i for i, row in listed[resource].items() if tables[resource][i] != row]
        assert not different, [(tables[resource][i], listed[resource][i]) for i in different[:3]]

    # every acknowledged write is among the changes
    rows_of: dict[tuple[str, str], list[Row]] = {}
    deleted: set[tuple[str, str]] = set()
    for change in changes:
        rows_of.setdefault((change["resource"], change["id"]), []).append(change["row"])
        if change["op"] == "delete":
            deleted.add((change["resource"], change["id"]))
    missing = [(r, row) for r, row in known.rows if row not in rows_of.get((r, row["id"]), [])]
    assert not missing, missing[:3]
    assert not [d for d in known.deletes if d not in deleted], known.deletes[:3]
    for ids, status, count in known.bulks:
        matched = {i for i in ids if any(row["status"] == status for row in rows_of.get(("tasks", i), []))}
        assert len(matched) >= count, (ids, status, count)
    assert len(known.rows) > 500, "too few writes were acknowledged to prove anything"


# --- shutting down with a subscriber ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_open_stream_does_not_hold_a_stopping_server(backend: str, tmp_path: Path) -> None:
    """SIGTERM with a subscriber on ``/changes/stream``: the stream ends with a ``closing`` event (the client
    reconnects elsewhere with ``Last-Event-ID``) and the server exits promptly and cleanly, rather than waiting out
    ``FLUX_DAO_SHUTDOWN_GRACE`` and cancelling the stream with an error."""
    grace = 4
    with fresh_database(backend, tmp_path, "sse_stop") as url:
        server_cm = live_server(url, tmp_path, env={**ENV, "FLUX_DAO_SHUTDOWN_GRACE": str(grace)})
        with server_cm as server:
            stream = StreamReader(server, 0, want=1000)
            time.sleep(0.5)
            began = time.monotonic()
            assert server.stop() == 0
            took = time.monotonic() - began
            stream.wait(5)
            stream.close()
        log = server.output
    assert stream.final is not None, stream.error
    assert stream.final[0] == "closing", stream.final
    assert took < grace / 2, f"the server took {took:.1f} s to stop"
    assert "Traceback" not in log, log
    assert "ERROR" not in log, log
