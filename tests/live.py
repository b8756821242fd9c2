"""A real ``flux-dao serve`` process for tests that need a live server (fuzzing, faults, shutdown, clients)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "resources.yaml"
FLUX_DAO = Path(sys.executable).parent / "flux-dao"
_INHERITED_OUT = {
    "SERVICE_API_KEYS",
    "FLUX_DAO_SERVICE_API_KEYS",
    "FLUX_DAO_MANIFEST",
    "FLUX_DAO_KEYS_FILE",
    "DATABASE_URL",
    "FLUX_DAO_DATABASE_URL",
    "FLUX_DAO_DOCS",
    "FLUX_DAO_METRICS",
    "FLUX_DAO_RATE_LIMIT",
    "FLUX_DAO_HOST",
    "FLUX_DAO_PORT",
    "FLUX_DAO_WORKERS",
}
"""Variables of the test run's own environment a served instance must not see (the prefixed name would win)."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A running ``flux-dao serve``; ``output`` holds what it printed once it has stopped."""

    process: subprocess.Popen[str]
    base: str
    log_path: Path

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"flux-dao serve exited with {self.process.returncode}:\n{self.output}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"flux-dao serve did not answer /health within {timeout} s:\n{self.output}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; returns the exit code (kills and fails the test if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"flux-dao serve did not exit within {timeout} s of SIGTERM:\n{self.output}")
        return int(self.process.returncode)


def start_server(args: Sequence[str], env: Mapping[str, str], workdir: Path, port: int) -> LiveServer:
    """Start ``flux-dao <args>`` with exactly ``env``, listening (once up) on ``port``; output to a file in workdir."""
    log_path = workdir / f"flux-dao-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(FLUX_DAO), *args],
            cwd=workdir,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return LiveServer(process, f"http://127.0.0.1:{port}", log_path)


@contextmanager
def live_server(
    database_url: str,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    manifest: Path = MANIFEST,
) -> Iterator[LiveServer]:
    """Run ``flux-dao serve`` on a free loopback port against ``database_url`` (migrated on start)."""
    assert shutil.which(str(FLUX_DAO)), f"{FLUX_DAO} is not installed (pip install -e '.[dev]')"
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
    full_env.update({"DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **(env or {})})
    server = start_server(["--manifest", str(manifest), "serve", "--port", str(port), *args], full_env, workdir, port)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@contextmanager
def sqlite_live_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, env: Mapping[str, str] | None = None
) -> Iterator[LiveServer]:
    """``live_server`` on a fresh SQLite file in a new temporary folder called ``name``."""
    work = tmp_path_factory.mktemp(name)
    with live_server(f"sqlite+aiosqlite:///{work / 'flux_dao.db'}", work, env=env) as server:
        yield server
