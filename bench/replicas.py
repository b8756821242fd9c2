"""flux-dao scaled out (issue #13): S1 and S4 on the replica rig, and where each request's CPU goes.

python -m bench.replicas                     # 100k tasks, 10 s runs; about 5 minutes
python -m bench.replicas --tiny              # seconds; proves the script works (no timing claims)
python -m bench.replicas --json out.json     # save the figures elsewhere (default bench/results/replicas-<date>.json)

Everything runs on a rig of its own (``deploy/rig.py``, built in ``--dir`` and taken down at the end, whatever
happens): a PostgreSQL primary and its streaming standby, pgbouncer in transaction mode in front of each, flux-dao
replicas (``python -m flux_dao serve``, one worker each, the rig's settings) and haproxy (leastconn, checks on
``/ready``). The primary is seeded with ``bench.seed`` (scale 1: 100k tasks) through the rig's direct DSN after the
replicas migrated it; the measurements wait until the standby has replayed the seed.

1. Through haproxy with 1, 2 and 3 replicas (``Rig.set_replicas``): the rig's layout, so every statement goes
   through pgbouncer, plain reads (S1) to the standby, writes (S4) to the primary, each write followed by the
   read of its consistency token (the primary's WAL position).
2. One flux-dao process straight to the primary (``DB_PREPARED_STATEMENTS=on``: named statements, parsed once per
   connection) against one through the primary's pgbouncer (``off``: every statement parsed again, unnamed), both
   without ``DATABASE_READ_URL`` and both started here beside the rig with a replica's other settings, hit
   directly (no haproxy). What unnamed statements and the pooler's hop cost.

Each scenario and layout: a warm-up (``--warmup``), then ``--rounds`` runs of ``--duration`` seconds, the layouts
alternated and the order reversed each round (A B C, C B A ...) as ``bench.run.alternate`` does. The request lists
are ``bench/scenarios.py``'s; the load generator is wrk (1 thread, ``--connections``), as in ``python -m bench``.

CPU per request of each part, from ``/proc`` before and after each run: user + system time of the part's process
tree (each process's own time plus what it collected from children that ended, so a PostgreSQL backend or an
autovacuum worker that exits mid-run is still counted). The parts: each flux-dao replica (serve process and any
workers), each pgbouncer, haproxy, each PostgreSQL cluster (postmaster and every child: backends, walsender,
walreceiver, startup/replay, checkpointer...), wrk itself, and the whole machine (``/proc/stat``); "other" is
the machine less the parts (this script, the rest of the host). Idle rig processes keep working in the background
(each replica looks at both databases 10 times a second): that lands in the parts' figures too, a few per cent at
most; the idle rig's own figures are saved under ``idle_cpu_ms_per_s``.

Measure on a quiet machine: before the runs the script waits until the 1-minute load average is under
``--max-load``, and before each run until the rest of the machine (outside the rig) keeps under ``--max-other``
cores busy (2 s samples), each wait at most ``--load-wait`` seconds; both are recorded with every run.
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import load
from bench.run import HEADERS, free_port, report_head
from bench.scenarios import SCENARIOS, Request, requests_for
from bench.seed import seed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))
import rig  # noqa: E402 (deploy/rig.py, the rig's module)

TICK = os.sysconf("SC_CLK_TCK")
SCENARIO_KEYS = ("S1", "S4")
PARTS = ("flux", "pgbouncer_primary", "pgbouncer_standby", "haproxy", "postgres_primary", "postgres_standby", "wrk")
"""The parts whose CPU is counted, in the table's order (``flux`` sums the replicas; each one is kept as well)."""
LABELS = {
    "flux": "flux",
    "pgbouncer_primary": "pgb-p",
    "pgbouncer_standby": "pgb-s",
    "haproxy": "haprx",
    "postgres_primary": "pg-p",
    "postgres_standby": "pg-s",
    "wrk": "wrk",
    "other": "other",
    "machine": "total",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.replicas", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dir", type=Path, default=Path("/tmp/flux-rig-bench"), help="the rig's folder (under /tmp)")
    p.add_argument("--scale", type=float, default=1.0, help="1 = 1,000 users, 100k tasks")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per scenario and layout")
    p.add_argument("--rounds", type=int, default=2, help="runs per scenario and layout, the order reversed each round")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (1 thread)")
    p.add_argument("--replicas", default="1,2,3", help="replica counts behind haproxy (the rig gets the largest)")
    p.add_argument("--scenarios", default=",".join(SCENARIO_KEYS), help="comma-separated subset of S1,S4")
    p.add_argument("--no-direct", action="store_true", help="skip one process straight to PostgreSQL vs pgbouncer")
    p.add_argument("--max-load", type=float, default=1.0, help="measure only below this 1-minute load average")
    p.add_argument(
        "--max-other", type=float, default=0.15, help="before each run: at most this many cores busy outside the rig"
    )
    p.add_argument("--load-wait", type=float, default=600.0, help="seconds to wait for either (then go on, noted)")
    p.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--json", type=Path, help="where to save the figures (default bench/results/replicas-<date>.json)")
    p.add_argument("--tiny", action="store_true", help="smoke mode: tiny data, 1 s runs, no load gate")
    args = p.parse_args(argv)
    args.keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = [k for k in args.keys if k not in SCENARIO_KEYS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIO_KEYS)}")
    args.counts = [int(n) for n in args.replicas.split(",") if n.strip()]
    if not args.counts or any(n < 1 for n in args.counts):
        p.error("--replicas takes counts of 1 or more")
    if not str(args.dir.resolve()).startswith("/tmp/"):
        p.error("--dir must be under /tmp (the postgres user runs the clusters there)")
    if args.tiny:
        args.scale, args.duration, args.warmup, args.rounds, args.connections = 0.02, 1.0, 0.5, 1, 4
        args.load_wait = 0.0
    if args.loader == "auto":
        args.loader = "wrk" if load.have_wrk() else "python"
    return args


