"""Proof on the replica rig (``deploy/rig.py``): real pgbouncer, haproxy and a streaming standby.

Three flux-dao replicas behind haproxy, pgbouncer in transaction mode in front of the primary and of the standby,
plain reads on the standby. Under mixed load, a replica is SIGKILLed and restarted, both poolers are restarted and the
standby is stopped and started: every acknowledged write must be in the database, failures must be 503s (or, for
requests in flight on the killed replica, haproxy's 502 / a cut connection), and every replica must come back by
itself. Then read-your-writes: with the standby delayed, a read carrying the write's token never sees the old value,
while reads without it do (so the check can fail).

``deploy/rig test`` runs these against a running rig (``FLUX_RIG_DIR``); otherwise they build one of their own.
"""

import asyncio
import collections
import contextlib
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
import rig as rig_tool  # deploy/ is not a package

pytestmark = [pytest.mark.rig, pytest.mark.slow, pytest.mark.postgres]

CONSISTENCY = "X-Flux-Consistency"
AGENTS = 8
LOAD_SECONDS = 30.0


@pytest.fixture(scope="module")
def rig() -> Iterator[rig_tool.Rig]:
    running = os.environ.get("FLUX_RIG_DIR")
    if running:
        yield rig_tool.Rig.load(Path(running))
        return
    folder = Path(tempfile.mkdtemp(prefix="flux-dao-rig-", dir="/tmp"))
    try:
        yield rig_tool.up(folder)
    finally:
        rig_tool.down(folder)


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- the mixed load ------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request: when it ran and how it ended (status, or the exception's name)."""

    what: str
    started: float
    ended: float
    status: int | None
    error: str | None = None


@dataclass
class Agent:
    """One agent's user, its tasks, and what the service acknowledged to it."""

    name: str
    user_id: str
    token: str | None = None
    tasks: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    """The last acknowledged title of each task."""
    unsure: dict[str, set[str]] = field(default_factory=dict)
    """Titles sent after the last acknowledged one whose outcome is unknown (no answer, or a 5xx)."""
    statuses: dict[str, str] = field(default_factory=dict)
    unsure_statuses: dict[str, set[str]] = field(default_factory=dict)


class Load:
    """Agents writing and reading through haproxy, each sending back the last consistency token it got."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url + "/api/v1"
        self.outcomes: list[Outcome] = []
        self.created: list[str] = []
        self.stop = asyncio.Event()

    async def call(self, client: httpx.AsyncClient, agent: Agent, what: str, method: str, path: str, **kw: Any) -> Any:
        headers = {CONSISTENCY: agent.token} if agent.token else {}
        started = time.monotonic()
        try:
            answer = await client.request(method, self.base + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.outcomes.append(Outcome(what, started, time.monotonic(), None, type(exc).__name__))
            return None
        self.outcomes.append(Outcome(what, started, time.monotonic(), answer.status_code))
        agent.token = answer.headers.get(CONSISTENCY, agent.token)
        return answer

    async def run_agent(self, client: httpx.AsyncClient, agent: Agent) -> None:
        steps = (self.create, self.patch, self.read, self.list_tasks, self.bulk)
        for n in itertools.count():
            if self.stop.is_set():
                return
            step = steps[n % len(steps)] if agent.tasks else self.create
            await step(client, agent, n)

    async def create(self, client: httpx.AsyncClient, agent: Agent, n: int) -> None:
        body = {"user_id": agent.user_id, "title": f"{agent.name} task {n}"}
        answer = await self.call(client, agent, "create", "POST", "/tasks", json=body)
        if answer is not None and answer.status_code == 201:
            agent.tasks.append(answer.json()["id"])
            self.created.append(answer.json()["id"])

    async def patch(self, client: httpx.AsyncClient, agent: Agent, n: int) -> None:
        task = agent.tasks[n % len(agent.tasks)]
        title = f"{agent.name} title {n}"
        answer = await self.call(client, agent, "patch", "PATCH", f"/tasks/{task}", json={"title": title})
        if answer is not None and answer.status_code == 200:
            agent.titles[task] = title
            agent.unsure.pop(task, None)
        elif answer is None or answer.status_code >= 500:
            agent.unsure.setdefault(task, set()).add(title)

    async def read(self, client: httpx.AsyncClient, agent: Agent, n: int) -> None:
        task = agent.tasks[n % len(agent.tasks)]
        answer = await self.call(client, agent, "read", "GET", f"/tasks/{task}")
        if answer is not None and answer.status_code == 200 and task in agent.titles:
            seen = answer.json()["title"]
            assert seen == agent.titles[task] or seen in agent.unsure.get(task, ()), (
                f"read-your-writes broken: {task} read {seen!r}, wrote {agent.titles[task]!r}"
            )

    async def list_tasks(self, client: httpx.AsyncClient, agent: Agent, _n: int) -> None:
        await self.call(client, agent, "list", "GET", "/tasks", params={"user_id": agent.user_id})

    async def bulk(self, client: httpx.AsyncClient, agent: Agent, n: int) -> None:
        ids = agent.tasks[-3:]
        status = ("done", "pending", "missed")[n % 3]
        body = {"task_ids": ids, "new_status": status}
        answer = await self.call(client, agent, "bulk", "POST", "/tasks/bulk-update-state", json=body)
        if answer is not None and answer.status_code == 200:
            for task in ids:
                agent.statuses[task] = status
                agent.unsure_statuses.pop(task, None)
        elif answer is None or answer.status_code >= 500:
            for task in ids:
                agent.unsure_statuses.setdefault(task, set()).add(status)


async def _new_agents(base_url: str, count: int) -> list[Agent]:
    agents = []
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(count):
            email = f"agent-{i}-{uuid.uuid4().hex[:8]}@rig.test"
            answer = await client.post(f"{base_url}/api/v1/users", json={"email": email})
            assert answer.status_code == 201, answer.text
            agents.append(Agent(f"agent-{i}", answer.json()["id"], token=answer.headers.get(CONSISTENCY)))
    return agents


def test_faults_under_load_lose_no_acknowledged_write_and_every_replica_recovers(rig: rig_tool.Rig) -> None:
    agents = _run(_new_agents(rig.url, AGENTS))
    load = Load(rig.url)
    events: dict[str, float] = {}

    async def faults() -> None:
        loop = asyncio.get_running_loop()

        async def at(second: float, name: str, action: Any) -> None:
            await asyncio.sleep(max(0.0, start + second - time.monotonic()))
            events[name] = time.monotonic()
            await loop.run_in_executor(None, action)

        await at(4, "kill replica", lambda: rig.kill_replica(0))
        await at(7, "restart replica", lambda: rig.start_replica(0))
        await at(11, "restart primary pooler", lambda: rig.restart_bouncer("primary"))
        await at(15, "restart standby pooler", lambda: rig.restart_bouncer("standby"))
        await at(19, "stop standby", rig.stop_standby)
        await at(24, "start standby", rig.start_standby)
        await asyncio.sleep(max(0.0, start + LOAD_SECONDS - time.monotonic()))
        load.stop.set()

    async def drive() -> None:
        limits = httpx.Limits(max_connections=AGENTS, max_keepalive_connections=AGENTS)
        async with httpx.AsyncClient(timeout=15, limits=limits) as client:
            await asyncio.gather(faults(), *(load.run_agent(client, agent) for agent in agents))

    start = time.monotonic()
    _run(drive())

    counts = collections.Counter((o.what, o.status or o.error) for o in load.outcomes)
    summary = (
        f"outcomes {sorted(counts.items(), key=str)}, events { ({k: round(v - start, 2) for k, v in events.items()}) }"
    )
    # failures: 503s, or requests that were in flight on the replica when it was killed
    killed = events["kill replica"]
    unexpected = [
        o
        for o in load.outcomes
        if (o.status is None or o.status >= 500 or o.status == 404)
        and o.status != 503
        and not (o.started <= killed + 0.05 and o.ended >= killed)
    ]
    assert not unexpected, (summary, [(o.what, o.status, o.error, round(o.started - start, 2)) for o in unexpected[:9]])
    acked = [o for o in load.outcomes if o.status is not None and o.status < 300]
    assert len(acked) > 500, f"the load barely ran: {summary}"

    # every acknowledged write is in the database
    async def check_database() -> None:
        conn = await asyncpg.connect(rig.dsn("primary"))
        try:
            rows = await conn.fetch(
                "SELECT id::text, title, status FROM tasks WHERE id = ANY($1::uuid[])", load.created
            )
        finally:
            await conn.close()
        stored = {r["id"]: (r["title"], r["status"]) for r in rows}
        missing = set(load.created) - set(stored)
        assert not missing, f"{len(missing)} acknowledged creates are missing"
        for agent in agents:
            for task, title in agent.titles.items():
                assert stored[task][0] == title or stored[task][0] in agent.unsure.get(task, ()), task
            for task, status in agent.statuses.items():
                assert stored[task][1] == status or stored[task][1] in agent.unsure_statuses.get(task, ()), task

    _run(check_database())

    # every replica is ready again, with the standby back in use, without anyone restarting it
    for index in range(len(rig.replica_ports)):
        body = rig.wait_ready(rig.replica_url(index), patience=30)
        deadline = time.monotonic() + 15
        while body["standby"]["state"] != "up" and time.monotonic() < deadline:
            time.sleep(0.2)
            body = rig.wait_ready(rig.replica_url(index))
        assert body["standby"]["state"] == "up", (index, body)
    rig.wait_ready(rig.url)


# -- read-your-writes -----------------------------------------------------------------------------------------------


ROUNDS = 1000
WRITERS = 25


async def _rounds(base_url: str, user_id: str, *, with_token: bool, rounds: int) -> tuple[int, int, int]:
    """``rounds`` of "PATCH a task, then GET it" split over ``WRITERS`` agents: (stale reads, reads, tokens sent)."""
    stale = reads = tokens_sent = 0
    api = base_url + "/api/v1"

    async def writer(client: httpx.AsyncClient, count: int) -> None:
        nonlocal stale, reads, tokens_sent
        answer = await client.post(f"{api}/tasks", json={"user_id": user_id, "title": "v0"})
        assert answer.status_code == 201, answer.text
        task = answer.json()["id"]
        for n in range(1, count + 1):
            written = await client.patch(f"{api}/tasks/{task}", json={"title": f"v{n}"})
            assert written.status_code == 200, written.text
            token = written.headers[CONSISTENCY]
            headers = {CONSISTENCY: token} if with_token else {}
            tokens_sent += with_token
            read = await client.get(f"{api}/tasks/{task}", headers=headers)
            reads += 1
            if read.status_code == 404 and not with_token:  # the standby does not have the task yet
                stale += 1
                continue
            assert read.status_code == 200, read.text
            stale += read.json()["title"] != f"v{n}"

    async with httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_connections=WRITERS)) as client:
        share = rounds // WRITERS
        await asyncio.gather(*(writer(client, share) for _ in range(WRITERS)))
    return stale, reads, tokens_sent


def test_a_read_with_the_write_token_never_sees_the_old_value_on_a_delayed_standby(rig: rig_tool.Rig) -> None:
    rig.delay_standby("200ms")
    try:
        user = _run(_new_agents(rig.url, 1))[0]
        for index in range(len(rig.replica_ports)):  # every replica still reads from the (delayed) standby
            deadline = time.monotonic() + 10
            while rig.wait_ready(rig.replica_url(index))["standby"]["state"] != "up":
                assert time.monotonic() < deadline, f"replica {index} does not use the standby"
                time.sleep(0.2)

        stale_without, _, _ = _run(_rounds(rig.url, user.user_id, with_token=False, rounds=100))
        assert stale_without > 0, "without the token no read was stale: the standby is not delayed or not read"

        stale, reads, tokens = _run(_rounds(rig.url, user.user_id, with_token=True, rounds=ROUNDS))
        assert reads == ROUNDS
        assert tokens == ROUNDS
        assert stale == 0, f"{stale} of {reads} reads with the write's token returned the old value"
    finally:
        rig.delay_standby("0")


def test_the_tokened_reads_are_served_by_the_standby_once_it_caught_up(rig: rig_tool.Rig) -> None:
    """The token does not simply send every read to the primary: with the standby caught up, it serves them."""
    scans = "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_tables WHERE relname = 'tasks'"

    async def check() -> None:
        conn = await asyncpg.connect(rig.dsn("standby"))
        try:
            before = await conn.fetchval(scans)
            user = (await _new_agents(rig.url, 1))[0]
            async with httpx.AsyncClient(timeout=10) as client:
                api = rig.url + "/api/v1"
                created = await client.post(f"{api}/tasks", json={"user_id": user.user_id, "title": "t"})
                token = created.headers[CONSISTENCY]
                for _ in range(200):
                    read = await client.get(f"{api}/tasks/{created.json()['id']}", headers={CONSISTENCY: token})
                    assert read.status_code == 200
                    assert read.json()["title"] == "t"
            after = before
            for _ in range(40):  # an idle backend reports its statistics within 10 s
                after = await conn.fetchval(scans)
                if after - before >= 200:
                    break
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        assert after - before >= 200, f"the standby served {after - before} of 200 reads by id"

    _run(check())


def test_a_malformed_token_is_refused_naming_the_header(rig: rig_tool.Rig) -> None:
    answer = httpx.get(f"{rig.url}/api/v1/tasks", headers={CONSISTENCY: "yesterday"}, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == CONSISTENCY


def test_replicas_started_together_migrated_once(rig: rig_tool.Rig) -> None:
    """Three replicas migrated at the same start-up through DATABASE_DIRECT_URL: one history, at one head."""

    async def check() -> None:
        conn = await asyncpg.connect(rig.dsn("primary"))
        try:
            versions = await conn.fetch("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()
        assert len(versions) == 1

    _run(check())
    with contextlib.suppress(FileNotFoundError):
        logs = "".join((rig.dir / f"replica-{i}.log").read_text() for i in range(len(rig.replica_ports)))
        assert "Traceback" not in logs
