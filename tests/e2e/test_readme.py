"""The README's API walk-through runs as written against a live server started the way the quick start says.

A newcomer copies the block into a terminal; every line must do what its comment says. The block is taken from
the README itself (the ``sh`` block after "In a second terminal"), so the README cannot drift from the service.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live import sqlite_live_server

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
QUICK_START_BASE = "http://127.0.0.1:8001"


def _walkthrough() -> str:
    match = re.search(r"In a second terminal.*?```sh\n(.*?)```", README, flags=re.DOTALL)
    assert match, "the README lost its API walk-through"
    return match.group(1)


def test_the_quick_start_serves_with_the_key_the_examples_use():
    first_block = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)[0]
    key = re.search(r"SERVICE_API_KEYS=(\S+) flux-dao serve", first_block)
    assert key, first_block
    assert f"X-Flux-Service-Key: {key.group(1)}'" in _walkthrough()


def test_the_readme_walkthrough_runs_as_written(tmp_path_factory: pytest.TempPathFactory) -> None:
    # curl prints a body without a newline at its end, as a terminal shows it: one per line here
    script = 'curl() { command curl "$@"; echo; }\n' + _walkthrough()
    bash = shutil.which("bash")
    assert bash, "bash runs the README's shell examples"
    with sqlite_live_server(tmp_path_factory, "readme", env={"SERVICE_API_KEYS": "k1"}) as server:
        ran = subprocess.run(
            [bash, "-euo", "pipefail", "-c", script.replace(QUICK_START_BASE, server.base)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert ran.returncode == 0, f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
    lines = [line for line in ran.stdout.splitlines() if line]
    page, queried, embedded, patched, by_range, stats, bulk, unknown, deleted, ready = lines
    assert [t["title"] for t in json.loads(page)["items"]] == ["Run"]
    [task] = json.loads(queried)["items"]
    assert set(task) == {"id", "title", "goal"}
    assert task["goal"] is None
    user = json.loads(embedded)
    assert [t["title"] for t in user["tasks"]] == ["Run"]
    assert json.loads(patched)["status"] == "done"
    assert [t["title"] for t in json.loads(by_range)] == ["Run"]
    statistics = json.loads(stats)
    assert statistics["total_tasks"] == 1, statistics  # the window includes the task just made
    assert statistics["by_status"] == {"done": 1}
    assert json.loads(bulk) == {"updated_count": 1}
    problem = json.loads(unknown)
    assert problem["status"] == 422
    assert [e["field"] for e in problem["errors"]] == ["title"]
    assert deleted == "204"
    assert json.loads(ready) == {"status": "ready"}
