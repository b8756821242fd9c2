"""Safe writes (issue #11): what bulk create, a batch and If-Match cost, against plain single writes.

python -m bench.safe_writes                      # PostgreSQL (the production backend), 100k tasks; a few minutes
python -m bench.safe_writes --sqlite             # then the same on flux-dao's embedded SQLite default
python -m bench.safe_writes --tiny               # seconds; what tests/bench/test_safe_writes_smoke.py runs
python -m bench.safe_writes --json figures.json  # also save the figures

Each comparison runs on one flux-dao server (``bench.run.flux_server``) over seeded data (``bench.seed``), its two
sides warmed, then alternated A B B A (``bench.run.alternate``) so drift of a shared machine hits both alike:

1. Bulk create: ``POST /api/v1/tasks/bulk`` with 1,000-row bodies against single ``POST /api/v1/tasks`` (S3's
   bodies; a bulk body is 1,000 of them), replayed by the same load generator (wrk, else bench/load.py's python
   fallback) with the same connections and duration. Rows stored per second = requests/s x rows per request.
   ``--bulk-connections`` (4) rather than ``--connections``: wrk counts an answer slower than 2 s as an error, and
   more queued 1,000-row inserts on one worker take that long. Target: bulk >= 20x.
2. Batch: a 10-operation ``POST /api/v1/batch`` (a goal with ``ref`` g, then 9 tasks with ``"goal_id": "$g.id"``)
   against a single ``POST /api/v1/tasks``, the same way. Target: batch p50 <= 3x the POST's p50. With enough
   connections to keep the server busy, a closed loop's p50 is about connections / req/s, so this ratio follows the
   server's cost per request; ``--connections 1`` gives the latency of one request on an idle server instead.
3. If-Match on S4 (PATCH a task's status). Every PATCH bumps the row's version, so a fixed request list (what wrk
   replays) cannot carry the right ETag. A closed-loop asyncio + httpx client (``Patcher``) instead: each connection
   owns a disjoint share of the sampled tasks and remembers each one's ETag from its last answer (first from one
   GET each), sending it as ``If-Match``. The very same client runs with and without the header, alternated, so
   its own cost is equal on both sides. A python client may well be the bottleneck rather than the server, so the
   server's CPU time per request (user + system of its process tree, from /proc) is recorded beside req/s and p50.
   Every answer must be 200: a 412 would mean the client lost track of a version. Target: If-Match adds < 10%
   (to the p50 and to the server's CPU per request).

Timing claims need a quiet machine and wrk; ``--tiny`` only proves the script works.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvloop

from bench import load
from bench.run import HEADERS, MANIFEST, SERVERS, admin, alternate, combine, cpu_seconds, flux_server, machine
from bench.scenarios import API, SCENARIOS, Request, requests_for
from bench.seed import STATUSES, WINDOW_DAYS, Dataset, seed, seed_sqlite

BULK_ROWS = 1000
BULK_VARIANTS = 4
BATCH_TASKS = 9
BULK_TARGET, BATCH_TARGET, IF_MATCH_TARGET = 20.0, 3.0, 0.10
CONDITIONS = ("scale", "workers", "connections", "bulk_connections", "duration", "warmup", "rounds", "loader")
NON_2XX = (("bulk", "single"), ("bulk", "bulk"), ("batch", "single"), ("batch", "batch"))
"""The load generator's sides; the If-Match client raises on any answer but 200 itself."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.safe_writes", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin DSN of the PostgreSQL server; a throwaway database is created and dropped",
    )
    p.add_argument("--sqlite", action="store_true", help="also run on flux-dao's SQLite default, after PostgreSQL")
    p.add_argument("--scale", type=float, default=1.0, help="1 = 1,000 users, 100k tasks")
    p.add_argument("--workers", type=int, default=1, help="flux-dao workers")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per side")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds per comparison")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument(
        "--bulk-connections",
        type=int,
        default=4,
        help="connections of the bulk comparison, both sides (wrk counts an answer slower than 2 s as an error:\n"
        "8 queued 1,000-row inserts on one worker took that long on a busy 2-core machine)",
    )
    p.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto", help="for bulk and batch")
    p.add_argument("--json", type=Path, help="save the figures here")
    p.add_argument("--tiny", action="store_true", help="smoke mode: tiny data, 1 s runs, python loader")
    args = p.parse_args(argv)
    if args.tiny:
        args.scale, args.duration, args.warmup, args.rounds = 0.02, 1.0, 0.3, 1
        args.connections = args.bulk_connections = 4
        if args.loader == "auto":
            args.loader = "python"
    if args.loader == "auto":
        args.loader = "wrk" if load.have_wrk() else "python"
    return args


