"""Change feed (issue #12): what the change triggers cost writers, how fast one reader drains the feed, SSE fan-out.

python -m bench.changes                      # PostgreSQL (the production backend), 100k tasks; a few minutes
python -m bench.changes --sqlite             # then the same on flux-dao's embedded SQLite default
python -m bench.changes --tiny               # seconds; what tests/bench/test_changes_smoke.py runs
python -m bench.changes --json figures.json  # also save the figures

Everything runs on one flux-dao server (``bench.run.flux_server``, ``--workers``, default 1: the simplest setting,
and the one where every SSE stream shares one event loop and one 10-connection pool, the hardest case for fan-out)
over seeded data (``bench.seed``). The seed goes through the change triggers like any write (PostgreSQL's COPY fires
the row triggers as SQLite's inserts do): scale 1 leaves about 112k changes in the log (1,000
users, 10,000 goals, 100,000 tasks, about 1,000 notifications), the log the feed reads below.

1. Trigger cost for writers: S3 (``POST /api/v1/tasks``) and S4 (``PATCH /api/v1/tasks/{id}`` a status) from
   ``bench/scenarios.py``, replayed by the same load generator (wrk, else bench/load.py's python fallback) with the
   change triggers on and off, on the same server and data: both sides warmed, then alternated A B B A as
   ``bench.run.alternate`` does, switching the triggers before every run. The warm-ups go in the reverse order (B A,
   then A B B A): the work a run leaves to the database (autovacuum of what it wrote, checkpoints) lands in the next
   run, and in this order each side's runs follow one run of each side (warm-ups in the order A B would put both
   runs without the triggers right after runs with them, and the change log's upkeep on the side without).
   Off on PostgreSQL is ``ALTER TABLE ... DISABLE TRIGGER`` of each recorded table's change trigger (``ENABLE`` turns
   it back on); on SQLite, which cannot disable a trigger, they are dropped (``drop_change_triggers``) and created
   again (``sync_change_triggers`` with the manifest's metadata), exactly as a migration installs them. The server
   keeps running throughout. Each run counts the changes the log gained: none with the triggers off, at least one
   per answered write with them on, else the switch did not work and the run stops. Figures: req/s, p50, p99 and the
   server's CPU per request of each side, and on PostgreSQL the CPU per request of every ``postgres`` process on
   the machine (where the triggers run; the whole cluster, so noisy on a shared machine); the cost is the share of
   req/s lost (1 - with / without) and the p50 added (with / without - 1). Target: both < 15% on S3 and on S4.
2. Feed throughput to one reader: one keep-alive httpx client pages ``GET /api/v1/changes?after=N&limit=1000`` from
   position 0 up to the head (``after=now`` read first) as fast as it can, decoding each page (msgspec, positions
   only) to follow ``next``: changes / s. Target >= 20,000/s. Then the same log over one SSE stream
   (``/api/v1/changes/stream?after=0``), timed from the request to the event of the head's position: changes / s
   (reported, no target of its own). After one warm-up pass of paging, ``--rounds`` rounds of both, alternated A B
   B A; medians. Both must count every change the log holds, in ascending positions, or the run stops.
3. SSE fan-out latency: ``--subscribers`` (100) streams on ``/api/v1/changes/stream?after=now`` (one httpx client
   each, in this process, on uvloop), all connected before the first write; then one client POSTs a task (S3's
   bodies) at a steady ``--rate`` (20/s) for ``--fanout-seconds`` (10 s). Latency of a (subscriber, change) pair is
   the time from the POST's 201 arriving to that subscriber receiving the change's event (matched by the row id in
   its ``data``; its ``id:`` line gives the position): p50, p99 and max over every pair. Every subscriber must
   receive every write once, in ascending positions, within 10 s of the last write, or the run fails; a change
   missing from a stream that went on past its position (read back through the feed afterwards) is also counted
   as skipped: that stream lost it for good. Latencies are over the pairs received. The client shares the
   machine, so its own event-loop lag (how late a 5 ms sleep wakes up) during the writes is reported beside them.
   Target: p99 <= 100 ms.

Timing claims need a quiet machine and wrk; ``--tiny`` only proves the script works.
"""

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import msgspec
import sqlalchemy as sa
import uvloop

