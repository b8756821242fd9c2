"""The round trip of issue #14 at 100k tasks: SQLite -> PostgreSQL -> SQLite, through ``flux-dao export/import``.

The first SQLite database is seeded in bulk (``bench.seed``: 1,000 users, 10,000 goals, 100,000 tasks, about 1,000
notification rows; one goal in ten gets a parent). Each database is then exported, and the export imported into
the next: equal row counts and equal sha256 over every row's canonical JSON mean the three hold the same data.
"""

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.seed import seed_sqlite
from flux_dao.ops.cli import main
from flux_dao.store.migrations import upgrade
from tests.conftest import MANIFEST, fresh_database, make_settings
from tests.e2e.test_transfer import checksums


def flux_dao(url: str, *args: str) -> dict[str, tuple[int, str]]:
    result = CliRunner().invoke(
        main, ["--manifest", str(MANIFEST), *args], env={"FLUX_DAO_DATABASE_URL": url}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output[-3000:]
    return checksums(result) if args[0] == "export" else {}


@pytest.mark.slow
@pytest.mark.postgres
def test_100k_tasks_go_sqlite_to_postgres_to_sqlite_unchanged(tmp_path: Path) -> None:
    first = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
    upgrade(make_settings(first))
    seed_sqlite(tmp_path / "first.db", MANIFEST, scale=1)
    with closing(sqlite3.connect(tmp_path / "first.db")) as conn, conn:
        conn.execute(
            "UPDATE goals SET parent_goal_id = (SELECT g.id FROM goals AS g WHERE g.rowid = goals.rowid + 1) "
            "WHERE rowid % 10 = 0"
        )
    exported = flux_dao(first, "export", str(tmp_path / "first"))
    assert exported["tasks"][0] == 100_000
    assert exported["goals"][0] == 10_000

    with fresh_database("postgres", tmp_path, "roundtrip") as postgres:
        upgrade(make_settings(postgres))
        flux_dao(postgres, "import", str(tmp_path / "first"))
        assert flux_dao(postgres, "export", "-o", str(tmp_path / "postgres.ndjson")) == exported

    last = f"sqlite+aiosqlite:///{tmp_path / 'last.db'}"
    upgrade(make_settings(last))
    flux_dao(last, "import", str(tmp_path / "postgres.ndjson"))  # the single stream this time
    assert flux_dao(last, "export", str(tmp_path / "last")) == exported
