"""Export and import (issue #14): rows per second and peak memory, on PostgreSQL (COPY) and SQLite.

python -m bench.transfer                  # 10k and 100k tasks; about two minutes
python -m bench.transfer --tiny           # seconds; what tests/bench/test_transfer_smoke.py runs
python -m bench.transfer --json out.json  # save the figures there (default: bench/results/transfer-YYYYMMDD.json)

Per data size (``--scales``: 0.1 and 1, i.e. 10k and 100k tasks with their 1k/10k goals, 100/1,000 users and about
1% notification rows; ``bench.seed``), each step runs the real command line, ``python -m flux_dao``, in a process
of its own, so its peak RSS (``VmHWM`` of ``/proc/self/status``, printed as it exits) is that step's alone:

1. a throwaway PostgreSQL database, migrated (``flux-dao migrate``) and seeded with COPY;
2. ``flux-dao export DIR`` from it (PostgreSQL export);
3. ``flux-dao import DIR`` into a fresh migrated SQLite file (SQLite import);
4. ``flux-dao export DIR`` from that file (SQLite export);
5. ``flux-dao import DIR`` into a second throwaway PostgreSQL database (PostgreSQL import: COPY into a staging
   table, then ``INSERT ... SELECT``, two connections);
6. ``flux-dao export`` of that database: all three exports must print the same checksums.

Rows per second are all rows moved (every resource) over the transfer's own time, as the command's summary prints
it (connecting and the interpreter's start-up are left out; the process's wall time is saved beside it). Targets,
at the largest size: PostgreSQL import >= 20,000 rows/s, export >= 50,000 rows/s on both backends, and each step's
peak RSS at 100k tasks within 1.5x of its peak at 10k (memory does not grow with the table). ``--tiny`` only proves
the script works.
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.changes import postgres
from bench.run import MANIFEST, machine
from bench.seed import seed

ROOT = Path(__file__).resolve().parent.parent
IMPORT_TARGET = 20_000
EXPORT_TARGET = 50_000
RSS_GROWTH_TARGET = 1.5
_CHILD = """
import atexit, sys
def peak():
    status = open("/proc/self/status").read()
    print(next(line for line in status.splitlines() if line.startswith("VmHWM:")), file=sys.stderr)
