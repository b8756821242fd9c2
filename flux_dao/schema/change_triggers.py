"""The triggers that write the change feed, as SQL text for each backend.

Triggers rather than code in the repository: they see every committed change, including rows removed or nulled by
``ON DELETE CASCADE / SET NULL``, bulk statements, and writes other tools make with plain SQL, and they commit (or
roll back) with the write itself. ``flux_dao.store.change_triggers`` installs them at the end of every migration.

PostgreSQL: one function for every table, fired once per statement with its transition tables, so a bulk update of
a thousand rows is one ``INSERT ... SELECT`` into the change log; ``to_jsonb`` copies whatever columns the row has.
SQLite: three row triggers per table (it has no statement triggers), each listing the table's columns in a
``json_object``; binary columns (the ids) go in as hex, which JSON can hold.
"""

from collections.abc import Collection, Sequence
from typing import Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from flux_dao.manifest.names import SYSTEM_PREFIX
from flux_dao.schema.system import CHANGES_TABLE

__all__ = (
    "OPS",
    "POSTGRES_FUNCTION",
    "SqliteColumn",
    "postgres_function_sql",
    "postgres_trigger_name",
    "postgres_trigger_sql",
    "recorded_tables",
    "sqlite_columns",
    "sqlite_trigger_name",
    "sqlite_trigger_sql",
)

OPS: Final = ("insert", "update", "delete")
POSTGRES_FUNCTION: Final = f"{SYSTEM_PREFIX}record_changes"
_NEW_ROWS: Final = f"{SYSTEM_PREFIX}new_rows"
_OLD_ROWS: Final = f"{SYSTEM_PREFIX}old_rows"
_INSERT: Final = f'INSERT INTO {CHANGES_TABLE} (resource, op, row_id, "row")'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def postgres_function_sql() -> str:
    """``CREATE OR REPLACE FUNCTION``: copies a statement's transition table into the change log.

    ``TG_ARGV[0]`` is the resource name. The function runs in UTC, so ``to_jsonb`` writes every timestamp as the
    API does, whatever the writing session's time zone (a tool's plain SQL). Positions come from the change log's
    sequence as the rows go in, after the rows' own locks were taken, so two changes of one row always get positions
    in the order they committed. (``flux_dao.store.change_triggers`` compares the body and the ``TimeZone=UTC``
    setting with the database's.)
    """
    return (
        f"CREATE OR REPLACE FUNCTION {POSTGRES_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SET timezone TO 'UTC' "
        "AS $flux$\n"
        "BEGIN\n"
        "  IF TG_OP = 'DELETE' THEN\n"
        f"    {_INSERT} SELECT TG_ARGV[0], 'delete', o.id::text, to_jsonb(o) FROM {_OLD_ROWS} o;\n"
        "  ELSE\n"
        f"    {_INSERT} SELECT TG_ARGV[0], lower(TG_OP), n.id::text, to_jsonb(n) FROM {_NEW_ROWS} n;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$flux$"
    )


def postgres_trigger_name(op: str) -> str:
    """The name of the trigger recording ``op`` (per table: PostgreSQL scopes trigger names to their table)."""
    return f"{SYSTEM_PREFIX}changes_{op}"


def postgres_trigger_sql(table: str, op: str) -> str:
    """``CREATE TRIGGER`` recording statement ``op`` on ``table`` (one event each: transition tables require it)."""
    transition = f"OLD TABLE AS {_OLD_ROWS}" if op == "delete" else f"NEW TABLE AS {_NEW_ROWS}"
    return (
        f"CREATE TRIGGER {postgres_trigger_name(op)} AFTER {op.upper()} ON {_quoted(table)} "
        f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {POSTGRES_FUNCTION}({_literal(table)})"
    )


class SqliteColumn(NamedTuple):
    """A column as the SQLite trigger copies it: by name, binary ones as hex."""

    name: str
    binary: bool


_SQLITE: Final = sqlite.dialect()


def _binary_on_sqlite(column: sa.Column[object]) -> bool:
    kind = column.type
    if isinstance(kind, sa.TypeDecorator):
        kind = kind.load_dialect_impl(_SQLITE)
    return isinstance(kind, sa.LargeBinary | sa.BINARY | sa.VARBINARY)


def sqlite_columns(table: sa.Table, present: Collection[str]) -> tuple[SqliteColumn, ...]:
    """``table``'s columns that the database has (``present``), as its SQLite trigger copies them."""
    return tuple(SqliteColumn(c.name, _binary_on_sqlite(c)) for c in table.columns if c.name in present)


def recorded_tables(metadata: sa.MetaData) -> tuple[sa.Table, ...]:
    """The tables whose changes the feed records: the resources' not marked ``changes: false``."""
    return tuple(table for table in metadata.tables.values() if table.info.get("changes"))


def sqlite_trigger_name(table: str, op: str) -> str:
    """The name of the trigger recording ``op`` on ``table`` (SQLite's trigger names are global)."""
    return f"{SYSTEM_PREFIX}changes_{table}_{op}"


def _sqlite_value(record: str, column: SqliteColumn) -> str:
    value = f"{record}.{_quoted(column.name)}"
    return f"nullif(hex({value}), '')" if column.binary else value


def _sqlite_id(record: str) -> str:
    """The row's id as the API spells it: a UUID's 16 bytes as lowercase hex with dashes (text ids as they are)."""
    h = f"lower(hex({record}.id))"
    dashed = "||'-'||".join(f"substr({h}, {start}, {length})" for start, length in _UUID_GROUPS)
    return f"CASE typeof({record}.id) WHEN 'blob' THEN {dashed} ELSE {record}.id END"


_UUID_GROUPS: Final = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
_SQLITE_NOW: Final = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
"""The statement's time to the millisecond (``CURRENT_TIMESTAMP``, the column's default, stops at the second)."""


def sqlite_trigger_sql(table: str, op: str, columns: Sequence[SqliteColumn]) -> str:
    """``CREATE TRIGGER`` recording each row ``op`` touches on ``table``, with ``columns`` in its JSON."""
    record = "OLD" if op == "delete" else "NEW"
    pairs = ", ".join(f"{_literal(column.name)}, {_sqlite_value(record, column)}" for column in columns)
    return (
        f"CREATE TRIGGER {_quoted(sqlite_trigger_name(table, op))} AFTER {op.upper()} ON {_quoted(table)} BEGIN "
        f'INSERT INTO {CHANGES_TABLE} (resource, op, row_id, committed_at, "row") VALUES ({_literal(table)}, '
        f"{_literal(op)}, {_sqlite_id(record)}, {_SQLITE_NOW}, json_object({pairs})); END"
    )