from bench import load
from bench.run import HEADERS, MANIFEST, admin, combine, flux_server, machine, measure, warm
from bench.scenarios import SCENARIOS, Request, requests_for
from bench.seed import Dataset, seed, seed_sqlite
from flux_dao.manifest import load_manifest
from flux_dao.schema import build_resources
from flux_dao.schema.change_triggers import OPS, POSTGRES_TRIGGER, recorded_tables
from flux_dao.schema.system import CHANGES_TABLE
from flux_dao.store.change_triggers import drop_change_triggers, sync_change_triggers

FEED = "/api/v1/changes"
STREAM = "/api/v1/changes/stream"
TRIGGER_COST_TARGET, FEED_TARGET, FANOUT_P99_TARGET = 0.15, 20_000.0, 100.0
WRITERS = {"S3": "POST /tasks", "S4": "PATCH /tasks/{id}"}
CONDITIONS = (
    "scale",
    "workers",
    "connections",
    "duration",
    "warmup",
    "rounds",
    "loader",
    "page_limit",
    "subscribers",
    "rate",
    "fanout_seconds",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.changes", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin DSN of the PostgreSQL server; a throwaway database is created and dropped",
    )
    p.add_argument("--sqlite", action="store_true", help="also run on flux-dao's SQLite default, after PostgreSQL")
    p.add_argument("--scale", type=float, default=1.0, help="1 = 1,000 users, 100k tasks (about 112k changes)")
    p.add_argument("--workers", type=int, default=1, help="flux-dao workers")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured writer run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per writer side")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds per comparison (writers; paging against SSE)")
    p.add_argument("--connections", type=int, default=32, help="writer connections (S3, S4)")
    p.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto", help="for S3 and S4")
    p.add_argument("--page-limit", type=int, default=1000, help="limit of each feed page")
    p.add_argument("--subscribers", type=int, default=100, help="SSE streams of the fan-out")
    p.add_argument("--rate", type=float, default=20.0, help="writes per second during the fan-out")
    p.add_argument("--fanout-seconds", type=float, default=10.0, help="seconds of writes during the fan-out")
    p.add_argument("--json", type=Path, help="save the figures here")
    p.add_argument("--tiny", action="store_true", help="smoke mode: tiny data, 1 s runs, python loader, 10 streams")
    args = p.parse_args(argv)
    if args.tiny:
        args.scale, args.duration, args.warmup, args.rounds = 0.02, 1.0, 0.3, 1
        args.connections, args.subscribers, args.fanout_seconds = 4, 10, 1.0
        if args.loader == "auto":
            args.loader = "python"
    if args.loader == "auto":
        args.loader = "wrk" if load.have_wrk() else "python"
    return args


def percentile(values: list[float], share: float) -> float:
    """The value at ``share`` of the sorted ``values`` (nearest rank, as bench/load.py's python loader)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


# -- the triggers, off and on ------------------------------------------------------------------------------------------


class Triggers(Protocol):
    """The change triggers of one database: switched off or on between runs, and the changes logged so far."""

    def set(self, on: bool) -> None: ...

    def logged(self) -> int: ...

    def database_cpu(self) -> float: ...


def postgres_cpu_seconds() -> float:
    """User + system CPU so far of every PostgreSQL process on this machine (NaN when none can be read).

    The database's share of a write: a local server runs the triggers in its backends, outside flux-dao's processes.
    It counts the whole cluster (the checkpointer, autovacuum, other databases), so it is noisy on a shared machine.
    """
    total, found = 0.0, False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        found = True
    return total if found else float("nan")


def recorded_table_names() -> list[str]:
    """The tables whose writes the feed records, as the migrations install their triggers."""
    return [table.name for table in recorded_tables(build_resources(load_manifest(MANIFEST)).metadata)]


class PostgresTriggers:
    """``ALTER TABLE ... DISABLE / ENABLE TRIGGER`` of every recorded table's change trigger, in one transaction."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.tables = recorded_table_names()
        self.names = [POSTGRES_TRIGGER]

    def set(self, on: bool) -> None:
        async def run() -> int:
            conn = await asyncpg.connect(self.dsn)
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '10s'")
                    for table in self.tables:
                        for name in self.names:
                            await conn.execute(f'ALTER TABLE "{table}" {"ENABLE" if on else "DISABLE"} TRIGGER {name}')
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                        "WHERE c.relname = any($1) AND t.tgname = any($2) AND t.tgenabled <> 'D'",
                        self.tables,
                        self.names,
                    )
                )
            finally:
                await conn.close()

        enabled = asyncio.run(run())
        if enabled != (len(self.tables) * len(self.names) if on else 0):
            raise RuntimeError(f"{enabled} change triggers enabled after switching them {'on' if on else 'off'}")

    def logged(self) -> int:
        async def run() -> int:
            conn = await asyncpg.connect(self.dsn)
            try:
                return int(await conn.fetchval(f"SELECT count(*) FROM {CHANGES_TABLE}"))
            finally:
                await conn.close()

        return asyncio.run(run())

    def database_cpu(self) -> float:
        return postgres_cpu_seconds()


