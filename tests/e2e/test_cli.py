import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from flux_dao import __version__
from flux_dao.ops.cli import main
from flux_dao.store.migrations import migration_heads
from tests.conftest import run_sql
from tests.live import free_port, live_server, start_server
from tests.manifests import PRIORITY, project_copy

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "resources.yaml"
FLUX_DAO = Path(sys.executable).parent / "flux-dao"
COMMANDS = ["serve", "migrate", "makemigrations", "check", "explain", "openapi", "migrations"]
HEAD = "9ed2342ab7b3"
PREVIOUS = "f3905fd2dbca"
EARLIER = ("bf8d449ad1fe", "824be8037c25", "c9f00535a8ea")

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


# --- start-up and a CLI a person enjoys ------------------------------------------------------------------------------

SECRET = "s3cr3t-pw"


def run_installed(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``flux-dao`` with only ``env`` (and PATH) set: no terminal, no inherited settings."""
    return subprocess.run(
        [str(FLUX_DAO), "--manifest", str(MANIFEST), *args],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line_failure(completed: subprocess.CompletedProcess[str]) -> str:
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "Traceback" not in output
    assert SECRET not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_an_unreachable_database_stops_the_command_with_one_line_naming_host_and_port(tmp_path, command):
    port = free_port()
    env = {"DATABASE_URL": f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/flux"}
    line = one_line_failure(run_installed(command, env=env, cwd=tmp_path))
    assert line == f"Error: cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused"


@pytest.mark.parametrize("command", ["serve", "migrate", "check", "openapi"])
def test_an_unknown_database_scheme_stops_every_command_listing_the_accepted_ones(tmp_path, command):
    env = {"FLUX_DAO_DATABASE_URL": f"mysql://flux:{SECRET}@127.0.0.1/flux"}
    line = one_line_failure(run_installed(command, env=env, cwd=tmp_path))
    assert line.startswith("Error: FLUX_DAO_DATABASE_URL has an unknown scheme 'mysql://': use one of ")
    assert "postgresql://" in line
    assert "sqlite://" in line


def test_a_malformed_database_url_says_so_in_one_line(tmp_path):
    env = {"DATABASE_URL": f"postgresql://flux:{SECRET}@127.0.0.1:port/flux"}
    line = one_line_failure(run_installed("migrate", env=env, cwd=tmp_path))
    assert line.startswith("Error: DATABASE_URL is malformed (the port is not a number)")


def test_a_database_that_does_not_exist_is_named(tmp_path, pg_database):
    url = pg_database.replace("postgresql+asyncpg://postgres@", f"postgres://postgres:{SECRET}@") + "_missing"
    line = one_line_failure(run_installed("migrate", env={"DATABASE_URL": url}, cwd=tmp_path))
    assert line.startswith("Error: cannot connect to PostgreSQL at 127.0.0.1:5432 (database ")
    assert line.endswith("_missing" + '" does not exist')


def test_commands_print_plain_text_without_a_terminal(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'plain.db'}"}
    for command in ("check", "migrate"):
        completed = run_installed(command, env=env, cwd=tmp_path)
        assert completed.returncode == 0, completed.stderr
        for line in (completed.stdout + completed.stderr).splitlines():
            assert not line.lstrip().startswith("{"), line
            assert "INFO" not in line
            assert "Context impl" not in line
            assert "setup plugin" not in line
    head = next(iter(migration_heads(ROOT / "migrations") or ()))
    assert completed.stdout.strip() == f"database upgraded from base to {head}"
    assert "Running upgrade" in completed.stderr  # each revision run is still said, plainly


def test_json_log_lines_when_asked_for_explicitly(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'json.db'}", "FLUX_DAO_LOG_FORMAT": "json"}
    completed = run_installed("migrate", env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in completed.stderr.splitlines()]
    head = next(iter(migration_heads(ROOT / "migrations") or ()))
    assert records, "the revisions run are logged"
    assert all(r["message"].startswith("Running upgrade ") for r in records), records
    assert f"-> {head}," in records[-1]["message"]


def test_serve_help_lists_the_environment_variables():
    result = run("serve", "--help")
    assert result.exit_code == 0
    for variable in (
        "FLUX_DAO_HOST",
        "FLUX_DAO_PORT",
        "FLUX_DAO_WORKERS",
        "FLUX_DAO_NO_MIGRATE",
        "FLUX_DAO_DATABASE_URL",
    ):
        assert variable in result.stdout
    assert "FLUX_DAO_MANIFEST" in run("--help").stdout


def example_lines(help_text: str) -> list[str]:
    """The lines of a docstring's Example(s) block, as written."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() in {"Example:", "Examples:"})
    return [line.strip() for line in lines[start + 1 :] if line.strip()]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_examples_print_as_written(command):
    target = main if command is None else main.commands[command]
    examples = example_lines(target.help or "")
    assert examples
    result = run(*([command] if command else []), "--help")
    printed = [line.strip() for line in result.stdout.splitlines()]
    for example in examples:
        assert example in printed, result.stdout


def test_serve_reads_prefixed_variables_and_logs_one_summary(tmp_path, pg_database):
    port = free_port()
    url = pg_database.replace("postgresql+asyncpg://postgres@", f"postgres://postgres:{SECRET}@")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLUX_DAO_DATABASE_URL": url,  # postgres:// works, and the password reaches the server (trust auth)
        "DATABASE_URL": "mysql://ignored",  # the prefixed name wins; the bare one is not even read
        "FLUX_DAO_PORT": str(port),
        "FLUX_DAO_SERVICE_API_KEYS": "k1",
        "PYTHONUNBUFFERED": "1",
    }
    server = start_server(["--manifest", str(MANIFEST), "serve"], env, tmp_path, port)  # no --port
    try:
        server.wait_healthy()
        assert httpx.get(f"{server.base}/api/v1/users").status_code == 401
        assert httpx.get(f"{server.base}/api/v1/users", headers={"X-Flux-Service-Key": "k1"}).status_code == 200
    finally:
        assert server.stop() == 0
    output = server.output
    assert SECRET not in output
    records = [json.loads(line) for line in output.splitlines()]
    summaries = [r for r in records if r["message"].startswith("starting flux-dao")]
    assert len(summaries) == 1, output
    summary = summaries[0]
    database = url.replace(f"postgres://postgres:{SECRET}@", "postgresql+asyncpg://postgres:***@")
    head = next(iter(migration_heads(ROOT / "migrations") or ()))
    assert summary["migrations"] in {f"database upgraded from base to {head}", f"already at head ({head})"}
    assert {k: v for k, v in summary.items() if k not in {"ts", "pid", "migrations"}} == {
        "level": "INFO",
        "logger": "flux_dao",
        "message": f"starting flux-dao {__version__}",
        "version": __version__,
        "manifest": str(MANIFEST),
        "resources": 6,
        "database": database,
        "bind": server.base,
        "workers": 1,
        "auth": "keys",
        "docs": f"{server.base}/docs",
        "metrics": f"{server.base}/metrics",
    }
    assert not [r for r in records if r["message"].startswith(("Context impl", "Will assume", "setup plugin"))]


