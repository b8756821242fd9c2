"""What ``flux-dao serve`` and the other commands tell a person: the start-up summary, connect failures, log lines."""

import errno
import json
import logging
import logging.config
import socket
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from flux_dao import __version__
from flux_dao.config import DatabaseSettings, Exposure, Settings
from flux_dao.logs import TextFormatter, logging_config
from flux_dao.ops.cli import log_format_for
from flux_dao.ops.startup import startup_summary
from flux_dao.store.db import connect_failure

SECRET = "s3cr3t-pw"
PG = DatabaseSettings(url=f"postgresql://flux:{SECRET}@db.internal:5999/flux", connect_timeout=2.5)


def summary(settings: Settings, **overrides: object) -> dict[str, object]:
    options: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 8001,
        "workers": 1,
        "migrations": "already at head (abc)",
        **overrides,
    }
    return startup_summary(settings, 6, **options)  # type: ignore[arg-type]


def test_the_summary_names_everything_an_operator_checks_first(tmp_path: Path):
    settings = Settings(database=PG, manifest_path=tmp_path / "resources.yaml", api_keys=("k1",))
    assert summary(settings, host="0.0.0.0", port=9000, workers=2) == {  # noqa: S104
        "version": __version__,
        "manifest": str(tmp_path / "resources.yaml"),
        "resources": 6,
        "database": "postgresql+asyncpg://flux:***@db.internal:5999/flux",
        "migrations": "already at head (abc)",
        "bind": "http://0.0.0.0:9000",
        "workers": 2,
        "auth": "keys",
        "docs": "http://0.0.0.0:9000/docs",
        "metrics": "http://0.0.0.0:9000/metrics",
    }
    assert SECRET not in json.dumps(summary(settings))


def test_the_summary_says_open_scoped_and_off(tmp_path: Path):
    open_api = Settings(docs=Exposure.OFF, metrics=Exposure.OFF)
    skipped = summary(open_api, migrations="skipped (--no-migrate)")
    assert skipped | {"manifest": None} == summary(open_api) | {
        "manifest": None,
        "auth": "open",
        "docs": "off",
        "metrics": "off",
        "migrations": "skipped (--no-migrate)",
    }
    scoped = Settings(api_keys=("k1",), keys_file=tmp_path / "keys.yaml")
    assert summary(scoped)["auth"] == "scoped"
    assert summary(scoped, host="::1")["bind"] == "http://[::1]:8001"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "connection refused"),
        (OSError(errno.EHOSTUNREACH, "No route"), "no route to host"),
        (
            OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5999, 0, 0), [Errno 111] Con"),
            "connection refused",
        ),
        (
            OSError("Multiple exceptions: [Errno 111] Connect call failed, [Errno 113] No route"),
            "Multiple exceptions: [Errno 111] Connect call failed, [Errno 113] No route",
        ),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "unknown host (Name or service not known)"),
        (TimeoutError(), "no answer within 2.5 s (DB_CONNECT_TIMEOUT)"),
    ],
)
def test_an_unreachable_server_is_named_with_host_port_and_reason(error: OSError, expected: str):
    message = connect_failure(PG, error)
    assert message == f"cannot reach PostgreSQL at db.internal:5999: {expected}"
    assert SECRET not in message


def test_a_refusing_server_is_named_with_database_user_and_its_reason():
    refused = asyncpg.InvalidCatalogNameError('database "flux" does not exist')
    message = connect_failure(PG, refused)
    assert message == (
        'cannot connect to PostgreSQL at db.internal:5999 (database flux, user flux): database "flux" does not exist'
    )


def test_an_unopenable_sqlite_file_is_named():
    wrapped = DBAPIError("connect", None, sqlite3.OperationalError("unable to open database file"))
    settings = DatabaseSettings(url="sqlite:////missing/dir/flux.db")
    assert (
        connect_failure(settings, wrapped)
        == "cannot open SQLite database /missing/dir/flux.db: unable to open database file"
    )


def test_other_errors_are_not_dressed_up_as_connect_failures():
    assert connect_failure(PG, ValueError("a bug")) is None
    assert connect_failure(DatabaseSettings(url="sqlite:///x.db"), KeyError("x")) is None


@pytest.mark.parametrize(
    ("configured", "command", "used"),
    [
        ("auto", "serve", "json"),
        ("auto", "check", "cli"),
        ("auto", "migrate", "cli"),
        ("auto", None, "cli"),
        ("json", "check", "json"),
        ("text", "serve", "text"),
    ],
)
def test_json_lines_only_for_serve_unless_asked_for(configured: str, command: str | None, used: str):
    assert log_format_for(configured, command) == used


def test_cli_lines_are_the_message_with_the_level_from_warning_up():
    brief = TextFormatter(brief=True)
    info = logging.LogRecord("alembic.runtime.migration", logging.INFO, __file__, 0, "Running upgrade %s", ("x",), None)
    warning = logging.LogRecord("flux_dao", logging.WARNING, __file__, 0, "careful", None, None)
    assert brief.format(info) == "Running upgrade x"
    assert brief.format(warning) == "warning: careful"


def test_alembic_set_up_chatter_is_dropped_and_its_real_lines_kept(capsys: pytest.CaptureFixture[str]):
    logging.config.dictConfig(logging_config("INFO", "cli"))
    migration = logging.getLogger("alembic.runtime.migration")
    migration.info("Context impl SQLiteImpl.")
    migration.info("Will assume non-transactional DDL.")
    migration.info("Running upgrade  -> abc, initial")
    migration.warning("Will assume something odd")
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")
    logging.getLogger("advanced_alchemy.config").info("set-up note")
    logging.getLogger("advanced_alchemy.config").warning("a real warning")
    # flux-dao's protocols log each refused request head themselves, saying what was wrong
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    assert capsys.readouterr().err.splitlines() == [
        "Running upgrade  -> abc, initial",
        "warning: Will assume something odd",
        "warning: a real warning",
    ]


def test_at_debug_level_nothing_is_dropped(capsys: pytest.CaptureFixture[str]):
    logging.config.dictConfig(logging_config("DEBUG", "cli"))
    try:
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")
    finally:
        logging.config.dictConfig(logging_config("INFO", "cli"))
    assert capsys.readouterr().err.splitlines() == [
        "Context impl SQLiteImpl.",
        "setup plugin alembic.autogenerate.schemas",
    ]