class SqliteTriggers:
    """SQLite cannot disable a trigger: dropped, then created again from the manifest, as a migration does."""

    def __init__(self, database: Path) -> None:
        self.engine = sa.create_engine(f"sqlite:///{database}", connect_args={"timeout": 30})
        self.metadata = build_resources(load_manifest(MANIFEST)).metadata
        self.expected = len(recorded_tables(self.metadata)) * len(OPS)

    def set(self, on: bool) -> None:
        with self.engine.begin() as conn:
            if on:
                sync_change_triggers(conn, self.metadata)
            else:
                drop_change_triggers(conn)
            count = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'flux\\_dao\\_changes\\_%' "
                "ESCAPE '\\'"
            ).scalar_one()
        if count != (self.expected if on else 0):
            raise RuntimeError(f"{count} change triggers present after switching them {'on' if on else 'off'}")

    def logged(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {CHANGES_TABLE}").scalar_one())

    def database_cpu(self) -> float:
        return float("nan")  # SQLite runs in flux-dao's own processes: its work is in the server's CPU

    def close(self) -> None:
        self.engine.dispose()


def switched(args: argparse.Namespace, url: str, requests: list[Request], triggers: Triggers) -> dict[str, Any]:
    """``bench.run.alternate`` over one request list, switching the triggers before each run: without, with, ...

    Each side's figures gain ``changes_logged`` (how many changes its runs added to the log) and ``runs`` (each run's).
    """
    sides = {"without": False, "with": True}
    try:
        for on in reversed(sides.values()):  # the side measured first is warmed last: see the module's docstring
            triggers.set(on)
            warm(args, url, requests)
        runs: dict[str, list[load.Figures]] = {name: [] for name in sides}
        database: dict[str, list[float]] = {name: [] for name in sides}
        logged = dict.fromkeys(sides, 0)
        order = list(sides.items())
        for _ in range(args.rounds):
            for name, on in order:
                triggers.set(on)
                before, cpu = triggers.logged(), triggers.database_cpu()
                figures = measure(args, url, requests)
                database[name].append((triggers.database_cpu() - cpu) / max(1, figures.requests) * 1e6)
                runs[name].append(figures)
                logged[name] += triggers.logged() - before
            order.reverse()
    finally:
        triggers.set(True)
    row: dict[str, Any] = {
        name: combine(figures)
        | {
            "db_cpu_us_per_req": statistics.median(database[name]),
            "changes_logged": logged[name],
            "runs": [asdict(f) | {"db_cpu_us_per_req": db} for f, db in zip(figures, database[name], strict=True)],
        }
        for name, figures in runs.items()
    }
    answered = row["with"]["requests"] - row["with"]["non_2xx"]
    if row["without"]["changes_logged"] or row["with"]["changes_logged"] < answered:
        raise RuntimeError(
            f"the triggers were not switched: {row['without']['changes_logged']} changes logged with them off, "
            f"{row['with']['changes_logged']} with them on for {answered} answered writes"
        )
    row["rps_lost"] = 1 - row["with"]["rps"] / row["without"]["rps"]
    row["p50_added"] = row["with"]["p50_ms"] / row["without"]["p50_ms"] - 1
    row["cpu_added"] = row["with"]["cpu_us_per_req"] / row["without"]["cpu_us_per_req"] - 1
    row["db_cpu_added"] = row["with"]["db_cpu_us_per_req"] / row["without"]["db_cpu_us_per_req"] - 1
    return row


def line(name: str, figures: dict[str, float]) -> str:
    db = figures["db_cpu_us_per_req"]
    database = "" if math.isnan(db) else f"  postgres cpu {db:4.0f} us/req"
    return (
        f"  {name:28} {figures['rps']:7.1f} req/s  p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms  "
        f"server cpu {figures['cpu_us_per_req']:4.0f} us/req{database}  non2xx {figures['non_2xx']:.0f}  "
        f"changes logged {figures['changes_logged']}"
    )


def trigger_cost(args: argparse.Namespace, url: str, data: Dataset, triggers: Triggers) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, title in WRITERS.items():
        row = switched(args, url, requests_for(SCENARIOS[key], data), triggers)
        result[key] = row
        print(
            f"{key} {title} with the change triggers vs without: {row['rps_lost']:+.1%} req/s lost, "
            f"{row['p50_added']:+.1%} p50, {row['cpu_added']:+.1%} server cpu/req"
            + ("" if math.isnan(row["db_cpu_added"]) else f", {row['db_cpu_added']:+.1%} postgres cpu/req")
            + f" (target: < {TRIGGER_COST_TARGET:.0%})"
        )
        for side in ("without", "with"):
            print(line(f"{key} {side} triggers", row[side]), flush=True)
    return result


# -- one reader draining the log ---------------------------------------------------------------------------------------


class Position(msgspec.Struct):
    position: int


class Page(msgspec.Struct):
    items: list[Position]
    next: int


DECODE_PAGE = msgspec.json.Decoder(Page).decode


async def head_of(url: str) -> int:
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as client:
        response = await client.get(FEED, params={"after": "now"})
        response.raise_for_status()
        return int(response.json()["next"])


async def page_through(url: str, head: int, limit: int) -> dict[str, float]:
    """Page from position 0 to ``head`` on one keep-alive connection, as fast as one client can."""
    count, pages, after, latencies = 0, 0, 0, []
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as client:
        cpu, began = time.process_time(), time.perf_counter()
        while after < head:
            sent = time.perf_counter()
            response = await client.get(FEED, params={"after": after, "limit": limit})
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"GET {FEED}?after={after} answered {response.status_code}: {response.text[:300]}")
            page = DECODE_PAGE(response.content)
            last = after
            for item in page.items:
                if item.position <= last:
                    raise RuntimeError(f"position {item.position} after {last}: the feed went back")
                last = item.position
            if page.next <= after and after < head:
                raise RuntimeError(f"the feed stopped at {after} before the head {head}")
            count, pages, after = count + len(page.items), pages + 1, page.next
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "changes": count,
        "pages": pages,
        "seconds": elapsed,
        "changes_per_s": count / elapsed,
        "page_p50_ms": percentile(latencies, 0.5),
        "client_cpu_share": cpu / elapsed,
    }


