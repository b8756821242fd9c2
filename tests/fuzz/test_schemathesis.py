"""schemathesis against a live ``flux-dao serve``, every operation of its own OpenAPI document, on both backends.

What passes: every built-in check of schemathesis (all enabled in ``schemathesis.toml``): no 5xx; status codes,
content types, response schemas and headers as documented; schema-valid requests accepted and schema-invalid ones
rejected; no ignored auth; missing required headers refused; 405 with a truthful ``Allow`` for undocumented
methods; OPTIONS ``Allow`` matching the document; no use after delete. Plus ``tests/fuzz/checks.py``: every 4xx
and 5xx, documented or not, is ``application/problem+json`` whose ``status`` is the response's. Nothing may fail,
no operation may go untested, and the coverage, fuzzing and stateful phases must all run. A failure prints each
failing operation, the check, the response and a curl line reproducing it, then the tail of the server's log.

Budget (2-core CI machine): each backend gets one server and ``--max-time 80`` seconds of schemathesis, about 90 s
of wall time with start-up, so about three minutes for both. In that time the coverage phase sends the boundary
and negative cases of every operation once, then fuzzing (20 examples per operation per pass) and stateful
scenarios (chains through links schemathesis infers from ``Location`` headers and field names) alternate until
the time is spent. Seed 20261126, no example database: a run is reproducible up to how many passes fit in the
time, and every failure names its case and prints its curl line.

Deliberate choices that schemathesis would otherwise report (settings in ``tests/fuzz/schemathesis.toml``):

- Text may not contain U+0000 (README: PostgreSQL cannot store it, so it is refused on both backends alike with a
  422 naming the field). The document does not spell it as a ``pattern`` on every string, so generation leaves
  NUL out (``allow-x00 = false``); ``tests/e2e/test_hostile_input.py`` covers the NUL refusals by hand.
- ``positive_data_acceptance`` is off in the stateful phase only. A value a stateful step takes from an earlier
  response through an inferred link is not drawn from the target's schema: a task's null ``goal_id`` becomes
  ``GET /goals/None``, which is rightly a 422, and the check calls that "valid data rejected" (the same class as
  schemathesis issue #2983). The coverage and fuzzing phases keep the check on every operation.
- ``ensure_resource_availability`` is off in the stateful phase (the only phase it runs in). Resources are flat
  (``/patterns/{id}``, not ``/users/{id}/patterns/{id}``) and deleting a user removes its rows through ON DELETE
  CASCADE, as the manifest says; the check only recognises a DELETE on the row's own path or a parent path, so the
  404 after a cascade reads as "created resource not found". ``use_after_free`` still runs.
- ``If-Match`` is always ``*`` and ``If-None-Match`` always a tag no row carries (``schemathesis.toml``): a tag
  naming another version is refused 412 by design, and one naming the row's version answers 304, which the
  document leaves out so that generated clients type every read (``tests/e2e/test_versions.py`` covers both).
  ``positive_data_acceptance`` is off on ``POST /api/v1/batch``: each operation's body is validated against the
  resource the operation names and its ``$ref`` strings against earlier operations, relations JSON Schema cannot
  state, so a schema-valid batch may rightly be refused with 422 naming the operation (``tests/e2e/test_batch.py``).
- ``X-Flux-Consistency`` is always ``0/0`` (a position every database has passed): schemathesis drew values such as
  ``0`` as schema-valid although the header's pattern refuses them, and the 422 that follows read as "valid data
  rejected". ``tests/e2e/test_replica_settings_pg.py`` covers the refusals.
- Unknown query parameters and repeated single-valued ones are a 422 naming them (issue #8); schemathesis sends
  only the parameters the document declares, so nothing needed turning off for them.
- The change feed's long poll gets ``wait=0`` (a wait of up to 30 s per case would spend the budget waiting), and
  its Server-Sent Events stream is left out: an endless response cannot be read to the end that the checks need.
  ``tests/e2e/test_changes.py`` covers both.
- Query parameters are converted leniently by design (``?limit=5`` is the integer 5: a query string has no other
  way to carry one); JSON bodies are strict (``"5"`` for an integer field is a 422), see
  ``flux_dao/http/bodies.py``.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, KEY_HEADER, fresh_database
from tests.live import live_server

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
CHECKS = HERE / "checks.py"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
KEY = "fuzz-key-0123456789abcdef"
MAX_TIME = 80
"""Seconds of schemathesis per backend (``--max-time``)."""
PHASES = ("coverage", "fuzzing", "stateful")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the backend, for this test alone (fuzzing leaves thousands of rows behind)."""
    with fresh_database(request.param, tmp_path, "fuzz") as url:
        yield url


ENDLESS: frozenset[str] = frozenset({"/api/v1/changes/stream"})
"""Operations whose response never ends (Server-Sent Events): left out of the run in schemathesis.toml."""


def _operation_count(base: str) -> tuple[int, int]:
    """The operations of the document: all of them, and those that end (what schemathesis tests)."""
    document = httpx.get(f"{base}/schema/openapi.json", timeout=10).json()
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    paths = [path for path, item in document["paths"].items() for method in item if method in methods]
    return len(paths), sum(1 for path in paths if path not in ENDLESS)


def _run_schemathesis(base: str, workdir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = workdir / "schemathesis-report.json"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/schema/openapi.json",
        "--header",
        f"{KEY_HEADER}: {KEY}",
        "--max-time",
        str(MAX_TIME),
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(CHECKS)}
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=MAX_TIME + 120, check=False
    )
    assert report.exists(), f"no report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result, json.loads(report.read_text())


def _explain(result: subprocess.CompletedProcess[str], server_log: str) -> str:
    """The failures as schemathesis prints them (operation, check, response, curl), then the server's last words."""
    out = result.stdout
    start = out.find("=== FAILURES")
    start = out.rfind("\n", 0, start) + 1 if start != -1 else max(0, len(out) - 20_000)
    errors = [line for line in server_log.splitlines() if "Traceback" in line or "ERROR" in line]
    log_tail = "\n".join(server_log.splitlines()[-60:])
    return (
        f"schemathesis exit {result.returncode}\n{out[start:]}\n{result.stderr[-5000:]}\n"
        f"--- server log: {len(errors)} error line(s); last lines ---\n{log_tail}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_every_operation_survives_schemathesis(database_url: str, tmp_path: Path) -> None:
    with live_server(database_url, tmp_path, env={"SERVICE_API_KEYS": KEY}) as server:
        documented, operations = _operation_count(server.base)
        result, report = _run_schemathesis(server.base, tmp_path)
        exit_code = server.stop()
        explanation = _explain(result, server.output)

    assert report["failures"] == [], explanation
    assert report["errors"] == [], explanation
    assert result.returncode == 0, explanation
    assert report["operations"]["total"] == documented, explanation
    assert report["operations"]["tested"] == operations, explanation
    for phase in PHASES:
        assert report["phases"][phase]["status"] == "success", f"{phase}: {report['phases'][phase]}\n{explanation}"
    assert report["test_cases"]["generated"] >= 20 * operations, report["test_cases"]
    assert exit_code == 0, explanation
    assert "Traceback" not in server.output, explanation