# -- CPU accounting -------------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) of ``pid`` and its descendants, those that ended included.

    Each live process counts its own time plus its reaped children's (``cutime``/``cstime``): a child that ends
    moves from the live sum into its parent's collected time, so the total only grows.
    """
    total, todo, seen = 0, [pid], set()
    while todo:
        each = todo.pop()
        if each in seen:
            continue
        seen.add(each)
        fields = _stat(each)
        if fields is None:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
        todo += _children(each)
    return total / TICK


def machine_cpu() -> float:
    """Seconds of CPU the whole machine spent busy so far (every core; idle and iowait left out)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICK


def own_children_cpu() -> float:
    """CPU of this script's ended children (wrk, once it returned)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def rig_parts(the_rig: rig.Rig, flux: dict[str, int]) -> dict[str, int]:
    """Part name -> root pid of each part to count (``flux:<name>`` for each flux-dao process)."""
    d = the_rig.dir
    pids = {f"flux:{name}": pid for name, pid in flux.items()}
    for name, path in (
        ("pgbouncer_primary", d / "pgbouncer-primary.pid"),
        ("pgbouncer_standby", d / "pgbouncer-standby.pid"),
        ("haproxy", d / "haproxy.pid"),
        ("postgres_primary", d / "primary" / "postmaster.pid"),
        ("postgres_standby", d / "standby" / "postmaster.pid"),
    ):
        pid = _pidfile(path)
        if pid is not None:
            pids[name] = pid
    return pids


def snapshot(parts: dict[str, int]) -> dict[str, float]:
    figures = {name: tree_cpu(pid) for name, pid in parts.items()}
    return figures | {"wrk": own_children_cpu(), "machine": machine_cpu()}


# -- runs -----------------------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """One way of serving: where wrk sends its requests and which processes count as flux-dao."""

    key: str
    title: str
    url: str
    flux: dict[str, int]
    """Name -> pid of the flux-dao processes serving it."""
    prepare: Any = None
    """Called before each of its runs (``Rig.set_replicas``)."""


def idle(the_rig: rig.Rig, seconds: float) -> dict[str, float]:
    """What each part of the rig spends with no load (milliseconds of CPU per second): the background."""
    flux = {f"replica-{i}": pid for i, pid in ((int(k), v) for k, v in the_rig.replica_pids.items())}
    parts = rig_parts(the_rig, flux)
    before = snapshot(parts)
    time.sleep(seconds)
    after = snapshot(parts)
    return {name: (after[name] - before[name]) / seconds * 1000 for name in after if name != "wrk"}


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_for_quiet(args: argparse.Namespace) -> float:
    """Wait until the 1-minute load average is under ``--max-load`` (at most ``--load-wait`` s); the last value."""
    deadline = time.monotonic() + args.load_wait
    value = load_average()
    while value >= args.max_load and time.monotonic() < deadline:
        print(f"load average {value:.2f} >= {args.max_load}: waiting", flush=True)
        time.sleep(15)
        value = load_average()
    if value >= args.max_load and args.load_wait > 0:
        print(f"note: load average still {value:.2f} after {args.load_wait:.0f} s; measuring anyway", flush=True)
    return value


def others_busy(the_rig: rig.Rig, flux: dict[str, int], seconds: float = 2.0) -> float:
    """Cores the rest of the machine keeps busy right now: the machine less every part of the rig (idle ones too)."""
    replicas = {f"replica-{i}": pid for i, pid in the_rig.replica_pids.items()}
    parts = rig_parts(the_rig, replicas | flux)
    before = snapshot(parts)
    time.sleep(seconds)
    after = snapshot(parts)
    ours = sum(after[name] - before[name] for name in after if name not in ("machine", "wrk"))
    return (after["machine"] - before["machine"] - ours) / seconds


def wait_for_others(args: argparse.Namespace, the_rig: rig.Rig, flux: dict[str, int]) -> float:
    """Before a run: wait (at most ``--load-wait`` s) until the rest of the machine uses under ``--max-other`` cores."""
    deadline = time.monotonic() + args.load_wait
    busy = others_busy(the_rig, flux, 0.5 if args.tiny else 2.0)
    while busy >= args.max_other and time.monotonic() < deadline:
        print(f"  other work on the machine: {busy:.2f} cores; waiting", flush=True)
        time.sleep(10)
        busy = others_busy(the_rig, flux)
    if busy >= args.max_other and args.load_wait > 0:
        print(f"  note: still {busy:.2f} cores busy outside the rig; measuring anyway", flush=True)
    return busy


def one_run(args: argparse.Namespace, the_rig: rig.Rig, layout: Layout, requests: list[Request]) -> dict[str, Any]:
    """One wrk run against ``layout``, with every part's CPU over it."""
    loader = load.run_wrk if args.loader == "wrk" else load.run_python
    others = wait_for_others(args, the_rig, layout.flux)
    parts = rig_parts(the_rig, layout.flux)
    loadavg = load_average()
    before, began = snapshot(parts), time.monotonic()
    figures = loader(layout.url, requests, HEADERS, args.duration, args.connections)
    seconds = time.monotonic() - began
    after = snapshot(parts)
    cpu = {name: after[name] - before[name] for name in after}
    return {
        "rps": figures.rps,
        "p50_ms": figures.p50_ms,
        "p99_ms": figures.p99_ms,
        "non_2xx": figures.non_2xx,
        "requests": figures.requests,
        "seconds": seconds,
        "loadavg_before": loadavg,
        "other_cores_before": others,
        "cpu_s": cpu,
    }


def combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A layout's runs of one scenario: mean req/s, median p50 and p99, CPU per request over all of them."""
    requests = sum(r["requests"] for r in runs)
    cpu: dict[str, float] = {}
    for run in runs:
        for name, value in run["cpu_s"].items():
            cpu[name] = cpu.get(name, 0.0) + value
    per_request = {name: value / requests * 1e6 if requests else float("nan") for name, value in cpu.items()}
    flux_each = {name.split(":", 1)[1]: v for name, v in per_request.items() if name.startswith("flux:")}
    us = {
        "flux": sum(flux_each.values()),
        **{name: per_request.get(name, 0.0) for name in PARTS if name != "flux"},
        "machine": per_request["machine"],
    }
    us["other"] = us["machine"] - sum(us[name] for name in PARTS)
    return {
        "rps": statistics.mean(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "requests": requests,
        "cpu_us_per_req": us,
        "flux_us_per_req_each": flux_each,
        "cores_busy": {name: cpu[name] / sum(r["seconds"] for r in runs) for name in cpu},
        "loadavg_before": [r["loadavg_before"] for r in runs],
        "other_cores_before": [r["other_cores_before"] for r in runs],
        "runs": runs,
    }


def compare(
    args: argparse.Namespace, the_rig: rig.Rig, layouts: list[Layout], requests: list[Request]
) -> dict[str, dict[str, Any]]:
    """Warm each layout, then ``--rounds`` runs of each, the order reversed every round."""
    runs: dict[str, list[dict[str, Any]]] = {layout.key: [] for layout in layouts}
    order = list(layouts)
    loader = load.run_wrk if args.loader == "wrk" else load.run_python
    for round_number in range(args.rounds):
        for layout in order:
            if layout.prepare is not None:
                layout.prepare()
            if round_number == 0 or layout.prepare is not None:  # a fresh haproxy and fresh replicas warm up again
                loader(layout.url, requests, HEADERS, args.warmup, args.connections)
            runs[layout.key].append(one_run(args, the_rig, layout, requests))
        order.reverse()
    return {key: combine_runs(each) for key, each in runs.items()}


def haproxy_layout(the_rig: rig.Rig, count: int) -> Layout:
    layout = Layout(f"haproxy-{count}", f"haproxy, {count} replica{'s' if count > 1 else ''}", the_rig.url, {})

    def prepare() -> None:
        current = {i for i in range(3) if str(i) in the_rig.replica_pids}
        if current != set(range(count)) or not _serving(the_rig):
            the_rig.set_replicas(count)
            the_rig.wait_ready(the_rig.url)
            time.sleep(1.5)  # haproxy's checks (every 500 ms, rise 2) settle on every server
        layout.flux = {f"replica-{i}": the_rig.replica_pids[str(i)] for i in range(count)}

    layout.prepare = prepare
    return layout


def _serving(the_rig: rig.Rig) -> bool:
    pid = _pidfile(the_rig.dir / "haproxy.pid")
    return pid is not None and Path(f"/proc/{pid}").exists()


@contextmanager
def extra_server(the_rig: rig.Rig, name: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A flux-dao process beside the rig (a replica's settings with ``env`` on top); its url and pid."""
    port = free_port()
    settings = {k: v for k, v in the_rig.replica_env(0).items() if k != "FLUX_DAO_DATABASE_READ_URL"} | env
    log = (the_rig.dir / f"bench-{name}.log").open("ab")
    command = [sys.executable, "-m", "flux_dao", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=settings, stdout=log, stderr=log, cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        the_rig.wait_ready(url)
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


# -- set-up ---------------------------------------------------------------------------------------------------------


async def wait_replayed(the_rig: rig.Rig, patience: float = 300.0) -> float:
    """Wait until the standby has replayed everything the primary wrote so far; seconds waited."""
    began = time.monotonic()
    primary = await asyncpg.connect(the_rig.dsn("primary"))
    standby = await asyncpg.connect(the_rig.dsn("standby"))
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        while time.monotonic() - began < patience:
            if await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target):
                return time.monotonic() - began
            await asyncio.sleep(0.2)
    finally:
        await primary.close()
        await standby.close()
    msg = f"the standby did not replay up to {target} within {patience:g} s"
    raise RuntimeError(msg)


def versions() -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        return (result.stdout or result.stderr).strip().splitlines()[0]

    return {
        "postgresql": first_line([str(rig._pg_bin() / "postgres"), "-V"]),
        "pgbouncer": first_line([rig.PACKAGES["pgbouncer"], "-V"]),
        "haproxy": first_line([rig.PACKAGES["haproxy"], "-v"]),
        "wrk": first_line(["wrk", "-v"]) if load.have_wrk() else "",
    }


# -- report ---------------------------------------------------------------------------------------------------------


def print_header() -> None:
    cpu = " ".join(f"{LABELS[name]:>6}" for name in (*PARTS, "other", "machine"))
    print(
        f"{'layout':28} {'sc':3} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'non2xx':>6} | CPU us/request: {cpu}"
        "  | flux each",
        flush=True,
    )


def print_row(title: str, key: str, row: dict[str, Any]) -> None:
    us = row["cpu_us_per_req"]
    cpu = " ".join(f"{us[name]:6.0f}" for name in (*PARTS, "other", "machine"))
    each = "/".join(f"{v:.0f}" for v in row["flux_us_per_req_each"].values())
    print(
        f"{title:28} {key:3} {row['rps']:6.0f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} {row['non_2xx']:6d} | "
        f"{'':15} {cpu}  | {each}",
        flush=True,
    )


def table(report: dict[str, Any]) -> None:
    print("\n== summary ==", flush=True)
    print_header()
    for key in report["conditions"]["scenarios"]:
        for row in report["runs"].values():
            if key in row["scenarios"]:
                print_row(row["title"], key, row["scenarios"][key])


def default_output(tiny: bool) -> Path:
    return ROOT / "bench" / "results" / f"replicas-{datetime.now(UTC):%Y%m%d}{'-tiny' if tiny else ''}.json"


# -- main -----------------------------------------------------------------------------------------------------------


def measure_all(args: argparse.Namespace, the_rig: rig.Rig, report: dict[str, Any]) -> None:
    print(f"seeding scale {args.scale} through {the_rig.dsn('primary')} ...", flush=True)
    data = asyncio.run(seed(the_rig.dsn("primary"), args.scale))
    waited = asyncio.run(wait_replayed(the_rig))
    print(f"{data.tasks} tasks; the standby replayed them {waited:.1f} s after the seed ended", flush=True)
    report["conditions"]["tasks"] = data.tasks
    report["conditions"]["load_average_at_start"] = wait_for_quiet(args)
    report["idle_cpu_ms_per_s"] = idle(the_rig, 1.0 if args.tiny else 5.0)
    print(
        "idle rig, CPU ms per second: "
        + ", ".join(f"{name} {value:.1f}" for name, value in report["idle_cpu_ms_per_s"].items()),
        flush=True,
    )
    lists = {key: requests_for(SCENARIOS[key], data) for key in args.keys}
    runs: dict[str, dict[str, Any]] = report["runs"]
    print_header()
    layouts = [haproxy_layout(the_rig, n) for n in args.counts]
    for layout in layouts:
        runs[layout.key] = {"title": layout.title, "url": "haproxy", "replicas": int(layout.key[-1]), "scenarios": {}}
    for key, requests in lists.items():
        for layout_key, row in compare(args, the_rig, layouts, requests).items():
            runs[layout_key]["scenarios"][key] = row
            print_row(runs[layout_key]["title"], key, row)
    if args.no_direct:
        return
    the_rig.set_replicas(1)  # the fewest idle replicas in the background
    direct = {"FLUX_DAO_DATABASE_URL": the_rig.dsn("primary"), "FLUX_DAO_DB_PREPARED_STATEMENTS": "on"}
    pooled = {"FLUX_DAO_DATABASE_URL": the_rig.dsn("pooled-primary"), "FLUX_DAO_DB_PREPARED_STATEMENTS": "off"}
    with (
        extra_server(the_rig, "direct", direct) as (d_url, d_pid),
        extra_server(the_rig, "pooled", pooled) as (p_url, p_pid),
    ):
        pair = [
            Layout("direct", "1 process, direct, named", d_url, {"direct": d_pid}),
            Layout("pgbouncer", "1 process, pgbouncer, unnamed", p_url, {"pgbouncer": p_pid}),
        ]
        runs["direct"] = {"title": pair[0].title, "env": direct, "scenarios": {}}
        runs["pgbouncer"] = {"title": pair[1].title, "env": pooled, "scenarios": {}}
        for key, requests in lists.items():
            for layout_key, row in compare(args, the_rig, pair, requests).items():
                runs[layout_key]["scenarios"][key] = row
                print_row(runs[layout_key]["title"], key, row)


def _stop(number: int, _frame: object) -> None:
    raise SystemExit(128 + number)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loader == "wrk" and not load.have_wrk():
        print(load.WRK_MISSING, file=sys.stderr)
        return 2
    folder = args.dir.resolve()
    if (folder / "rig.json").exists():
        print(f"a rig is already in {folder}: deploy/rig down --dir {folder}, or pick another --dir", file=sys.stderr)
        return 2
    conditions = {
        "scale": args.scale,
        "scenarios": args.keys,
        "replica_counts": args.counts,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "connections": args.connections,
        "loader": args.loader,
        "wrk_threads": 1,
        "flux_workers_per_replica": 1,
        "db_pool_size": 10,
        "pgbouncer": "pool_mode transaction, default_pool_size 20",
        "haproxy": "balance leastconn, check GET /ready every 500 ms",
        "versions": versions(),
    }
    report: dict[str, Any] = report_head("bench.replicas", argv, conditions) | {"runs": {}}
    for each in (signal.SIGTERM, signal.SIGINT):  # stopped from outside (even from a background job): take it down
        signal.signal(each, _stop)
    print(f"building the rig in {folder} ...", flush=True)
    try:
        the_rig = rig.up(folder, replicas=max(args.counts))
        measure_all(args, the_rig, report)
    finally:
        logs = sorted(folder.glob("*.log")) if folder.exists() else []
        report["log_tail"] = {
            path.name: [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-20:]
            for path in logs
            if path.name.startswith(("replica-", "bench-"))
            and any(line.strip() for line in path.read_text(errors="replace").splitlines())
        }
        rig.down(folder)
    table(report)
    if args.tiny:
        print("(--tiny: smoke mode, no timing claims)")
    path = args.json or default_output(args.tiny)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"saved {path}")
    bad = sum(s["non_2xx"] for row in report["runs"].values() for s in row["scenarios"].values())
    if bad:
        print(f"FAIL: {bad} non-2xx responses", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
