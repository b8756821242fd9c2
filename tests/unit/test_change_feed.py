"""The change feed's pure stages: the settled head, positions as clients send them, the trigger SQL."""

import re
import sqlite3
from pathlib import Path

import pytest

from flux_dao.errors import InvalidInputError
from flux_dao.http.changes import parse_position
from flux_dao.manifest import load_manifest
from flux_dao.schema import build_resources
from flux_dao.schema.change_triggers import (
    OPS,
    SqliteColumn,
    postgres_trigger_sql,
    recorded_tables,
    sqlite_columns,
    sqlite_trigger_sql,
)
from flux_dao.store.changes import SettledHead

MANIFEST = Path(__file__).resolve().parents[2] / "resources.yaml"


def test_the_head_waits_for_a_transaction_that_took_an_earlier_position() -> None:
    """T1 (xid 100) took position 5 and is still running; T2 (xid 101) took 6 and committed."""
    head = SettledHead()
    # look 1: positions up to 6 handed out; the look's own id is 102, so ids up to 102 must end (bound 103)
    assert head.saw(6, 100, 103) == 0
    # look 2: nothing new handed out, 100 still running: 6 cannot be handed out, 5 might commit yet
    assert head.saw(6, 100, None) == 0
    # look 3: T1 ended; the oldest running transaction is past the look's own id
    assert head.saw(6, 103, None) == 6


def test_a_running_transaction_with_the_newest_id_holds_the_head() -> None:
    """The case a snapshot's xmax misses: T1 took position 1 and the newest id (50), and is still running.

    A snapshot taken now has xmin = xmax = 50 (the newest *ended* id + 1), as if nothing ran; the look's own id
    (51) is past T1's, so nothing settles until xmin is past 51, which T1 running prevents.
    """
    head = SettledHead()
    assert head.saw(1, 50, 52) == 0
    assert head.saw(1, 50, None) == 0  # T1 still running: xmin stays at its id
    assert head.saw(1, 52, None) == 1  # T1 and the look ended


def test_the_head_moves_to_the_newest_mark_every_transaction_has_passed() -> None:
    head = SettledHead()
    assert head.saw(3, 10, 11) == 0  # the look's own transaction (10) has to end first
    assert head.saw(7, 11, 15) == 3  # mark 1 settles; 11..14 running
    assert head.saw(9, 12, 17) == 3  # 12 still running: neither newer mark is passed
    assert head.saw(9, 15, None) == 7  # mark 2 (bound 15) is passed, not yet mark 3 (17)
    assert head.saw(12, 17, 19) == 9
    assert head.saw(12, 19, None) == 12


def test_a_long_transaction_keeps_a_bounded_number_of_marks_and_loses_no_position() -> None:
    head = SettledHead()
    for high in range(1, 10_001):  # a transaction (xid 5) stays open while 10,000 positions are handed out
        assert head.saw(high, 5, 6 + high) == 0
    assert head.waiting
    assert len(head._marks) <= 257  # the bound is the point of the test
    assert head.saw(10_000, 20_000, None) == 10_000  # once it ends, all of them at once
    assert not head.waiting


def test_without_transactions_to_wait_for_the_last_position_is_the_head() -> None:
    head = SettledHead()
    assert head.written(4) == 4
    assert head.written(9) == 9
    assert head.newest == 9


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ("42", 42), (" 7 ", 7), ("now", "now"), (None, None)])
def test_positions_as_clients_send_them(raw: str | None, expected: object) -> None:
    assert parse_position(raw, "after") == expected


@pytest.mark.parametrize("raw", ["", "abc", "-1", "1.5", "1e3", "9" * 20, "٣"])
def test_a_malformed_position_is_a_422_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_position(raw, "Last-Event-ID")
    assert [error.field for error in caught.value.errors] == ["Last-Event-ID"]


def test_every_resource_is_recorded_unless_it_says_otherwise() -> None:
    metadata = build_resources(load_manifest(MANIFEST)).metadata
    assert [t.name for t in recorded_tables(metadata)] == [
        "users",
        "goals",
        "tasks",
        "conversations",
        "patterns",
        "notification_log",
    ]
    metadata.tables["patterns"].info["changes"] = False
    assert "patterns" not in [t.name for t in recorded_tables(metadata)]


def test_sqlite_triggers_copy_each_column_ids_as_hex_and_spell_the_id_as_a_uuid() -> None:
    """The SQL runs: a row written to a table with the triggers lands in the change log as the API would show it."""
    columns = (SqliteColumn("id", binary=True), SqliteColumn("title", binary=False), SqliteColumn("n", binary=False))
    with sqlite3.connect(":memory:") as conn:
        conn.execute('CREATE TABLE "odd ""name""" (id BLOB PRIMARY KEY, title TEXT, n INTEGER, extra TEXT)')
        conn.execute(
            "CREATE TABLE flux_dao_changes (position INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT, op TEXT, "
            'row_id TEXT, committed_at TEXT, "row" TEXT)'
        )
        for op in OPS:
            conn.execute(sqlite_trigger_sql('odd "name"', op, columns))
        key = bytes(range(16))
        conn.execute('INSERT INTO "odd ""name""" VALUES (?, ?, 1, ?)', (key, "it's", "not copied"))
        conn.execute('UPDATE "odd ""name""" SET n = 2')
        conn.execute('DELETE FROM "odd ""name"""')
        rows = conn.execute("SELECT position, resource, op, row_id, committed_at, row FROM flux_dao_changes").fetchall()
    assert [row[:4] for row in rows] == [
        (position, 'odd "name"', op, "00010203-0405-0607-0809-0a0b0c0d0e0f")
        for position, op in zip((1, 2, 3), OPS, strict=True)
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", row[4]) for row in rows)
    assert rows[0][5] == '{"id":"000102030405060708090A0B0C0D0E0F","title":"it\'s","n":1}'
    assert rows[2][5].endswith('"n":2}')  # a delete copies the row as it was


def test_sqlite_trigger_columns_are_those_the_table_has() -> None:
    tasks = build_resources(load_manifest(MANIFEST)).metadata.tables["tasks"]
    present = {"id", "title", "goal_id", "not_in_the_manifest"}
    assert sqlite_columns(tasks, present) == (
        SqliteColumn("id", binary=True),
        SqliteColumn("goal_id", binary=True),
        SqliteColumn("title", binary=False),
    )


def test_postgres_triggers_fire_for_each_row_of_every_write() -> None:
    sql = postgres_trigger_sql("notification_log")
    assert 'AFTER INSERT OR UPDATE OR DELETE ON "notification_log" FOR EACH ROW' in sql
    assert sql.endswith("EXECUTE FUNCTION flux_dao_record_changes('notification_log')")