class Events:
    """Splits a text/event-stream body into events: ``{field: value}`` per blank-line-ended block, comments left out."""

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, chunk: bytes) -> list[dict[bytes, bytes]]:
        blocks = (self.rest + chunk).split(b"\n\n")
        self.rest = blocks.pop()
        events = []
        for block in blocks:
            fields: dict[bytes, bytes] = {}
            for text in block.split(b"\n"):
                if text and not text.startswith(b":"):
                    name, _, value = text.partition(b":")
                    fields[name] = value[1:] if value.startswith(b" ") else value
            if fields:
                events.append(fields)
        return events


def _dropped(event: dict[bytes, bytes]) -> None:
    if event.get(b"event") == b"dropped":
        raise RuntimeError(f"the stream dropped its client: {event.get(b'data', b'').decode()}")


async def stream_through(url: str, head: int) -> dict[str, float]:
    """One SSE stream from position 0, timed from the request to the event of ``head``."""
    count, last, first_s = 0, 0, float("nan")
    events = Events()
    timeout = httpx.Timeout(60, read=60)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=timeout) as client:
        cpu, began = time.process_time(), time.perf_counter()
        async with client.stream("GET", STREAM, params={"after": 0}) as response:
            if response.status_code != 200:
                raise RuntimeError(f"GET {STREAM}?after=0 answered {response.status_code}")
            async for chunk in response.aiter_raw():
                for event in events.feed(chunk):
                    _dropped(event)
                    if event.get(b"event") != b"change":
                        continue
                    position = int(event[b"id"])
                    if position <= last:
                        raise RuntimeError(f"event {position} after {last}: the stream went back")
                    if not count:
                        first_s = time.perf_counter() - began
                    count, last = count + 1, position
                if last >= head:
                    break
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "changes": count,
        "seconds": elapsed,
        "changes_per_s": count / elapsed,
        "first_event_s": first_s,
        "client_cpu_share": cpu / elapsed,
    }