atexit.register(peak)
from flux_dao.ops.cli import main
main(prog_name="flux-dao")
"""
"""``flux-dao`` in-process, printing its peak RSS at exit. ``VmHWM`` is this process's own high-water mark:
``ru_maxrss`` (``os.wait4``, ``getrusage``) keeps the forking parent's through ``exec``, and the bench holds a whole
seed in memory."""
_HWM = re.compile(r"^VmHWM:\s+(?P<kb>\d+) kB$", re.MULTILINE)
_TOOK = re.compile(r"in (?P<seconds>[\d.]+) s \((?P<rate>[\d,]+) rows/s\)")
_SUM = re.compile(r"^all\s+(?P<rows>[\d,]+) rows\s+sha256 (?P<sha>[0-9a-f]{64})", re.MULTILINE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.transfer", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="PostgreSQL admin DSN")
    p.add_argument("--scales", type=float, nargs="+", default=[0.1, 1.0], help="1 = 100k tasks")
    p.add_argument("--json", type=Path, help="save the figures here")
    p.add_argument("--tiny", action="store_true", help="smoke mode: 1k tasks, no timing claims")
    args = p.parse_args(argv)
    if args.tiny:
        args.scales = [0.01]
    return args


def flux_dao(url: str, *args: str) -> dict[str, Any]:
    """Run ``flux-dao ARGS`` against ``url`` in a process of its own: its output, wall time and peak RSS (MB)."""
    env = os.environ | {"FLUX_DAO_DATABASE_URL": url, "FLUX_DAO_LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, "--manifest", str(MANIFEST), *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
        process.wait()
        wall = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"flux-dao {' '.join(args)} exited {process.returncode}:\n{stdout}\n{stderr[-3000:]}")
    took, peak = _TOOK.search(stdout), _HWM.search(stderr)
    assert took, stdout
    assert peak, stderr[-2000:]
    return {
        "stdout": stdout,
        "seconds": float(took["seconds"]),
        "rows_per_s": float(took["rate"].replace(",", "")),
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(int(peak["kb"]) / 1024, 1),
    }


def migrate(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "flux_dao", "--manifest", str(MANIFEST), "migrate"],
        cwd=ROOT,
        env=os.environ | {"FLUX_DAO_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )


def step(name: str, run: dict[str, Any]) -> dict[str, Any]:
    print(
        f"  {name:<16} {run['rows_per_s']:>10,.0f} rows/s  {run['seconds']:7.3f} s  "
        f"(process {run['wall_s']:.2f} s)  peak RSS {run['peak_rss_mb']:6.1f} MB"
    )
    return {key: value for key, value in run.items() if key != "stdout"}


def checksum(run: dict[str, Any]) -> tuple[int, str]:
    found = _SUM.search(run["stdout"])
    assert found, run["stdout"]
    return int(found["rows"].replace(",", "")), found["sha"]


def one_size(args: argparse.Namespace, scale: float, work: Path) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    with postgres(args.dsn) as source, postgres(args.dsn) as target:
        sqlite = f"sqlite:///{work / f'scale-{scale}.db'}"
        for url in (source, sqlite, target):
            migrate(url)
        data = asyncio.run(seed(source, scale))
        print(f"== {data.tasks:,} tasks")
        runs = {
            "postgres_export": flux_dao(source, "export", str(work / f"pg-{scale}")),
            "sqlite_import": flux_dao(sqlite, "import", str(work / f"pg-{scale}")),
            "sqlite_export": flux_dao(sqlite, "export", str(work / f"sqlite-{scale}")),
            "postgres_import": flux_dao(target, "import", str(work / f"sqlite-{scale}")),
        }
        last = flux_dao(target, "export", str(work / f"again-{scale}"))
    for name, run in runs.items():
        steps[name] = step(name, run)
    sums = {checksum(runs["postgres_export"]), checksum(runs["sqlite_export"]), checksum(last)}
    rows, sha = sorted(sums)[0]
    print(f"  checksums {'agree' if len(sums) == 1 else 'DIFFER'}: {rows:,} rows, sha256 {sha}")
    return {"tasks": data.tasks, "rows": rows, "checksums_agree": len(sums) == 1, "sha256": sha, "steps": steps}


def checks(sizes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    keys = sorted(sizes, key=float)
    small, big = sizes[keys[0]]["steps"], sizes[keys[-1]]["steps"]
    targets: list[tuple[str, float, str, float]] = [
        ("PostgreSQL import rows/s", big["postgres_import"]["rows_per_s"], ">=", IMPORT_TARGET),
        ("PostgreSQL export rows/s", big["postgres_export"]["rows_per_s"], ">=", EXPORT_TARGET),
        ("SQLite export rows/s", big["sqlite_export"]["rows_per_s"], ">=", EXPORT_TARGET),
    ]
    if len(keys) > 1:
        targets += [
            (
                f"{name} peak RSS, largest / smallest size",
                big[name]["peak_rss_mb"] / small[name]["peak_rss_mb"],
                "<=",
                RSS_GROWTH_TARGET,
            )
            for name in big
        ]
    found = []
    for name, value, op, target in targets:
        passed = value >= target if op == ">=" else value <= target
        found.append({"check": name, "value": round(value, 3), "op": op, "target": target, "pass": passed})
        print(f"{'PASS' if passed else 'FAIL'} {name}: {value:,.2f} {op} {target:,}")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        for scale in args.scales:
            sizes[str(scale)] = one_size(args, scale, Path(tmp))
    print("\n== targets" + (" (--tiny: smoke mode, no timing claims)" if args.tiny else ""))
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.transfer " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine() | {"load_average": os.getloadavg()},
        "sizes": sizes,
        "checks": checks(sizes),
    }
    saved = args.json or (
        None if args.tiny else ROOT / "bench" / "results" / f"transfer-{datetime.now(UTC):%Y%m%d}.json"
    )
    if saved is not None:
        saved.write_text(json.dumps(report, indent=2) + "\n")
        print(f"saved {saved}")
    differ = [scale for scale, size in sizes.items() if not size["checksums_agree"]]
    for scale in differ:
        print(f"FAIL: the exports at scale {scale} differ", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