# --- schema drift: the manifest, its migrations and the database must agree -------------------------------------------


def assert_refused(result: Result, difference: str) -> None:
    """Exit 1 with one message naming ``difference`` and the commands that fix it."""
    assert result.exit_code == 1, result.output
    assert difference in result.stderr
    assert "flux-dao makemigrations -m" in result.stderr
    assert "then `flux-dao migrate`" in result.stderr
    assert "Traceback" not in result.output


def test_check_names_a_field_the_migrations_lack_and_the_fix(tmp_path: Path) -> None:
    manifest = project_copy(tmp_path, task_fields=PRIORITY)
    result = run("--manifest", str(manifest), "check", env=sqlite_env(tmp_path))
    assert_refused(result, "tasks.priority is in the manifest but not in the migrations")
    assert not (tmp_path / "cli.db").exists()  # check never touches DATABASE_URL


def test_check_names_an_index_the_migrations_lack(tmp_path: Path) -> None:
    manifest = project_copy(tmp_path, task_fields="      priority: {type: integer, filter: true}\n")
    result = run("--manifest", str(manifest), "check")
    assert result.exit_code == 1, result.output
    assert "index ix_tasks_priority" in result.stderr
    assert "is missing from the migrations" in result.stderr


def test_check_of_a_manifest_without_migrations_says_they_are_missing(tmp_path: Path) -> None:
    manifest = project_copy(tmp_path, migrations=False)
    result = run("--manifest", str(manifest), "check")
    assert result.exit_code == 1, result.output
    assert "no migrations yet" in result.stderr
    assert "flux-dao makemigrations" in result.stderr
    assert "Traceback" not in result.output