async def drain_rounds(args: argparse.Namespace, url: str, head: int) -> dict[str, list[dict[str, float]]]:
    await page_through(url, head, args.page_limit)  # warm-up: the log into the database's cache
    runs: dict[str, list[dict[str, float]]] = {"pages": [], "stream": []}
    order = ["pages", "stream"]
    for _ in range(args.rounds):
        for name in order:
            run = await page_through(url, head, args.page_limit) if name == "pages" else await stream_through(url, head)
            runs[name].append(run)
        order.reverse()
    return runs


def feed_throughput(args: argparse.Namespace, url: str, triggers: Triggers) -> dict[str, Any]:
    head = uvloop.run(head_of(url))
    logged = triggers.logged()
    runs = uvloop.run(drain_rounds(args, url, head))
    result: dict[str, Any] = {"head": head, "logged": logged, "limit": args.page_limit}
    for name, each in runs.items():
        counts = {run["changes"] for run in each}
        if counts != {logged}:
            raise RuntimeError(f"reading the feed by {name} counted {sorted(counts)} changes; the log holds {logged}")
        result[name] = {key: statistics.median(run[key] for run in each) for key in each[0]} | {"runs": each}
    pages, stream = result["pages"], result["stream"]
    print(
        f"feed to one reader, {logged} changes: pages of {args.page_limit} {pages['changes_per_s']:8.0f} changes/s "
        f"({pages['seconds']:.2f} s, page p50 {pages['page_p50_ms']:.1f} ms, "
        f"client cpu {pages['client_cpu_share']:.0%}) (target >= {FEED_TARGET:.0f}/s)"
    )
    print(
        f"  the same over SSE              {stream['changes_per_s']:8.0f} changes/s ({stream['seconds']:.2f} s, "
        f"first event after {stream['first_event_s'] * 1000:.0f} ms, client cpu {stream['client_cpu_share']:.0%})",
        flush=True,
    )
    return result


# -- SSE fan-out -------------------------------------------------------------------------------------------------------


class Note(msgspec.Struct):
    resource: str
    op: str
    id: str


DECODE_NOTE = msgspec.json.Decoder(Note).decode


class Subscriber:
    """One SSE stream from the head on: when each inserted task's event arrived, by row id."""

    def __init__(self, url: str) -> None:
        self.client = httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=httpx.Timeout(60, read=None))
        self.ready = asyncio.Event()
        self.received: dict[str, float] = {}
        self.duplicates = 0
        self.out_of_order = 0
        self.last = 0

    async def follow(self) -> None:
        events = Events()
        async with self.client.stream("GET", STREAM, params={"after": "now"}) as response:
            if response.status_code != 200:
                raise RuntimeError(f"GET {STREAM}?after=now answered {response.status_code}")
            async for chunk in response.aiter_raw():
                arrived = time.perf_counter()
                self.ready.set()  # the first chunk is ``retry:``: the stream's start position is fixed by then
                for event in events.feed(chunk):
                    _dropped(event)
                    if event.get(b"event") != b"change":
                        continue
                    position = int(event[b"id"])
                    self.out_of_order += position <= self.last
                    self.last = max(self.last, position)
                    note = DECODE_NOTE(event[b"data"])
                    if note.resource == "tasks" and note.op == "insert":
                        if note.id in self.received:
                            self.duplicates += 1
                        else:
                            self.received[note.id] = arrived


async def loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    """How late a 5 ms sleep of this process's event loop wakes up, in ms, until ``stop``."""
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append((time.perf_counter() - began - 0.005) * 1000)


