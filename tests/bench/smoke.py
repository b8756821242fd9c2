"""Running a benchmark in its tiny mode from a test: the one way every smoke test starts one."""

import subprocess
import sys

from tests.conftest import PG_DSN, ROOT


def run_tiny(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> --tiny --dsn <test PostgreSQL> <args>``; fails the test unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--tiny", "--dsn", PG_DSN, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result