# -- the request lists of bulk and batch -------------------------------------------------------------------------------


def bulk_requests(data: Dataset) -> list[Request]:
    """Bodies of 1,000 S3 (single POST) bodies each, from differently seeded S3 lists."""
    bodies = [
        "[" + ",".join(body or "" for _, _, body in requests_for(SCENARIOS["S3"], data, seed=n)[:BULK_ROWS]) + "]"
        for n in range(BULK_VARIANTS)
    ]
    return [("POST", f"{API}/bulk", body) for body in bodies]


def batch_requests(data: Dataset, variants: int = 200, seed_value: int = 7) -> list[Request]:
    """A goal and 9 tasks pointing at it through ``$g.id``, for a random user, in one batch."""
    rng = random.Random(seed_value)
    requests: list[Request] = []
    for _ in range(variants):
        user = str(rng.choice(data.user_ids))
        operations: list[dict[str, Any]] = [
            {"op": "create", "resource": "goals", "ref": "g", "body": {"user_id": user, "title": "bench batch goal"}}
        ]
        for _ in range(BATCH_TASKS):
            day = f"{data.start + timedelta(days=rng.randrange(WINDOW_DAYS)):%Y-%m-%dT%H:%M:%SZ}"
            body = {"user_id": user, "goal_id": "$g.id", "title": "bench batch task", "scheduled_at": day}
            operations.append({"op": "create", "resource": "tasks", "body": body})
        requests.append(("POST", "/api/v1/batch", msgspec.json.encode({"operations": operations}).decode()))
    return requests


# -- If-Match: a client that keeps every task's ETag -------------------------------------------------------------------