async def all_open(subscribers: list[Subscriber], tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every stream has answered (its start position is fixed from then on)."""
    connecting = time.perf_counter() + 60
    while not all(s.ready.is_set() for s in subscribers):
        for task in tasks:
            if task.done():
                await task  # raises what ended the stream
                raise RuntimeError("a subscriber's stream ended before the first write")
        if time.perf_counter() > connecting:
            raise RuntimeError(f"{sum(not s.ready.is_set() for s in subscribers)} streams not open after 60 s")
        await asyncio.sleep(0.01)


async def write_steadily(
    url: str, bodies: list[str], rate: float, seconds: float
) -> tuple[dict[str, float], list[float], float]:
    """POST a task every 1/``rate`` s for ``seconds``: when each row id's 201 arrived, each POST's ms, the pace."""
    written: dict[str, float] = {}
    write_ms: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as writer:
        writes = max(1, round(rate * seconds))
        began = time.perf_counter()
        for n in range(writes):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            sent = time.perf_counter()
            response = await writer.post("/api/v1/tasks", content=bodies[n % len(bodies)])
            done = time.perf_counter()
            if response.status_code != 201:
                raise RuntimeError(f"POST /api/v1/tasks answered {response.status_code}: {response.text[:300]}")
            written[response.json()["id"]] = done
            write_ms.append((done - sent) * 1000)
        pace = writes / (time.perf_counter() - began)
    return written, write_ms, pace


async def positions_after(url: str, after: int) -> dict[str, int]:
    """Row id -> position of every task insert logged after ``after``, read back through the feed once writes ended."""
    found: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as client:
        while True:
            response = await client.get(FEED, params={"after": after, "limit": 1000, "resources": "tasks"})
            response.raise_for_status()
            page = response.json()
            found |= {item["id"]: item["position"] for item in page["items"] if item["op"] == "insert"}
            if not page["items"]:
                return found
            after = page["next"]


async def fan_out(args: argparse.Namespace, url: str, bodies: list[str]) -> dict[str, Any]:
    subscribers = [Subscriber(url) for _ in range(args.subscribers)]
    tasks = [asyncio.create_task(s.follow()) for s in subscribers]
    lags: list[float] = []
    stop = asyncio.Event()
    try:
        await all_open(subscribers, tasks)
        start = await head_of(url)
        lagging = asyncio.create_task(loop_lag(lags, stop))
        written, write_ms, pace = await write_steadily(url, bodies, args.rate, args.fanout_seconds)
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline and any(len(s.received) < len(written) for s in subscribers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await lagging
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise RuntimeError("a subscriber's stream failed") from task.exception()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in subscribers:
            await s.client.aclose()
    latencies = [(s.received[row] - at) * 1000 for s in subscribers for row, at in written.items() if row in s.received]
    logged = await positions_after(url, start)
    skipped = sum(
        row not in s.received and row in logged and logged[row] < s.last for s in subscribers for row in written
    )
    return {
        "subscribers": len(subscribers),
        "writes": len(written),
        "writes_per_s": pace,
        "write_p50_ms": percentile(write_ms, 0.5),
        "pairs": len(latencies),
        "missing": len(subscribers) * len(written) - len(latencies),
        "skipped": skipped,
        "duplicates": sum(s.duplicates for s in subscribers),
        "out_of_order": sum(s.out_of_order for s in subscribers),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "min_ms": min(latencies, default=float("nan")),
        "client_loop_lag_p99_ms": percentile(lags, 0.99),
        "client_loop_lag_max_ms": max(lags, default=float("nan")),
    }


def fanout(args: argparse.Namespace, url: str, data: Dataset) -> dict[str, Any]:
    bodies = [body or "" for _, _, body in requests_for(SCENARIOS["S3"], data, seed=11)]
    row = uvloop.run(fan_out(args, url, bodies))
    print(
        f"SSE fan-out, {row['subscribers']} subscribers, {row['writes']} POSTs at {row['writes_per_s']:.1f}/s "
        f"(POST p50 {row['write_p50_ms']:.1f} ms): write 201 -> event p50 {row['p50_ms']:.1f} ms, "
        f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms over {row['pairs']} pairs "
        f"(target p99 <= {FANOUT_P99_TARGET:.0f} ms)"
    )
    print(
        f"  missing {row['missing']} (of which skipped for good: the stream went past the change's position "
        f"without it: {row['skipped']}), duplicates {row['duplicates']}, out of order {row['out_of_order']}; "
        f"this client's loop lag p99 {row['client_loop_lag_p99_ms']:.1f} ms, "
        f"max {row['client_loop_lag_max_ms']:.1f} ms",
        flush=True,
    )
    return row


# -- the three measurements on one server ------------------------------------------------------------------------------


def measure_all(args: argparse.Namespace, url: str, data: Dataset, triggers: Triggers) -> dict[str, Any]:
    return {
        "triggers": trigger_cost(args, url, data, triggers),
        "feed": feed_throughput(args, url, triggers),
        "fanout": fanout(args, url, data),
    }


@contextmanager
def postgres(admin_dsn: str) -> Iterator[str]:
    """A throwaway database; yields its plain DSN."""
    name = f"flux_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_run(args: argparse.Namespace) -> dict[str, Any]:
    with postgres(args.dsn) as dsn:
        db_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        with flux_server(db_url, args.workers) as (url, _):
            data = asyncio.run(seed(dsn, args.scale))
            triggers = PostgresTriggers(dsn)
            print(f"== PostgreSQL, {data.tasks} tasks, {triggers.logged()} changes, {args.workers} worker(s)")
            return measure_all(args, url, data, triggers)


def sqlite_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-changes-") as tmp:
        database = Path(tmp) / "flux_dao.db"
        with flux_server(f"sqlite:///{database}", args.workers) as (url, _):  # serve migrates the new file
            data = seed_sqlite(database, MANIFEST, args.scale)
            triggers = SqliteTriggers(database)
            try:
                print(f"== SQLite, {data.tasks} tasks, {triggers.logged()} changes, {args.workers} worker(s)")
                return measure_all(args, url, data, triggers)
            finally:
                triggers.close()


def checks(backends: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for backend, result in backends.items():
        targets: list[tuple[str, float, str, float]] = []
        for key, title in WRITERS.items():
            row = result["triggers"][key]
            targets += [
                (f"{key} {title} req/s lost to the change triggers", row["rps_lost"], "<", TRIGGER_COST_TARGET),
                (f"{key} {title} p50 added by the change triggers", row["p50_added"], "<", TRIGGER_COST_TARGET),
            ]
        targets += [
            ("feed pages to one reader, changes/s", result["feed"]["pages"]["changes_per_s"], ">=", FEED_TARGET),
            ("SSE fan-out p99, ms", result["fanout"]["p99_ms"], "<=", FANOUT_P99_TARGET),
        ]
        for name, value, op, target in targets:
            passed = value >= target if op == ">=" else value <= target if op == "<=" else value < target
            found.append({"check": f"{backend}: {name}", "value": value, "op": op, "target": target, "pass": passed})
            print(f"{'PASS' if passed else 'FAIL'} {backend}: {name}: {value:.3f} {op} {target}")
    return found


def faults(backends: dict[str, dict[str, Any]]) -> list[str]:
    """What makes the run fail whatever the timings: error answers, and changes a subscriber missed or saw twice."""
    found = []
    for backend, result in backends.items():
        bad = sum(result["triggers"][key][side]["non_2xx"] for key in WRITERS for side in ("without", "with"))
        if bad:
            found.append(f"{backend}: {bad} non-2xx answers to the writers")
        sse = result["fanout"]
        lost = {key: sse[key] for key in ("missing", "skipped", "duplicates", "out_of_order") if sse[key]}
        if lost:
            found.append(f"{backend}: SSE fan-out {lost}")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loader == "wrk" and not load.have_wrk():
        print(load.WRK_MISSING, file=sys.stderr)
        return 2
    if args.loader == "python" and not args.tiny:
        print(f"note: {load.WRK_MISSING} Falling back to the slower python loader.", file=sys.stderr)
    backends = {"postgres": postgres_run(args)}
    if args.sqlite:
        backends["sqlite"] = sqlite_run(args)
    print("\n== targets" + (" (--tiny: smoke mode, no timing claims)" if args.tiny else ""))
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.changes " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine() | {"load_average": os.getloadavg()},
        "conditions": {key: getattr(args, key) for key in CONDITIONS},
        **backends,
        "checks": checks(backends),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"saved {args.json}")
    problems = faults(backends)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
