"""Schema drift in plain words: what alembic's comparison found between the manifest and a schema.

``flux_dao.store.migrations`` compares the manifest-built metadata with the schema its migrations produce or with the
live database, and gets alembic's diff tuples; this module turns each into one :class:`Difference` a person can act on
("tasks.priority is in the manifest but not in the database"), and says what to run.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.schema import ColumnCollectionConstraint

__all__ = ("FIX", "Difference", "describe", "drift_message", "harmless_in_database")

FIX: Final = 'run `flux-dao makemigrations -m "describe the change"`, review the new revision, then `flux-dao migrate`'
"""What brings migrations and database in step with the manifest."""


class Difference(NamedTuple):
    """One difference: what it is about (``tasks.priority``, ``table notes``, ``index ix_tasks_user_id``) and how."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject} {self.message}"


def describe(diffs: Iterable[Any], where: str) -> list[Difference]:
    """One :class:`Difference` per alembic diff; ``where`` names the other side ("the database", "the migrations")."""
    found: list[Difference] = []
    for diff in diffs:
        for item in diff if isinstance(diff, list) else [diff]:  # column modifications come as a list per column
            describer = _DESCRIBERS.get(item[0])
            found.append(describer(item, where) if describer else Difference("schema", f"differs: {item!r}"))
    return list(dict.fromkeys(found))  # alembic's order (table by table, columns before indexes), once each


def drift_message(differences: Sequence[Difference], where: str) -> str:
    """The one message ``check``, ``serve`` and ``/ready`` give: every difference, then the fix."""
    listed = "; ".join(str(d) for d in differences)
    return f"the manifest and {where} differ: {listed}. To fix it, {FIX}."


def harmless_in_database(diff: Any) -> bool:
    """Whether a live-database difference (one alembic diff tuple) leaves the API working.

    Things only the database has are harmless (an index or a constraint a DBA added, a column with a default or
    that accepts null), and so are a changed server default or comment (the API always sends every value); missing
    and changed columns, tables and indexes are not.
    """
    kind = diff[0]
    if kind == "remove_column":
        column: sa.Column[Any] = diff[3]
        return bool(column.nullable) or column.server_default is not None
    return kind in _HARMLESS


_HARMLESS: Final = frozenset(
    {"remove_index", "remove_constraint", "remove_fk", "modify_default", "modify_comment"}
    | {"add_table_comment", "remove_table_comment"}
)


def _on(table: sa.Table | None) -> str:
    return f" on {table.name}" if table is not None else ""


def _columns(names: Iterable[Any]) -> str:
    return ", ".join(str(name) for name in names)


def _table(item: Sequence[Any], where: str) -> Difference:
    table: sa.Table = item[1]
    if item[0] == "add_table":
        return Difference(f"table {table.name}", f"is in the manifest but not in {where}")
    return Difference(f"table {table.name}", f"is in {where} but not in the manifest")


def _column(item: Sequence[Any], where: str) -> Difference:
    _, _, table_name, column = item
    if item[0] == "add_column":
        return Difference(f"{table_name}.{column.name}", f"is in the manifest but not in {where}")
    return Difference(f"{table_name}.{column.name}", f"is in {where} but not in the manifest")


def _index(item: Sequence[Any], where: str) -> Difference:
    index: sa.Index = item[1]
    kind = "unique index" if index.unique else "index"
    subject = f"{kind} {index.name} ({_columns(c.name for c in index.columns) or _columns(index.expressions)})"
    if item[0] == "add_index":
        return Difference(subject + _on(index.table), f"is missing from {where}")
    return Difference(subject + _on(index.table), f"is in {where} but not in the manifest")


def _constraint(item: Sequence[Any], where: str) -> Difference:
    constraint: sa.Constraint = item[1]
    if isinstance(constraint, sa.ForeignKeyConstraint):
        target = constraint.referred_table.name if constraint.elements else "?"
        subject = f"foreign key {constraint.name} ({_columns(constraint.column_keys)} -> {target})"
    else:
        kind = "unique constraint" if isinstance(constraint, sa.UniqueConstraint) else "constraint"
        columns = constraint.columns.keys() if isinstance(constraint, ColumnCollectionConstraint) else []
        subject = f"{kind} {constraint.name} ({_columns(columns)})"
    parent = getattr(constraint, "parent", None)
    subject += _on(parent if isinstance(parent, sa.Table) else None)
    if item[0].startswith("add"):
        return Difference(subject, f"is missing from {where}")
    return Difference(subject, f"is in {where} but not in the manifest")


def _sql(value: Any) -> str:
    """A type or a server default as SQL text, for the message."""
    if value is None:
        return "none"
    if isinstance(value, sa.DefaultClause):
        value = value.arg
    if isinstance(value, sa.TextClause):
        return value.text
    try:
        return str(value.compile()) if hasattr(value, "compile") else str(value)
    except SQLAlchemyError:  # a construct only a real dialect spells (random_uuid())
        return type(value).__name__


def _modified(item: Sequence[Any], where: str) -> Difference:
    kind, _, table_name, column_name, _, existing, wanted = item
    subject = f"{table_name}.{column_name}"
    if kind == "modify_nullable":
        spelled = {True: "nullable", False: "NOT NULL"}
        manifest, other = spelled[bool(wanted)], spelled[bool(existing)]
        return Difference(subject, f"is {manifest} in the manifest but {other} in {where}")
    what = {"modify_type": "type", "modify_default": "default", "modify_comment": "comment"}[kind]
    if kind == "modify_comment":
        return Difference(subject, f"has a different comment in the manifest than in {where}")
    return Difference(subject, f"has {what} {_sql(wanted)} in the manifest but {_sql(existing)} in {where}")


def _table_comment(item: Sequence[Any], where: str) -> Difference:
    return Difference(f"table {item[1].name}", f"has a different comment in the manifest than in {where}")


_DESCRIBERS: Final[dict[str, Callable[[Sequence[Any], str], Difference]]] = {
    "add_table": _table,
    "remove_table": _table,
    "add_column": _column,
    "remove_column": _column,
    "add_index": _index,
    "remove_index": _index,
    "add_constraint": _constraint,
    "remove_constraint": _constraint,
    "add_fk": _constraint,
    "remove_fk": _constraint,
    "modify_nullable": _modified,
    "modify_type": _modified,
    "modify_default": _modified,
    "modify_comment": _modified,
    "add_table_comment": _table_comment,
    "remove_table_comment": _table_comment,
}
