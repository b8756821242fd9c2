"""The benchmark driver: start both servers, seed, load each scenario A B A B, report and save.

python -m bench                      # 100k tasks, then 1M for the growth columns; about 15 minutes
python -m bench --no-growth          # 100k only
python -m bench --tiny               # seconds; what the smoke test runs (no timing claims)
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import load
from bench.scenarios import SCENARIOS, requests_for
from bench.seed import Dataset, seed
from bench.startup import measure_startup

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
TARGETS = {"S1": 0.67, "S2": 0.5, "S2b": 0.5, "S3": 0.5, "S4": 0.5, "S5": 0.6, "S6": 0.6, "S7": 0.5}
GROWTH = ("S1", "S2b", "S5", "S6")


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
    p.add_argument("--no-startup", action="store_true", help="skip the start-up measurements")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per scenario and target")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds per scenario")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    p.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--tiny", action="store_true", help="smoke mode: tiny data, 1 s runs, python loader, no growth")
    args = p.parse_args(argv)
    if args.tiny:
        args.scale, args.duration, args.warmup, args.rounds = 0.02, 1.0, 0.3, 1
        args.no_growth = args.no_workers_check = True
        args.connections = 4
        if args.loader == "auto":
            args.loader = "python"
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return time.perf_counter() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy in {timeout} s")


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url, process
    except Exception:
        print(Path(log.name).read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def flux_server(db_url: str, workers: int) -> Any:
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
    env = {"DATABASE_URL": db_url, "SERVICE_API_KEYS": KEY, "LOG_LEVEL": "WARNING", "DB_POOL_SIZE": "10"}
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


def measure(args: argparse.Namespace, url: str, requests: list[Any]) -> load.Figures:
    loader = load.run_wrk if args.loader == "wrk" else load.run_python
    return loader(
        url, requests, {"X-Flux-Service-Key": KEY, "Content-Type": "application/json"}, args.duration, args.connections
    )


def warm(args: argparse.Namespace, url: str, requests: list[Any]) -> None:
    loader = load.run_wrk if args.loader == "wrk" else load.run_python
    loader(
        url, requests, {"X-Flux-Service-Key": KEY, "Content-Type": "application/json"}, args.warmup, args.connections
    )


def combine(runs: list[load.Figures]) -> dict[str, float]:
    return {
        "rps": statistics.mean(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "non_2xx": sum(r.non_2xx for r in runs),
        "requests": sum(r.requests for r in runs),
    }


def run_scenarios(args: argparse.Namespace, keys: list[str], data: Dataset, flux: str, floor: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for key in keys:
        requests = requests_for(SCENARIOS[key], data)
        warm(args, floor, requests)
        warm(args, flux, requests)
        runs: dict[str, list[load.Figures]] = {"floor": [], "flux": []}
        for _ in range(args.rounds):  # A B A B: drift on a shared machine cancels
            runs["floor"].append(measure(args, floor, requests))
            runs["flux"].append(measure(args, flux, requests))
        row = {target: combine(r) for target, r in runs.items()}
        row["ratio"] = row["flux"]["rps"] / row["floor"]["rps"] if row["floor"]["rps"] else float("nan")
        results[key] = row
        print_row(key, row)
    return results


def growth(small: dict[str, Any], big: dict[str, Any]) -> dict[str, dict[str, float]]:
    """flux-dao p50 at both data sizes, side by side (target: less than 1.5x)."""
    table = {}
    for key in big:
        before, after = small[key]["flux"]["p50_ms"], big[key]["flux"]["p50_ms"]
        table[key] = {"p50_small_ms": before, "p50_big_ms": after, "factor": after / before}
        print(f"growth {key:4} p50 {before:6.2f} ms -> {after:6.2f} ms = {after / before:.2f}x", flush=True)
    return table


def workers_check(args: argparse.Namespace, data: Dataset, db_url: str, one: str) -> dict[str, Any]:
    """S1 on one worker and on two, alternated A B A B on the same data like the floor comparison."""
    requests = requests_for(SCENARIOS["S1"], data)
    with flux_server(db_url, 2) as (two, process):
        warm(args, one, requests)
        warm(args, two, requests)
        runs: dict[str, list[load.Figures]] = {"one": [], "two": []}
        for _ in range(args.rounds):
            runs["one"].append(measure(args, one, requests))
            runs["two"].append(measure(args, two, requests))
        result = {name: combine(r) for name, r in runs.items()}
        result["speedup"] = result["two"]["rps"] / result["one"]["rps"]
        result["rss_mb_two_workers"] = rss_mb(process)
    print(
        f"S1 with 2 workers: {result['two']['rps']:.0f} req/s = {result['speedup']:.2f}x one worker "
        f"({result['one']['rps']:.0f} req/s)",
        flush=True,
    )
    return result


def print_row(key: str, row: dict[str, Any]) -> None:
    flux, floor = row["flux"], row["floor"]
    target = TARGETS.get(key)
    verdict = "" if target is None else ("ok" if row["ratio"] >= target else f"BELOW {target}")
    print(
        f"{key:4} {SCENARIOS[key].title:47} flux {flux['rps']:8.0f} req/s p50 {flux['p50_ms']:6.2f} ms "
        f"p99 {flux['p99_ms']:7.2f} ms non2xx {flux['non_2xx']:<4} | floor {floor['rps']:8.0f} req/s "
        f"p50 {floor['p50_ms']:6.2f} ms | ratio {row['ratio']:.2f} {verdict}",
        flush=True,
    )


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loader == "auto":
        args.loader = "wrk" if load.have_wrk() else "python"
    if args.loader == "wrk" and not load.have_wrk():
        print(load.WRK_MISSING, file=sys.stderr)
        return 2
    if args.loader == "python" and not args.tiny:
        print(f"note: {load.WRK_MISSING} Falling back to the slower python loader.", file=sys.stderr)
    keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    name = f"flux_bench_{uuid.uuid4().hex[:8]}"
    base = args.dsn.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    db_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "conditions": {
            "workers": args.workers,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "loader": args.loader,
            "scale": args.scale,
        },
        "targets": TARGETS,
    }
    asyncio.run(admin(args.dsn, f'CREATE DATABASE "{name}"'))
    try:
        with flux_server(db_url, args.workers) as (flux, flux_process), floor_server(dsn) as (floor, _):
            print(f"seeding scale {args.scale} ...", flush=True)
            data = asyncio.run(seed(dsn, args.scale))
            print(f"{data.tasks} tasks; running {', '.join(keys)}", flush=True)
            report["runs"] = {f"{data.tasks}": run_scenarios(args, keys, data, flux, floor)}
            report["rss_mb_after_run"] = rss_mb(flux_process)
            print(f"flux-dao RSS after the run: {', '.join(f'{v:.0f} MB' for v in report['rss_mb_after_run'])}")
            if not args.no_workers_check and "S1" in keys:
                report["workers_2_s1"] = workers_check(args, data, db_url, flux)
            if not args.no_growth:
                print(f"seeding scale {args.growth_scale} ...", flush=True)
                big = asyncio.run(seed(dsn, args.growth_scale))
                grow = [k for k in GROWTH if k in keys]
                print(f"{big.tasks} tasks; running {', '.join(grow)}", flush=True)
                report["runs"][f"{big.tasks}"] = run_scenarios(args, grow, big, flux, floor)
                report["growth_p50"] = growth(report["runs"][f"{data.tasks}"], report["runs"][f"{big.tasks}"])
    finally:
        asyncio.run(admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if not args.no_startup:
        report["startup_s"] = measure_startup(runs=1 if args.tiny else 3)
        for label, seconds in report["startup_s"].items():
            print(f"start-up to first /health 200, {label}: {seconds:.2f} s")
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-tiny' if args.tiny else ''}.json"
    path.write_text(json.dumps(report, indent=2, default=lambda o: asdict(o)))
    print(f"saved {path}")
    bad = sum(row[t]["non_2xx"] for runs in report["runs"].values() for row in runs.values() for t in ("flux", "floor"))
    if bad:
        print(f"FAIL: {bad} non-2xx responses", file=sys.stderr)
        return 1
    return 0
