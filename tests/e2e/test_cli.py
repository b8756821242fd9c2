import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from flux_dao.cli import main
from flux_dao.migrations import migration_heads
from tests.live import live_server

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "resources.yaml"
FLUX_DAO = Path(sys.executable).parent / "flux-dao"
COMMANDS = ["serve", "migrate", "makemigrations", "check", "openapi"]

GOOD_PREFIX = """\
version: 1
resources:
  owners:
    fields:
      name: {type: string, required: true}
  notes:
    fields:
"""
BAD_FIELDS = {
    "unknown-type": ("body", "      body: {type: text}\n"),
    "enum-default": ("kind", "      kind: {type: enum, values: [a, b], default: c}\n"),
    "missing-reference": ("folder_id", "      folder_id: {type: uuid, references: folders}\n"),
    "unknown-field-key": ("body", "      body: {type: string, maxlength: 5}\n"),
}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", "SERVICE_API_KEYS": ""}


def test_check_accepts_the_project_manifest() -> None:
    result = run("--manifest", str(MANIFEST), "check")
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout
    assert "6 resources" in result.stdout


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_check_rejects_an_invalid_manifest_naming_file_entity_and_field(tmp_path: Path, case: str) -> None:
    field, line = BAD_FIELDS[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD_PREFIX + line, encoding="utf-8")
    result = run("--manifest", str(bad), "check")
    assert result.exit_code == 1, result.output
    assert "bad.yaml" in result.stderr
    assert "notes" in result.stderr
    assert field in result.stderr
    assert "ok" not in result.stdout


def test_check_reads_the_manifest_from_the_environment(tmp_path: Path) -> None:
    bad = tmp_path / "env.yaml"
    bad.write_text(GOOD_PREFIX + BAD_FIELDS["unknown-type"][1], encoding="utf-8")
    result = run("check", env={"FLUX_DAO_MANIFEST": str(bad)})
    assert result.exit_code == 1
    assert "env.yaml" in result.stderr


def test_check_of_a_missing_manifest_fails_naming_it(tmp_path: Path) -> None:
    result = run("--manifest", str(tmp_path / "absent.yaml"), "check")
    assert result.exit_code != 0
    assert "absent.yaml" in result.output


@pytest.mark.parametrize("docs", ["auto", "off"])
def test_openapi_prints_the_openapi_json(tmp_path: Path, docs: str) -> None:
    result = run("--manifest", str(MANIFEST), "openapi", env={**sqlite_env(tmp_path), "FLUX_DAO_DOCS": docs})
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/tasks" in document["paths"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert command in result.stdout


def test_top_level_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_serve_on_a_public_address_without_keys_refuses_to_start(tmp_path: Path) -> None:
    result = run("--manifest", str(MANIFEST), "serve", "--host", "0.0.0.0", env=sqlite_env(tmp_path))  # noqa: S104
    assert result.exit_code != 0
    assert "SERVICE_API_KEYS" in result.output
    assert not (tmp_path / "cli.db").exists()


def test_migrate_brings_a_fresh_sqlite_file_to_the_head(tmp_path: Path) -> None:
    result = run("--manifest", str(MANIFEST), "migrate", env=sqlite_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli.db").is_file()
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {revision} == set(migration_heads(ROOT / "migrations") or ())
    assert {"users", "goals", "tasks", "conversations", "patterns", "notification_log"} <= tables


def test_makemigrations_on_an_up_to_date_manifest_creates_nothing(tmp_path: Path) -> None:
    shutil.copy(MANIFEST, tmp_path / "resources.yaml")
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.name for p in (tmp_path / "migrations" / "versions").glob("*.py"))
    result = run(
        "--manifest", str(tmp_path / "resources.yaml"), "makemigrations", "-m", "nothing", env=sqlite_env(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "migrations" / "versions").glob("*.py")) == before
    assert "no changes" in result.stdout


def test_installed_entry_point_checks_the_manifest(tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(FLUX_DAO), "--manifest", str(MANIFEST), "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "ok" in completed.stdout


def test_serve_starts_migrates_and_serves_on_loopback_without_keys(tmp_path: Path) -> None:
    with live_server(f"sqlite+aiosqlite:///{tmp_path / 'served.db'}", tmp_path) as server:
        base = server.base
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 200, ready.text
        created = httpx.post(f"{base}/api/v1/users", json={"email": "served@example.com"})
        assert created.status_code == 201, created.text
        fetched = httpx.get(f"{base}/api/v1/users/{created.json()['id']}")
        assert fetched.status_code == 200
        assert fetched.json()["email"] == "served@example.com"
    assert (tmp_path / "served.db").is_file()