class Patcher:
    """S4 on a closed loop: one httpx client per connection, each PATCHing its own share of the tasks in turn.

    One client per connection (a pool of one) rather than one shared pool: httpx's pool costs CPU per request that
    grows with its size, and this client must stay as cheap as it can. ``etags`` holds every task's ETag from its
    last answer; a run without If-Match records them too, so the next run with it starts from the right versions.
    """

    def __init__(self, url: str, task_ids: list[uuid.UUID], connections: int) -> None:
        self.url = url
        shares = ([str(task) for task in task_ids[n::connections]] for n in range(connections))
        self.shares = [share for share in shares if share]
        self.clients = [httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) for _ in self.shares]
        self.connections = list(zip(self.clients, self.shares, strict=True))
        self.etags: dict[str, str] = {}
        self.bodies = [msgspec.json.encode({"status": status}).decode() for status in STATUSES]

    async def seed_etags(self) -> None:
        async def fetch(client: httpx.AsyncClient, share: list[str]) -> None:
            for task in share:
                response = await client.get(f"{API}/{task}")
                response.raise_for_status()
                self.etags[task] = response.headers["etag"]

        await asyncio.gather(*(fetch(client, share) for client, share in self.connections))

    async def run(self, seconds: float, if_match: bool) -> tuple[load.Figures, float]:
        """One run: its figures (the server's CPU per request included) and the client's own CPU per request."""
        statuses: Counter[int] = Counter()
        latencies: list[float] = []

        async def connection(client: httpx.AsyncClient, share: list[str], seed_value: int) -> None:
            rng = random.Random(seed_value)
            turn = 0
            while time.perf_counter() < deadline:
                task = share[turn % len(share)]
                turn += 1
                headers = {"If-Match": self.etags[task]} if if_match else {}
                body = self.bodies[rng.randrange(len(self.bodies))]
                sent = time.perf_counter()
                response = await client.patch(f"{API}/{task}", content=body, headers=headers)
                latencies.append((time.perf_counter() - sent) * 1000)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.etags[task] = response.headers["etag"]

        pid = SERVERS[self.url]
        server_before, client_before = cpu_seconds(pid), time.process_time()
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(connection(client, share, n) for n, (client, share) in enumerate(self.connections)))
        elapsed = time.perf_counter() - began
        server_cpu, client_cpu = cpu_seconds(pid) - server_before, time.process_time() - client_before
        if set(statuses) != {200}:
            raise RuntimeError(f"PATCH with{'' if if_match else 'out'} If-Match answered {dict(statuses)}, not all 200")
        latencies.sort()
        n = len(latencies)
        figures = load.Figures(
            rps=n / elapsed,
            p50_ms=latencies[n // 2],
            p99_ms=latencies[min(n - 1, int(n * 0.99))],
            requests=n,
            non_2xx=0,
            cpu_us_per_req=server_cpu / n * 1e6,
        )
        return figures, client_cpu / n * 1e6

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


async def patch_rounds(args: argparse.Namespace, patcher: Patcher) -> dict[str, list[tuple[load.Figures, float]]]:
    """Seed the ETags, warm both sides, then alternate A B B A, all on one event loop and the same clients."""
    sides = {"without": False, "with": True}
    try:
        await patcher.seed_etags()
        for if_match in sides.values():
            await patcher.run(args.warmup, if_match)
        runs: dict[str, list[tuple[load.Figures, float]]] = {name: [] for name in sides}
        order = list(sides.items())
        for _ in range(args.rounds):
            for name, if_match in order:
                runs[name].append(await patcher.run(args.duration, if_match))
            order.reverse()
    finally:
        await patcher.close()
    return runs


def if_match_check(args: argparse.Namespace, url: str, data: Dataset) -> dict[str, Any]:
    """S4 with If-Match against without, from the same client; the costs it adds, in p50, server CPU and req/s."""
    patcher = Patcher(url, data.task_ids, args.connections)
    runs = uvloop.run(patch_rounds(args, patcher))
    row: dict[str, Any] = {
        name: combine([f for f, _ in figures]) | {"client_cpu_us_per_req": statistics.median(c for _, c in figures)}
        for name, figures in runs.items()
    }
    plain, conditional = row["without"], row["with"]
    row["tasks"] = len(patcher.etags)
    row["rps_change"] = conditional["rps"] / plain["rps"] - 1
    row["p50_added"] = conditional["p50_ms"] / plain["p50_ms"] - 1
    row["cpu_added"] = conditional["cpu_us_per_req"] / plain["cpu_us_per_req"] - 1
    return row


# -- the three comparisons on one server -------------------------------------------------------------------------------


def line(name: str, figures: dict[str, float]) -> str:
    return (
        f"  {name:24} {figures['rps']:7.1f} req/s  p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms  "
        f"server cpu {figures['cpu_us_per_req']:7.0f} us/req  non2xx {figures['non_2xx']:.0f}"
    )


def measure_all(args: argparse.Namespace, url: str, data: Dataset) -> dict[str, Any]:
    single = (url, requests_for(SCENARIOS["S3"], data), HEADERS)
    result: dict[str, Any] = {}

    bulk_args = argparse.Namespace(**vars(args) | {"connections": args.bulk_connections})
    bulk: dict[str, Any] = alternate(bulk_args, {"single": single, "bulk": (url, bulk_requests(data), HEADERS)})
    bulk["connections"] = args.bulk_connections
    bulk["rows_per_request"] = BULK_ROWS
    bulk["rows_per_s"] = {"single": bulk["single"]["rps"], "bulk": bulk["bulk"]["rps"] * BULK_ROWS}
    bulk["factor"] = bulk["rows_per_s"]["bulk"] / bulk["rows_per_s"]["single"]
    result["bulk"] = bulk
    print(
        f"bulk create: {bulk['rows_per_s']['bulk']:.0f} rows/s stored against {bulk['rows_per_s']['single']:.0f} by "
        f"single POSTs = {bulk['factor']:.1f}x (target >= {BULK_TARGET:.0f}x); server cpu per row "
        f"{bulk['bulk']['cpu_us_per_req'] / BULK_ROWS:.0f} us against {bulk['single']['cpu_us_per_req']:.0f} us"
    )
    print(line("POST /tasks", bulk["single"]))
    print(line(f"POST /tasks/bulk x{BULK_ROWS}", bulk["bulk"]), flush=True)

    batch: dict[str, Any] = alternate(args, {"single": single, "batch": (url, batch_requests(data), HEADERS)})
    batch["factor"] = batch["batch"]["p50_ms"] / batch["single"]["p50_ms"]
    result["batch"] = batch
    print(f"batch of {BATCH_TASKS + 1} creates, p50: batch / single POST = {batch['factor']:.2f}x (<= {BATCH_TARGET}x)")
    print(line("POST /tasks", batch["single"]))
    print(line(f"POST /batch ({BATCH_TASKS + 1} ops)", batch["batch"]), flush=True)

    row = if_match_check(args, url, data)
    result["if_match"] = row
    print(
        f"S4 PATCH with If-Match vs without ({row['tasks']} tasks): {row['p50_added']:+.1%} p50, "
        f"{row['cpu_added']:+.1%} server cpu/req, {row['rps_change']:+.1%} req/s (target: < {IF_MATCH_TARGET:+.0%})"
    )
    for name in ("without", "with"):
        side = row[name]
        print(f"{line(f'PATCH {name} If-Match', side)}  client cpu {side['client_cpu_us_per_req']:4.0f} us/req")
    return result


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
            print(f"== PostgreSQL, {data.tasks} tasks, {args.workers} worker(s)", flush=True)
            return measure_all(args, url, data)


def sqlite_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-safe-writes-") as tmp:
        database = Path(tmp) / "flux_dao.db"
        with flux_server(f"sqlite:///{database}", args.workers) as (url, _):  # serve migrates the new file
            data = seed_sqlite(database, MANIFEST, args.scale)
            print(f"== SQLite, {data.tasks} tasks, {args.workers} worker(s)", flush=True)
            return measure_all(args, url, data)


def checks(backends: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for backend, result in backends.items():
        for name, value, op, target in (
            ("bulk create rows/s / single POST rows/s", result["bulk"]["factor"], ">=", BULK_TARGET),
            ("10-operation batch p50 / single POST p50", result["batch"]["factor"], "<=", BATCH_TARGET),
            ("S4 p50 added by If-Match", result["if_match"]["p50_added"], "<", IF_MATCH_TARGET),
            ("S4 server cpu/req added by If-Match", result["if_match"]["cpu_added"], "<", IF_MATCH_TARGET),
        ):
            passed = value >= target if op == ">=" else value <= target if op == "<=" else value < target
            found.append({"check": f"{backend}: {name}", "value": value, "op": op, "target": target, "pass": passed})
            print(f"{'PASS' if passed else 'FAIL'} {backend}: {name}: {value:.3f} {op} {target}")
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
        "command": "python -m bench.safe_writes " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "conditions": {key: getattr(args, key) for key in CONDITIONS},
        **backends,
        "checks": checks(backends),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"saved {args.json}")
    bad = sum(result[test][side]["non_2xx"] for result in backends.values() for test, side in NON_2XX)
    if bad:
        print(f"FAIL: {bad} non-2xx responses", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
