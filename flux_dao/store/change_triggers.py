"""Keep the change-feed triggers in step with the manifest and the tables, at the end of every migration.

They are not written into the revisions: SQLite's table copies (alembic's batch mode) drop a table's triggers, and
SQLite's triggers list the table's columns, so a trigger frozen in an old revision would break the table's writes
after a later one adds a column. Instead ``run_env`` calls :func:`sync_change_triggers` in the migration's own
transaction, after the revisions ran (upgrade or downgrade, from ``flux-dao migrate``, ``serve``'s start-up or
``alembic`` itself): it creates what is missing, replaces what differs, drops what the manifest no longer records,
and touches nothing when all is in step (a replica's start-up takes no table lock).
"""

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flux_dao.schema.change_triggers import (
    OPS,
    POSTGRES_FUNCTION,
    POSTGRES_TRIGGER,
    postgres_function_sql,
    postgres_trigger_sql,
    recorded_tables,
    sqlite_columns,
    sqlite_trigger_name,
    sqlite_trigger_sql,
)
from flux_dao.schema.system import CHANGES_TABLE

__all__ = ("drop_change_triggers", "sync_change_triggers")

_PREFIX_PATTERN = r"flux\_dao\_changes\_%"


def sync_change_triggers(connection: Connection, metadata: sa.MetaData) -> None:
    """Make the database's change triggers what ``metadata`` asks for (none without the change-log table)."""
    existing_tables = set(sa.inspect(connection).get_table_names())
    if CHANGES_TABLE in existing_tables:
        tables = [table for table in recorded_tables(metadata) if table.name in existing_tables]
    else:
        tables = []
    if connection.dialect.name == "postgresql":
        _sync_postgres(connection, tables)
    else:
        _sync_sqlite(connection, tables)


def drop_change_triggers(connection: Connection) -> None:
    """Drop every change trigger (a downgrade past the change log's revision does, before the log goes).

    On SQLite a trigger writing into a table that no longer exists breaks the next table copy of a downgrade.
    """
    if connection.dialect.name == "postgresql":
        _sync_postgres(connection, [])
    else:
        _sync_sqlite(connection, [])


def _sync_postgres(connection: Connection, tables: list[sa.Table]) -> None:
    body = postgres_function_sql()
    current = connection.execute(
        sa.text(
            "SELECT p.prosrc, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.proname = :name AND n.nspname = current_schema()"
        ),
        {"name": POSTGRES_FUNCTION},
    ).first()
    wanted = (body.split("$flux$")[1], None)
    if tables and (current is None or tuple(current) != wanted):
        connection.exec_driver_sql(body)
    rows = connection.execute(
        sa.text(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT t.tgisinternal AND n.nspname = current_schema() AND t.tgname LIKE :pattern"
        ),
        {"pattern": _PREFIX_PATTERN},
    ).all()
    have = {(table, name) for table, name in rows}
    want = {(table.name, POSTGRES_TRIGGER) for table in tables}
    for table, name in sorted(have - want):
        connection.exec_driver_sql(f'DROP TRIGGER {name} ON "{table}"')
    for table, _ in sorted(want - have):
        connection.exec_driver_sql(postgres_trigger_sql(table))
    if not tables and current is not None:
        connection.exec_driver_sql(f"DROP FUNCTION {POSTGRES_FUNCTION}()")


def _sync_sqlite(connection: Connection, tables: list[sa.Table]) -> None:
    rows = connection.execute(
        sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE :pattern ESCAPE '\\'"),
        {"pattern": _PREFIX_PATTERN},
    ).all()
    have: dict[str, str] = {name: sql for name, sql in rows}  # noqa: C416 (Row to str pairs)
    want: dict[str, str] = {}
    for table in tables:
        present = {row[1] for row in connection.execute(sa.text(f'PRAGMA table_info("{table.name}")'))}
        columns = sqlite_columns(table, present)
        for op in OPS:
            want[sqlite_trigger_name(table.name, op)] = sqlite_trigger_sql(table.name, op, columns)
    for name, sql in have.items():
        if want.get(name) != sql:
            connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
    for name, sql in want.items():
        if have.get(name) != sql:
            connection.exec_driver_sql(sql)
