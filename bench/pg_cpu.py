"""Where the CPU of one flux-dao request goes: flux-dao, PostgreSQL (its backends for this database, its background
processes), wrk, the rest of the machine. flux-dao alone (no floor), 1 worker, DB_POOL_SIZE 10, wrk 1 thread 32
connections, the bench's own request lists and seed (scale 1: 100k tasks). The sizing in docs/scaling.md rests on it.

    python -m bench.pg_cpu [--duration 8] [--runs 2] [--scenarios S1,...] [--json out.json]

PostgreSQL's processes are found by their titles on Debian's main cluster (``postgres: 15/main: ...``).
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path

from bench import load
from bench.run import HEADERS, SERVERS, admin, cpu_seconds, flux_server
from bench.scenarios import SCENARIOS, requests_for
from bench.seed import seed

TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(f[11]) + int(f[12])) / TCK


def postgres_pids(dbname: str) -> tuple[list[int], list[int]]:
    """(backends of dbname, background processes of the main cluster: no client backends)."""
    mine, aux = [], []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if not cmd.startswith("postgres: 15/main:"):
            continue
        rest = cmd[len("postgres: 15/main:") :].strip()
        if rest.startswith(f"postgres {dbname} "):
            mine.append(int(d.name))
        elif rest.split()[0] in {"checkpointer", "background", "walwriter", "autovacuum", "logical", "archiver"}:
            aux.append(int(d.name))
    return mine, aux


def machine_busy() -> tuple[float, float]:
    """(busy seconds over all cores, steal seconds) since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq) / TCK, steal / TCK


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--scenarios", default="S1,S2,S2b,S3,S4,S5,S6")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    name = f"i13_pgcpu_{uuid.uuid4().hex[:8]}"
    dsn = f"{args.dsn.rsplit('/', 1)[0]}/{name}"
    asyncio.run(admin(args.dsn, f'CREATE DATABASE "{name}"'))
    out: dict = {"command": "python -m bench.pg_cpu " + " ".join(sys.argv[1:]), "runs": {}}
    try:
        with flux_server(dsn.replace("postgresql://", "postgresql+asyncpg://", 1), 1) as (url, _proc):
            data = asyncio.run(seed(dsn, 1.0))
            print(f"{data.tasks} tasks", flush=True)
            flux_pid = SERVERS[url]
            for key in args.scenarios.split(","):
                reqs = requests_for(SCENARIOS[key], data)
                load.run_wrk(url, reqs, HEADERS, args.warmup, 32)
                rows = []
                for _ in range(args.runs):
                    mine, aux = postgres_pids(name)
                    b_flux, b_mine, b_aux = cpu_seconds(flux_pid), sum(map(proc_cpu, mine)), sum(map(proc_cpu, aux))
                    b_wrk, (b_busy, b_steal), t0 = children_cpu(), machine_busy(), time.perf_counter()
                    fig = load.run_wrk(url, reqs, HEADERS, args.duration, 32)
                    wall = time.perf_counter() - t0
                    mine2, aux2 = postgres_pids(name)
                    if set(mine2) != set(mine):
                        print(f"  note: backends changed {len(mine)} -> {len(mine2)}", flush=True)
                    busy, steal = machine_busy()
                    n = fig.requests

                    def us(seconds: float, n: int = n) -> float:
                        return seconds / n * 1e6

                    row = {
                        "rps": fig.rps,
                        "requests": n,
                        "non_2xx": fig.non_2xx,
                        "flux_us": us(cpu_seconds(flux_pid) - b_flux),
                        "pg_backends_us": us(sum(map(proc_cpu, mine2)) - b_mine),
                        "pg_aux_us": us(sum(map(proc_cpu, aux2)) - b_aux),
                        "wrk_us": us(children_cpu() - b_wrk),
                        "machine_busy_us": us(busy - b_busy),
                        "steal_us": us(steal - b_steal),
                        "wall_s": wall,
                    }
                    row["other_us"] = (
                        row["machine_busy_us"]
                        - row["flux_us"]
                        - row["pg_backends_us"]
                        - row["pg_aux_us"]
                        - row["wrk_us"]
                    )
                    rows.append(row)
                    print(key, json.dumps({k: round(v, 1) for k, v in row.items()}), flush=True)
                out["runs"][key] = rows
    finally:
        asyncio.run(admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