def test_check_is_fast_enough(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run("--manifest", str(MANIFEST), "check")
    assert result.exit_code == 0, result.output
    assert "the migrations match the manifest" in result.stdout
    assert time.monotonic() - started < 10  # 1.4 s in all here; 0.3 s of it the scratch database


def test_serve_refuses_a_manifest_ahead_of_its_migrations_before_touching_the_database(tmp_path: Path) -> None:
    manifest = project_copy(tmp_path, task_fields=PRIORITY)
    result = run("--manifest", str(manifest), "serve", env=sqlite_env(tmp_path))
    assert_refused(result, "tasks.priority is in the manifest but not in the migrations")
    assert not (tmp_path / "cli.db").exists()


def test_after_makemigrations_and_migrate_check_and_serve_accept_the_new_field(tmp_path: Path) -> None:
    manifest = project_copy(tmp_path, task_fields=PRIORITY)
    env = sqlite_env(tmp_path)
    made = run("--manifest", str(manifest), "makemigrations", "-m", "task priority", env=env)
    assert made.exit_code == 0, made.output
    checked = run("--manifest", str(manifest), "check", env=env)
    assert checked.exit_code == 0, checked.output
    new_head = next(iter(migration_heads(tmp_path / "migrations") or ()))
    migrated = run("--manifest", str(manifest), "migrate", env=env)
    assert migrated.exit_code == 0, migrated.output
    assert migrated.stdout.strip() == f"database upgraded from base to {new_head}"
    with live_server(env["DATABASE_URL"], tmp_path, manifest=manifest) as server:
        assert httpx.get(f"{server.base}/ready").status_code == 200
        user = httpx.post(f"{server.base}/api/v1/users", json={"email": "p@example.com"}).json()
        task = httpx.post(f"{server.base}/api/v1/tasks", json={"user_id": user["id"], "title": "t", "priority": 3})
        assert task.status_code == 201, task.text
        assert task.json()["priority"] == 3


def test_serve_refuses_a_database_changed_outside_the_migrations(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    assert run("--manifest", str(MANIFEST), "migrate", env=env).exit_code == 0
    # a rename, not a drop: SQLite refuses to drop a column the change-feed triggers copy (they follow a rename)
    run_sql(env["DATABASE_URL"], "ALTER TABLE tasks RENAME COLUMN recurrence_rule TO rrule")
    result = run("--manifest", str(MANIFEST), "serve", env=env)
    assert_refused(result, "tasks.recurrence_rule is in the manifest but not in the database")


def test_migrate_twice_says_it_is_already_at_the_head(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    first = run("--manifest", str(MANIFEST), "migrate", env=env)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"database upgraded from base to {HEAD}"
    second = run("--manifest", str(MANIFEST), "migrate", env=env)
    assert second.exit_code == 0, second.output
    assert second.stdout.strip() == f"already at head ({HEAD})"
    assert "alembic" not in second.output  # no INFO chatter from alembic


def test_migrate_with_a_manifest_ahead_of_its_migrations_names_what_the_database_lacks(tmp_path: Path) -> None:
    manifest = project_copy(tmp_path, task_fields=PRIORITY)
    result = run("--manifest", str(manifest), "migrate", env=sqlite_env(tmp_path))
    assert_refused(result, "tasks.priority is in the manifest but not in the database")
    assert f"database upgraded from base to {HEAD}" in result.stdout


def _change_triggers(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]


def test_migrations_current_history_and_downgrade(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)

    def cli(*args: str, stdin: str | None = None) -> Result:
        result = CliRunner().invoke(main, ["--manifest", str(MANIFEST), *args], env=env, input=stdin)
        assert result.exit_code == 0, result.output
        return result

    assert cli("migrations", "current").stdout.startswith("base (no migration applied)")
    assert not (tmp_path / "cli.db").exists()
    cli("migrate")
    assert cli("migrations", "current").stdout.strip() == f"{HEAD} (head)"
    history = cli("migrations", "history").stdout.splitlines()
    assert [line.split()[0] for line in history] == [HEAD, PREVIOUS, *EARLIER]
    assert history[0].endswith("(head, current)")
    assert "the six flux resources" in history[4]
    assert "current" not in history[1]

    assert len(_change_triggers(tmp_path / "cli.db")) == 18  # insert, update, delete on each of the six

    moved = cli("migrations", "downgrade", PREVIOUS, "--yes")
    assert moved.stdout.strip() == f"database downgraded from {HEAD} to {PREVIOUS}"
    assert _change_triggers(tmp_path / "cli.db") == []  # no change log, no triggers writing into it
    current = cli("migrations", "current").stdout
    assert current.startswith(f"{PREVIOUS} (not the head {HEAD}")
    assert cli("migrations", "history").stdout.splitlines()[1].endswith("(current)")

    assert cli("migrations", "downgrade", "base", stdin="y\n").stdout.strip().endswith(f"from {PREVIOUS} to base")
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "tasks" not in tables
    assert cli("migrate").stdout.strip() == f"database upgraded from base to {HEAD}"


def test_migrations_downgrade_asks_first_and_a_no_changes_nothing(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    assert run("--manifest", str(MANIFEST), "migrate", env=env).exit_code == 0
    result = CliRunner().invoke(
        main, ["--manifest", str(MANIFEST), "migrations", "downgrade", "base"], env=env, input="n\n"
    )
    assert result.exit_code == 1
    assert "Aborted" in result.output
    assert run("--manifest", str(MANIFEST), "migrations", "current", env=env).stdout.strip() == f"{HEAD} (head)"


@pytest.mark.parametrize("command", ["current", "history", "downgrade"])
def test_every_migrations_command_has_help(command: str) -> None:
    result = run("migrations", command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout
