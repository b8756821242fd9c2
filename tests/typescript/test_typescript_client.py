"""A TypeScript client made as a new user makes one works, typed under ``strict``, against a live server.

The npm project beside this file pins openapi-typescript 7, openapi-fetch and TypeScript (package-lock.json). The
test copies it to a temporary folder, runs ``npm ci`` (the npm registry only), generates ``schema.d.ts`` from the
live server's ``/schema/openapi.json`` with openapi-typescript's default settings, type-checks ``scenario.ts`` with
``tsc`` (``strict``, ``exactOptionalPropertyTypes``), runs it with node and checks what it printed: a user created
with only ``email`` (defaults and JSON fields optional in the generated types), a JSON profile, a goal, a task, a
filtered list, a week's pending or missed tasks (``status__in``, ``scheduled_at__gte``/``__lt``, ``sort``, ``limit``)
walked along ``next_cursor`` with each task's goal embedded (``include=goal``, read as the typed ``task.goal.title``),
and a 404 and a 422 read as the document's ``Problem``, every call with the service key header.
Node and npm are required: without them the test fails, it never skips.

Budget: about 20 s (``npm ci`` from the local npm cache ~5 s, ``tsc`` ~8 s, one server start).
"""

import datetime as dt
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY
from tests.live import sqlite_live_server

PROJECT = Path(__file__).resolve().parent
PROJECT_FILES = ("package.json", "package-lock.json", "tsconfig.json", "scenario.ts")

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``command``; fail the test with its output unless it exits 0."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
    return result.stdout


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is required for the TypeScript client test (Node 20 and npm); install Node.js"
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the npm project with its pinned packages installed by ``npm ci``."""
    work = tmp_path_factory.mktemp("typescript-client")
    for name in PROJECT_FILES:
        shutil.copy(PROJECT / name, work / name)
    run([tool("npm"), "ci", "--no-audit", "--no-fund"], work)
    return work


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sqlite_live_server(tmp_path_factory, "typescript-client-server", env={"SERVICE_API_KEYS": API_KEY}) as server:
        yield server.base


def test_typescript_client_type_checks_strict_and_runs_a_scenario(project: Path, base_url: str) -> None:
    bin_dir = project / "node_modules" / ".bin"
    run([str(bin_dir / "openapi-typescript"), f"{base_url}/schema/openapi.json", "-o", "schema.d.ts"], project)
    run([str(bin_dir / "tsc"), "-p", "tsconfig.json"], project)
    env = {**os.environ, "FLUX_DAO_URL": base_url, "FLUX_DAO_KEY": API_KEY}
    printed = run([tool("node"), "dist/scenario.js"], project, env=env, timeout=60)
    result: dict[str, Any] = json.loads(printed.strip().splitlines()[-1])

    assert result["user"] == {"email": "ada@example.com", "onboarded": False, "profile": {"timezone": "Europe/Paris"}}
    assert result["goal"] == {"status": "active", "target_weeks": 6}  # the documented defaults, applied by the server
    assert result["task"] == {"status": "pending", "goal_id": True}
    assert result["pending"] == {"titles": ["Long run"], "total": 1}
    check_walk(result["walk"])
    assert result["not_found"] == {"http": 404, "type": "urn:flux-dao:problem:not-found", "status": 404}
    assert result["invalid"]["http"] == 422
    assert result["invalid"]["type"] == "urn:flux-dao:problem:validation-error"
    assert "title" in result["invalid"]["fields"]


def check_walk(walk: dict[str, Any]) -> None:
    """The pages the scenario walked hold the rows it made that match, in the order computed here from those rows."""
    start, end = dt.datetime(2031, 3, 3, tzinfo=dt.UTC), dt.datetime(2031, 3, 10, tzinfo=dt.UTC)
    made = walk["made"]
    for row in made:
        row["at"] = dt.datetime.fromisoformat(row["scheduled_at"]) if row["scheduled_at"] else None
    expected = [
        r for r in made if r["status"] in {"pending", "missed"} and r["at"] is not None and start <= r["at"] < end
    ]
    # `-scheduled_at,title`, then `id` in the first term's direction; least significant first (stable sorts)
    expected.sort(key=lambda r: uuid.UUID(r["id"]), reverse=True)
    expected.sort(key=lambda r: r["title"])
    expected.sort(key=lambda r: r["at"], reverse=True)
    titles = {r["id"]: r["title"] for r in made}
    pages = walk["pages"]
    walked = [row_id for page in pages for row_id in page["ids"]]
    assert walked == [r["id"] for r in expected], ([titles.get(i, i) for i in walked], [r["title"] for r in expected])
    assert [titles[i] for i in walked] == ["Practice", "Etude", "Bach suite", "Bow drill", "Scales"]
    assert [len(page["ids"]) for page in pages] == [2, 2, 1]
    assert [page["page"] for page in pages] == [1, None, None]  # cursor pages have no page number
    assert {page["total"] for page in pages} == {5}
    # the embedded goal's title, null for the task without a goal ("Etude")
    goals = [goal for page in pages for goal in page["goals"]]
    assert goals == ["Learn the cello", None, "Learn the cello", "Learn the cello", "Learn the cello"], goals
