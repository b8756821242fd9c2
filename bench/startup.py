"""Start-up time: process start to the first 200 on /health, for the real manifest and a generated 100-resource one."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def generated_manifest(resources: int) -> str:
    """``resources`` entities shaped like tasks: a reference to the first, an enum, strings, numbers, datetimes."""
    lines = ["version: 1", "resources:", "  owners:", "    fields:", "      name: {type: string, required: true}"]
    for i in range(resources - 1):
        lines += [
            f"  things_{i}:",
            "    fields:",
            "      owner_id: {type: uuid, references: owners, on_delete: cascade, required: true, filter: true}",
            "      title: {type: string, required: true, max_length: 200}",
            "      state: {type: enum, values: [new, active, done], default: new, filter: true}",
            "      amount: {type: integer, ge: 0}",
            "      ratio: {type: float}",
            "      due_at: {type: datetime, index: true}",
            "      data: {type: json}",
        ]
    return "\n".join(lines) + "\n"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_to_health(manifest: Path, db: Path) -> float:
    port = _port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "flux_dao", "--manifest", str(manifest), "serve", "--no-migrate", "--port", str(port)],
        env={**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{db}", "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"flux-dao exited with {process.returncode} during start-up")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                    return time.perf_counter() - began
            except httpx.HTTPError:
                time.sleep(0.01)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)


def measure_startup(runs: int = 3) -> dict[str, float]:
    """Median seconds to the first healthy answer (``--no-migrate``: the migration time is the database's).

    The time includes serve's check that the manifest matches its migrations (a scratch SQLite database brought to
    the head), so the generated manifest gets its migration first, as a real one would have.
    """
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "hundred.yaml"
        big.write_text(generated_manifest(100))
        subprocess.run(
            [sys.executable, "-m", "flux_dao", "--manifest", str(big), "makemigrations", "-m", "hundred"],
            env={**os.environ, "LOG_LEVEL": "WARNING"},
            capture_output=True,
            check=True,
        )
        results = {}
        for index, (label, manifest) in enumerate((("6 resources", ROOT / "resources.yaml"), ("100 resources", big))):
            times = sorted(time_to_health(manifest, Path(tmp) / f"startup{index}.db") for _ in range(runs))
            results[label] = times[len(times) // 2]
        return results
