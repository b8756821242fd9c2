"""What adopting a database takes: the manifest's schema against the live catalog, as steps in plain words.

Pure: the live side comes in as a :class:`~flux_dao.store.adopt.catalog.LiveSchema`, the wanted side as the
manifest-built ``MetaData``. Each difference becomes one :class:`Step`: what it is in words a person can check, its
group (safe to change, changes data representation, would lose data, cannot be done automatically, left as it is),
the SQL that closes it, and, where existing rows could make it lose data, a :class:`Guard`: the query that finds
those rows. Nothing is ever
dropped but what is recreated (a view over a converted column) or replaced by the manifest's own (a CHECK, a
foreign key); columns, tables and rows stay.
"""

import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import visitors

from flux_dao.store.adopt.catalog import LiveColumn, LiveIndex, LiveSchema, LiveTable, LiveView
from flux_dao.store.migrations import spelled_default

__all__ = ("Guard", "Kind", "Phase", "Plan", "Step", "enum_values", "plan_adoption", "postgres_type")

DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]
_QUOTE: Final = DIALECT.identifier_preparer.quote


class Kind(enum.StrEnum):
    """The groups the plan is printed in."""

    SAFE = "safe to change"
    REPRESENTATION = "changes data representation"
    LOSES_DATA = "would lose data"
    BLOCKED = "cannot be done automatically"
    """A name another object holds, a primary key on other columns, a table the role may not alter: refused."""
    KEPT = "left as it is"


class Phase(enum.IntEnum):
    """When a statement runs in the revision: views go first and come back last, constraints after the columns."""

    DROP_VIEWS = 0
    DROP_CONSTRAINTS = 1
    CREATE_TABLES = 2
    ADD_COLUMNS = 3
    CONVERT = 4
    FILL = 5
    COLUMNS = 6
    CONSTRAINTS = 7
    INDEXES = 8
    VIEWS = 9


@dataclass(frozen=True)
class Guard:
    """The rows of ``table`` that would block a step (``condition`` is an SQL WHERE), and what is wrong with them."""

    table: str
    condition: str
    problem: str
    column: str | None = None
    """Show the offending values of this column too."""
    reads: tuple[str, ...] = ()
    """The columns ``condition`` reads: a guard on a column the plan adds has no rows to check."""
    ids: bool = True
    """Whether the table has an ``id`` to show sample rows by."""


@dataclass(frozen=True)
class Step:
    """One difference and what closes it."""

    kind: Kind
    subject: str
    words: str
    sql: tuple[tuple[Phase, str], ...] = ()
    guard: Guard | None = None

    def __str__(self) -> str:
        return f"{self.subject}: {self.words}"


@dataclass(frozen=True)
class Plan:
    """Every step, in the order found; :attr:`statements` orders their SQL by phase."""

    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())
    """Things the plan does not change but a person adopting the database must know (RLS, other roles)."""

    def of(self, kind: Kind) -> list[Step]:
        """The steps of one group."""
        return [step for step in self.steps if step.kind is kind]

    @property
    def statements(self) -> list[str]:
        """The SQL of every step that changes something, phase by phase."""
        ordered = sorted(
            ((phase, position, sql) for position, step in enumerate(self.steps) for phase, sql in step.sql),
            # views are dropped in the reverse of the order they are recreated in: dependents first
            key=lambda item: (item[0], -item[1] if item[0] is Phase.DROP_VIEWS else item[1]),
        )
        return [sql for _, _, sql in ordered]


def postgres_type(type_: sa.types.TypeEngine[Any]) -> str:
    """A column type as PostgreSQL's ``format_type`` spells it, to compare with the live catalog."""
    compiled = type_.compile(dialect=DIALECT).lower()
    compiled = re.sub(r"^varchar", "character varying", compiled)
    return {"float": "double precision", "timestamptz": "timestamp with time zone"}.get(compiled, compiled)


def plan_adoption(live: LiveSchema, metadata: sa.MetaData) -> Plan:
    """The steps that bring the tables in ``live`` to ``metadata``'s (the manifest's) schema."""
    steps: list[Step] = []
    converted: set[tuple[str, str]] = set()
    for table in metadata.sorted_tables:
        existing = live.tables.get(table.name)
        if existing is None:
            steps.append(_create_table(table, live))
            continue
        changes = [_fit_guard(step, existing) for step in _table_steps(table, existing, live)]
        if table.name not in live.altered_by_role and any(step.sql for step in changes):
            words = f"is owned by {existing.owner}, and {live.role} may not alter it: run adopt as its owner"
            steps.append(Step(Kind.BLOCKED, f"table {table.name}", words))
        for step in changes:
            if any(phase is Phase.CONVERT for phase, _ in step.sql):
                converted.add((table.name, step.subject.rsplit(".", 1)[-1]))
            steps.append(step)
    steps += _policy_steps(live, converted)
    steps += _view_steps(live.views, converted, set(live.tables))
    return Plan(tuple(steps), tuple(_notes(live, metadata)))


def _fit_guard(step: Step, live: LiveTable) -> Step:
    """A guard on a column the plan adds goes (its rows hold the default); one on a table without ``id`` shows none."""
    guard = step.guard
    if guard is None:
        return step
    if any(column not in live.columns for column in guard.reads):
        return replace(step, guard=None)
    return replace(step, guard=replace(guard, ids="id" in live.columns))


def _taken(name: str, live: LiveSchema, table: LiveTable | None = None, *, freed: Iterable[str] = ()) -> Step | None:
    """A refusal when ``name`` (a new index, constraint or table) is held by another object; None when it is free.

    ``freed``: names the same step drops or renames away first.
    """
    holders = set(live.relations)
    if table is not None:
        holders |= {c.name for c in table.checks} | {k.name for k in table.foreign_keys}
        holders |= {i.constraint for i in table.indexes if i.constraint}
    if name not in holders.difference(freed):
        return None
    words = f"the database already has another object named {name}: rename or drop it, then adopt again"
    return Step(Kind.BLOCKED, name, words)


def _create_table(table: sa.Table, live: LiveSchema) -> Step:
    if not live.can_create:
        words = f"is missing, and {live.role} may not create tables in schema {live.schema}"
        return Step(Kind.BLOCKED, f"table {table.name}", words)
    names = [table.name, *(str(i.name) for i in table.indexes)]
    names += [str(c.name) for c in table.constraints if isinstance(c, sa.PrimaryKeyConstraint | sa.UniqueConstraint)]
    for name in names:
        if (clash := _taken(name, live)) is not None:
            return replace(clash, subject=f"table {table.name}")
    sql = [(Phase.CREATE_TABLES, _compiled(sa.schema.CreateTable(table)))]
    sql += [(Phase.CREATE_TABLES, _comment(table.name, c.name, c.comment)) for c in table.columns if c.comment]
    sql += [(Phase.CREATE_TABLES, _compiled(sa.schema.CreateIndex(index))) for index in _sorted_indexes(table)]
    return Step(Kind.SAFE, f"table {table.name}", "created (the database does not have it yet)", tuple(sql))


def _table_steps(table: sa.Table, live: LiveTable, schema: LiveSchema) -> Iterator[Step]:
    for column in table.columns:
        found = live.columns.get(column.name)
        twin = next((n for n in live.columns if n.lower() == column.name.lower() and n not in table.columns), None)
        if found is None and twin is not None:
            words = (
                f'is missing, and the database has "{twin}", which differs only in case: if it is the same column, '
                f'rename it (ALTER TABLE {_QUOTE(table.name)} RENAME COLUMN "{twin}" TO {_QUOTE(column.name)}) '
                "and adopt again"
            )
            yield Step(Kind.BLOCKED, f"{table.name}.{column.name}", words)
        elif found is None:
            yield _add_column(table, column, live)
        else:
            yield from _column_steps(table, column, found)
    for name, found in live.columns.items():
        if name not in table.columns:
            yield from _extra_column(table, found)
    yield from _primary_key(table, live, schema)
    yield from _check_steps(table, live, schema)
    yield from _foreign_key_steps(table, live, schema)
    yield from _index_steps(table, live, schema)
    for name, definition in live.triggers:
        if not name.startswith("flux_dao_"):
            yield Step(
                Kind.KEPT, f"trigger {name} on {table.name}", f"kept; it runs on flux-dao's writes too ({definition})"
            )


def _add_column(table: sa.Table, column: sa.Column[Any], live: LiveTable) -> Step:
    subject = f"{table.name}.{column.name}"
    spec = _compiled(sa.schema.CreateColumn(column))
    sql = [(Phase.ADD_COLUMNS, f"ALTER TABLE {_QUOTE(table.name)} ADD COLUMN {spec}")]
    if column.comment:
        sql.append((Phase.COLUMNS, _comment(table.name, column.name, column.comment)))
    default = _target_default(column)
    if not column.nullable and default is None:
        guard = Guard(table.name, "true", f"exist, and {column.name} is required with no default to give them")
        return Step(Kind.BLOCKED, subject, "is required and has no default: it cannot be added", (), guard)
    words = f"added as {postgres_type(column.type)}"
    if default is not None:
        words += f" with default {default}, which existing rows get"
    if column.name == "updated_at" and "created_at" in live.columns:
        fill = f"UPDATE {_QUOTE(table.name)} SET updated_at = created_at WHERE created_at IS NOT NULL"
        sql.append((Phase.FILL, fill))
        words = f"added as {postgres_type(column.type)}; existing rows take their created_at"
    return Step(Kind.SAFE, subject, words, tuple(sql))


def _column_steps(table: sa.Table, column: sa.Column[Any], live: LiveColumn) -> Iterator[Step]:
    subject, alter = (
        f"{table.name}.{column.name}",
        f"ALTER TABLE {_QUOTE(table.name)} ALTER COLUMN {_QUOTE(column.name)}",
    )
    wanted = postgres_type(column.type)
    if live.type != wanted:
        yield _conversion(table.name, column, live, wanted)
    if live.nullable and not column.nullable:
        guard = Guard(
            table.name, f"{_QUOTE(column.name)} IS NULL", f"have no {column.name} (NULL)", None, (column.name,)
        )
        words = "becomes NOT NULL (the manifest requires a value); no row lacks one"
        yield Step(Kind.SAFE, subject, words, ((Phase.COLUMNS, f"{alter} SET NOT NULL"),), guard)
    elif not live.nullable and column.nullable:
        yield Step(
            Kind.SAFE,
            subject,
            "accepts NULL (the manifest makes it optional)",
            ((Phase.COLUMNS, f"{alter} DROP NOT NULL"),),
        )
    if (column.comment or None) != live.comment:
        sql = _comment(table.name, column.name, column.comment)
        words = f"comment set to the manifest's description: {sql.rsplit(' IS ', 1)[1]}"
        yield Step(Kind.SAFE, subject, words, ((Phase.COLUMNS, sql),))
    target = _target_default(column)
    if _same_default(live.default, target):
        return
    if target is None:
        words, sql = f"loses its default {live.default} (flux-dao always sends a value)", f"{alter} DROP DEFAULT"
    else:
        words, sql = f"default {live.default or 'none'} becomes {target}", f"{alter} SET DEFAULT {target}"
    yield Step(Kind.SAFE, subject, words, ((Phase.COLUMNS, sql),))


_TEXT: Final = re.compile(r"^(text|character varying(\(\d+\))?|character\(\d+\))$")
_UUID_TEXT: Final = "^[{]?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}[}]?$"
"""Text PostgreSQL reads as a uuid (with or without hyphens and braces, any case)."""
_WIDER: Final = {
    ("smallint", "integer"),
    ("smallint", "bigint"),
    ("integer", "bigint"),
    ("smallint", "double precision"),
    ("integer", "double precision"),
    ("real", "double precision"),
}


def _conversion(table: str, target: sa.Column[Any], live: LiveColumn, want: str) -> Step:
    """The step that changes a column's type, with the data conversion it takes, or a refusal when there is none."""
    column, have = target.name, live.type
    subject, name = f"{table}.{column}", _QUOTE(column)
    alter = f"ALTER TABLE {_QUOTE(table)} ALTER COLUMN {name} TYPE {want}"
    reads = (column,)
    if live.enum and _TEXT.match(want):
        # the old default ('active'::goal_status) cannot follow the type: it goes first, the manifest's comes back
        default = _target_default(target)
        sql = [(Phase.CONVERT, f"ALTER TABLE {_QUOTE(table)} ALTER COLUMN {name} DROP DEFAULT")]
        sql.append((Phase.CONVERT, f"{alter} USING {name}::text"))
        if default is not None:
            sql.append((Phase.COLUMNS, f"ALTER TABLE {_QUOTE(table)} ALTER COLUMN {name} SET DEFAULT {default}"))
        words = f"the enum type {have} becomes {want} (the same labels, as text; the CHECK below keeps the set)"
        return Step(Kind.REPRESENTATION, subject, words, tuple(sql))
    if _TEXT.match(have) and want == "uuid":
        condition = f"{name} IS NOT NULL AND {name} !~* '{_UUID_TEXT}'"
        guard = Guard(table, condition, f"have a {column} that is not a UUID", column, reads)
        words = f"{have} becomes uuid; every value is a UUID"
        return Step(Kind.REPRESENTATION, subject, words, ((Phase.CONVERT, f"{alter} USING {name}::uuid"),), guard)
    if have.endswith("[]") and want == "jsonb":
        words = (
            f"{have} becomes JSON (jsonb): each array is kept as a JSON array of the same elements in the same order "
            f'({{a,b}} becomes ["a", "b"]), converted with to_jsonb'
        )
        return Step(Kind.REPRESENTATION, subject, words, ((Phase.CONVERT, f"{alter} USING to_jsonb({name})"),))
    if have == "json" and want == "jsonb":
        words = "json becomes jsonb: the same values, without whitespace and with duplicate keys merged"
        return Step(Kind.REPRESENTATION, subject, words, ((Phase.CONVERT, f"{alter} USING {name}::jsonb"),))
    if have == "timestamp without time zone" and want == "timestamp with time zone":
        words = "timestamp without time zone becomes timestamp with time zone: each value is read as UTC"
        utc = f"{alter} USING {name} AT TIME ZONE 'UTC'"
        return Step(Kind.REPRESENTATION, subject, words, ((Phase.CONVERT, utc),))
    limit = re.fullmatch(r"character varying\((\d+)\)", want)
    if limit and _TEXT.match(have):
        guard = Guard(
            table, f"length({name}) > {limit[1]}", f"have a value longer than {limit[1]} characters", None, reads
        )
        words = f"{have} becomes {want}; every value fits"
        return Step(Kind.SAFE, subject, words, ((Phase.CONVERT, alter),), guard)
    if (want == "text" and _TEXT.match(have)) or (have, want) in _WIDER:
        return Step(Kind.SAFE, subject, f"{have} becomes {want}, which holds every value", ((Phase.CONVERT, alter),))
    guard = Guard(table, "true", f"would need converting from {have} to {want}", None, reads)
    words = f"is {have} and the manifest needs {want}; adopt knows no conversion that keeps every value"
    return Step(Kind.LOSES_DATA, subject, words, (), guard)


def _extra_column(table: sa.Table, live: LiveColumn) -> Iterator[Step]:
    subject = f"{table.name}.{live.name}"
    if not live.nullable and live.default is None:
        sql = f"ALTER TABLE {_QUOTE(table.name)} ALTER COLUMN {_QUOTE(live.name)} DROP NOT NULL"
        words = "is not in the manifest; kept, but made to accept NULL, since flux-dao's inserts never set it"
        yield Step(Kind.SAFE, subject, words, ((Phase.COLUMNS, sql),))
    else:
        yield Step(Kind.KEPT, subject, "is not in the manifest; kept (flux-dao neither reads nor writes it)")


def _primary_key(table: sa.Table, live: LiveTable, schema: LiveSchema) -> Iterator[Step]:
    wanted = table.primary_key
    columns = tuple(c.name for c in wanted.columns)
    found = next((index for index in live.indexes if index.primary), None)
    name, subject = _constraint_name(wanted), f"primary key on {table.name}"
    if found is None:
        if (clash := _taken(name, schema, live)) is not None:
            yield replace(clash, subject=subject)
            return
        problem = f"share an {', '.join(columns)} or have none"
        condition = _duplicates(table.name, columns) + f" OR {_QUOTE(columns[0])} IS NULL"
        sql = f"ALTER TABLE {_QUOTE(table.name)} ADD CONSTRAINT {_QUOTE(name)} PRIMARY KEY ({', '.join(columns)})"
        guard = Guard(table.name, condition, problem, None, columns)
        yield Step(Kind.SAFE, subject, "added on " + ", ".join(columns), ((Phase.CONSTRAINTS, sql),), guard)
    elif found.columns != columns:
        words = f"is on {', '.join(found.columns)}; the manifest's is on {', '.join(columns)}: change it by hand"
        yield Step(Kind.BLOCKED, subject, words)
    elif found.constraint and found.constraint != name:
        yield _renamed_constraint(table.name, found.constraint, name, "primary key", schema, live)


_LITERAL: Final = r"'(?:[^']|'')*'(?:::[\w ]+)?"
"""A quoted value with its cast, as PostgreSQL prints it: ``'active'::text``, ``'it''s'::character varying``."""
_LEFT: Final = r"^CHECK \(+\(*(?P<column>\"?\w+\"?)\)*(?:::[\w ]+)?"
_ANY: Final = re.compile(_LEFT + rf" = ANY \(+ARRAY\[(?P<items>(?:{_LITERAL}(?:, )?)+)\](?:\)::[\w ]+\[\])?\)+$")
_ONE: Final = re.compile(_LEFT + rf" = (?P<items>{_LITERAL})\)+$")
_ITEM: Final = re.compile(r"^'((?:[^']|'')*)'(?:::[\w ]+)?$")


def enum_values(definition: str, column: str) -> frozenset[str] | None:
    """The values of a CHECK that reads ``column IN (...)``, as PostgreSQL spells one back; None for any other CHECK.

    PostgreSQL turns ``status IN ('a', 'b')`` into ``CHECK ((status = ANY (ARRAY['a'::text, 'b'::text])))`` (with
    casts around a varchar column) and a one-value list into ``CHECK ((status = 'a'::text))``. Nothing else counts:
    ``NOT IN``, ``length(status) < 20`` or an OR of other things are different rules.
    """
    definition = definition.removesuffix(" NOT VALID")
    match = _ANY.match(definition) or _ONE.match(definition)
    if match is None or match["column"].strip('"') != column:
        return None
    values = []
    for item in match["items"].split(", "):
        literal = _ITEM.match(item.strip())
        if literal is None:
            return None
        values.append(literal[1].replace("''", "'"))
    return frozenset(values)


def _check_steps(table: sa.Table, live: LiveTable, schema: LiveSchema) -> Iterator[Step]:
    covered: set[str] = set()
    for check in _checks(table):
        column = _check_column(check)
        name, subject = _constraint_name(check), f"{table.name}.{column}"
        expression = _compiled(check.sqltext)
        wanted = _literals(expression)  # the manifest's own ``status IN ('a', 'b')``
        enums = [c for c in live.checks if c.columns == (column,) and enum_values(c.definition, column) is not None]
        covered.update(c.name for c in enums)
        same = [c for c in enums if c.validated and enum_values(c.definition, column) == wanted]
        if same and len(enums) == 1:
            if same[0].name != name:
                yield _renamed_constraint(table.name, same[0].name, name, f"CHECK on {column}", schema, live)
            continue
        if (clash := _taken(name, schema, live, freed=(c.name for c in enums))) is not None:
            yield replace(clash, subject=subject)
            continue
        sql = [(Phase.DROP_CONSTRAINTS, _drop_constraint(table.name, c.name)) for c in enums]
        add = f"ALTER TABLE {_QUOTE(table.name)} ADD CONSTRAINT {_QUOTE(name)} CHECK ({expression})"
        sql.append((Phase.CONSTRAINTS, add))
        allowed = ", ".join(sorted(wanted))
        had = "; ".join(_allowed(c.definition, column, c.validated) for c in enums) or "any value"
        words = f"CHECK: the database allows {had}; the manifest allows {allowed}; every row has one of those"
        condition = f"{_QUOTE(column)} IS NOT NULL AND NOT ({expression})"
        guard = Guard(table.name, condition, f"have a {column} outside {allowed}", column, (column,))
        yield Step(Kind.SAFE, subject, words, tuple(sql), guard)
    for other in live.checks:
        if other.name not in covered:
            yield Step(Kind.KEPT, f"constraint {other.name} on {table.name}", f"kept: {other.definition}")


def _allowed(definition: str, column: str, validated: bool) -> str:
    values = ", ".join(sorted(enum_values(definition, column) or ()))
    return values + (" (not validated: older rows were never checked)" if not validated else "")


_ACTS: Final = {
    "CASCADE": "deleting the parent deletes these rows too",
    "SET NULL": "deleting the parent clears {column} in these rows",
    "RESTRICT": "the parent cannot be deleted while these rows point at it",
    "NO ACTION": "the parent cannot be deleted while these rows point at it",
}


def _foreign_key_steps(table: sa.Table, live: LiveTable, schema: LiveSchema) -> Iterator[Step]:
    matched: set[str] = set()
    for key in sorted(table.foreign_key_constraints, key=lambda k: tuple(k.column_keys)):
        columns, target = tuple(key.column_keys), key.referred_table.name
        name, on_delete = _constraint_name(key), (key.ondelete or "NO ACTION").upper()
        subject = f"{table.name}.{', '.join(columns)}"
        same = [fk for fk in live.foreign_keys if fk.columns == columns and fk.target == target]
        matched.update(fk.name for fk in same)
        add = (Phase.CONSTRAINTS, _compiled(sa.schema.AddConstraint(key)))
        if len(same) == 1 and same[0].on_delete == on_delete:
            if same[0].name != name:
                yield _renamed_constraint(table.name, same[0].name, name, f"foreign key to {target}", schema, live)
            continue
        if (clash := _taken(name, schema, live, freed=(fk.name for fk in same))) is not None:
            yield replace(clash, subject=subject)
            continue
        drops = tuple((Phase.DROP_CONSTRAINTS, _drop_constraint(table.name, fk.name)) for fk in same)
        act = _ACTS[on_delete].format(column=", ".join(columns))
        if same:
            had = " and ".join(fk.on_delete for fk in same)
            words = f"foreign key to {target}: ON DELETE {had} becomes {on_delete} ({act})"
            yield Step(Kind.SAFE, subject, words, (*drops, add))
            continue
        column = _QUOTE(columns[0])
        parent = f"SELECT 1 FROM {_QUOTE(target)} AS parent WHERE parent.id = {_QUOTE(table.name)}.{column}"
        condition = f"{column} IS NOT NULL AND NOT EXISTS ({parent})"
        guard = Guard(table.name, condition, f"point at a {target} row that does not exist", None, columns)
        words = f"foreign key to {target} added, ON DELETE {on_delete} ({act}); every row points at an existing one"
        yield Step(Kind.SAFE, subject, words, (add,), guard)
    for fk in live.foreign_keys:
        if fk.name not in matched:
            words = f"kept: ({', '.join(fk.columns)}) -> {fk.target}, ON DELETE {fk.on_delete}"
            yield Step(Kind.KEPT, f"foreign key {fk.name} on {table.name}", words)


def _index_steps(table: sa.Table, live: LiveTable, schema: LiveSchema) -> Iterator[Step]:
    free = [index for index in live.indexes if not index.primary]
    used: set[str] = set()

    def take(columns: tuple[str, ...], *, unique: bool, constraint: bool | None) -> LiveIndex | None:
        for index in free:
            if index.name in used or not index.plain or index.columns != columns or index.unique != unique:
                continue
            if constraint is None or (index.constraint is not None) == constraint:
                used.add(index.name)
                return index
        return None

    for unique in sorted((c for c in table.constraints if isinstance(c, sa.UniqueConstraint)), key=_constraint_name):
        yield from _unique_steps(table, unique, take, schema, live)
    for index in _sorted_indexes(table):
        columns = tuple(c.name for c in index.columns)
        found = take(columns, unique=bool(index.unique), constraint=False)
        if found is None or found.name != index.name:
            yield _index_step(table, index, found, schema)
    for extra in free:
        if extra.name not in used:
            words = f"not in the manifest; kept ({extra.definition})"
            yield Step(Kind.KEPT, f"index {extra.name} on {table.name}", words)


def _index_step(table: sa.Table, index: sa.Index, found: LiveIndex | None, schema: LiveSchema) -> Step:
    """Create the manifest's index, or rename the database's one on the same columns to its name."""
    columns = tuple(c.name for c in index.columns)
    subject = f"index {index.name} ({', '.join(columns)}) on {table.name}"
    if (clash := _taken(str(index.name), schema)) is not None:
        return replace(clash, subject=subject)
    if found is not None:
        sql = f"ALTER INDEX {_QUOTE(found.name)} RENAME TO {_QUOTE(str(index.name))}"
        words = f"the database's {found.name} on the same columns, renamed (later revisions use the manifest's name)"
        return Step(Kind.SAFE, subject, words, ((Phase.INDEXES, sql),))
    guard = None
    if index.unique:
        guard = Guard(table.name, _duplicates(table.name, columns), f"share a {', '.join(columns)}", None, columns)
    return Step(Kind.SAFE, subject, "created", ((Phase.INDEXES, _compiled(sa.schema.CreateIndex(index))),), guard)


def _unique_steps(
    table: sa.Table, unique: sa.UniqueConstraint, take: Any, schema: LiveSchema, live: LiveTable
) -> Iterator[Step]:
    columns = tuple(c.name for c in unique.columns)
    name = _constraint_name(unique)
    subject = f"unique {', '.join(columns)} on {table.name}"
    found = take(columns, unique=True, constraint=True) or take(columns, unique=True, constraint=False)
    if found is not None and found.constraint == name:
        return
    if found is not None and found.constraint is not None:
        what = f"unique constraint on {', '.join(columns)}"
        yield _renamed_constraint(table.name, found.constraint, name, what, schema, live)
        return
    if (clash := _taken(name, schema, live)) is not None:
        yield replace(clash, subject=subject)
        return
    if found is not None:
        sql = f"ALTER TABLE {_QUOTE(table.name)} ADD CONSTRAINT {_QUOTE(name)} UNIQUE USING INDEX {_QUOTE(found.name)}"
        words = f"the database's unique index {found.name} becomes the constraint {name}"
        yield Step(Kind.SAFE, subject, words, ((Phase.CONSTRAINTS, sql),))
        return
    guard = Guard(table.name, _duplicates(table.name, columns), f"share a {', '.join(columns)}", columns[0], columns)
    sql = _compiled(sa.schema.AddConstraint(unique))
    yield Step(Kind.SAFE, subject, "added; no two rows share a value", ((Phase.CONSTRAINTS, sql),), guard)


def _policy_steps(live: LiveSchema, converted: set[tuple[str, str]]) -> list[Step]:
    """Policies whose expressions read a converted column are dropped first and recreated last, as they were."""
    steps = []
    for table in live.tables.values():
        for policy in table.policies:
            reads = sorted(f"{s}.{c}" for s, c in policy.reads & converted)
            if not reads:
                continue
            on = f"{_QUOTE(policy.name)} ON {_QUOTE(table.name)}"
            create = (
                f"CREATE POLICY {on} AS {'PERMISSIVE' if policy.permissive else 'RESTRICTIVE'} FOR {policy.command}"
            )
            create += " TO " + ", ".join(r if r.lower() == "public" else _QUOTE(r) for r in policy.roles)
            create += f" USING ({policy.using})" if policy.using else ""
            create += f" WITH CHECK ({policy.check})" if policy.check else ""
            sql = ((Phase.DROP_VIEWS, f"DROP POLICY {on}"), (Phase.VIEWS, create))
            words = f"reads {', '.join(reads)}: dropped before the conversion, recreated after it as it was"
            steps.append(Step(Kind.REPRESENTATION, f"policy {policy.name} on {table.name}", words, sql))
    return steps


def _view_steps(views: Mapping[str, LiveView], converted: set[tuple[str, str]], tables: set[str]) -> list[Step]:
    """Views over a converted column (or over such a view) are dropped first and recreated last.

    PostgreSQL refuses to change the type of a column a view reads. They are recreated in dependency order (and
    dropped in the reverse, see :attr:`Plan.statements`) from the definitions the catalog gave.
    """
    affected: set[str] = set()
    while True:
        more = {
            v.name
            for v in views.values()
            if v.name not in affected and (v.reads & converted or any(s in affected for s, _ in v.reads))
        }
        if not more:
            break
        affected |= more
    ordered: list[str] = []
    while len(ordered) < len(affected):  # a view after every affected view it reads
        ready = sorted(
            name
            for name in affected - set(ordered)
            if all(source in ordered or source not in affected for source, _ in views[name].reads)
        )
        ordered += ready or sorted(affected - set(ordered))  # a cycle cannot happen among views; never loop
    steps: list[Step] = []
    for name in ordered:
        view = views[name]
        kind = "materialized view" if view.materialized else "view"
        reads = ", ".join(sorted(f"{s}.{c}" for s, c in view.reads if (s, c) in converted or s in affected))
        sql = [(Phase.DROP_VIEWS, f"DROP {kind.upper()} {_QUOTE(name)}")]
        sql += [(Phase.VIEWS, statement) for statement in _recreate(view, kind)]
        words = f"reads {reads}: dropped before the conversion, recreated after it (definition, indexes, owner, grants)"
        steps.append(Step(Kind.REPRESENTATION, f"{kind} {name}", words, tuple(sql)))
    for view in views.values():
        sources = sorted({source for source, _ in view.reads} & tables)
        if view.name not in affected and sources:
            kind = "materialized view" if view.materialized else "view"
            steps.append(Step(Kind.KEPT, f"{kind} {view.name}", f"reads {', '.join(sources)}; kept as it is"))
    return steps


def _recreate(view: LiveView, kind: str) -> Iterator[str]:
    """The view as it was: definition, options, data, indexes, owner, grants, comment, triggers, rules, columns."""
    definition = view.definition.strip().rstrip(";")
    options = f" WITH ({', '.join(view.options)})" if view.options else ""
    data = (" WITH DATA" if view.populated else " WITH NO DATA") if view.materialized else ""
    yield f"CREATE {kind.upper()} {_QUOTE(view.name)}{options} AS {definition}{data}"
    yield from view.indexes
    yield f"ALTER {kind.upper()} {_QUOTE(view.name)} OWNER TO {_QUOTE(view.owner)}"
    for grantee, privilege, grantable in view.grants:
        to = grantee if grantee == "PUBLIC" else _QUOTE(grantee)
        yield f"GRANT {privilege} ON {_QUOTE(view.name)} TO {to}" + (" WITH GRANT OPTION" if grantable else "")
    if view.comment:
        yield f"COMMENT ON {kind.upper()} {_QUOTE(view.name)} IS {_literal(view.comment)}"
    yield from view.extras


def _notes(live: LiveSchema, metadata: sa.MetaData) -> Iterator[str]:
    secured = [t for t in live.tables.values() if t.name in metadata.tables and t.row_security]
    if not secured:
        return
    for table in secured:
        policies = "; ".join(
            f"{p.name} ({p.command}"
            + (f", USING {p.using}" if p.using else "")
            + (f", CHECK {p.check}" if p.check else "")
            + ")"
            for p in table.policies
        )
        yield f"row-level security is on for {table.name}: " + (policies or "no policies (it denies every row)")
    owners = {t.owner for t in secured}
    if live.role_bypasses_rls:
        yield f"flux-dao connects as {live.role}, a superuser or BYPASSRLS role: the policies do not apply to it"
    elif owners == {live.role} and not any(t.forced_row_security for t in secured):
        yield f"flux-dao connects as {live.role}, the tables' owner: the policies do not apply to it (not FORCEd)"
    else:
        yield (
            f"flux-dao connects as {live.role}, to which the policies apply: it will see and change only the rows "
            "they allow; connect as the tables' owner or a BYPASSRLS role to serve every row"
        )


def _checks(table: sa.Table) -> list[sa.CheckConstraint]:
    return sorted((c for c in table.constraints if isinstance(c, sa.CheckConstraint)), key=_constraint_name)


def _check_column(check: sa.CheckConstraint) -> str:
    names = {
        element.name
        for element in visitors.iterate(check.sqltext)
        if isinstance(element, sa.sql.expression.ColumnClause)
    }
    return names.pop() if len(names) == 1 else str(check.name)


def _sorted_indexes(table: sa.Table) -> list[sa.Index]:
    return sorted(table.indexes, key=lambda index: str(index.name))


def _constraint_name(constraint: sa.Constraint | sa.Index) -> str:
    """The name the naming convention gave (the one the migrations create)."""
    return str(constraint.name)


def _renamed_constraint(table: str, old: str, new: str, what: str, schema: LiveSchema, live: LiveTable) -> Step:
    if (clash := _taken(new, schema, live, freed=(old,))) is not None:
        return replace(clash, subject=f"{what} on {table}")
    sql = f"ALTER TABLE {_QUOTE(table)} RENAME CONSTRAINT {_QUOTE(old)} TO {_QUOTE(new)}"
    words = f"the database's {old} renamed {new} (later revisions use the manifest's name)"
    return Step(Kind.SAFE, f"{what} on {table}", words, ((Phase.CONSTRAINTS, sql),))


def _drop_constraint(table: str, name: str) -> str:
    return f"ALTER TABLE {_QUOTE(table)} DROP CONSTRAINT {_QUOTE(name)}"


def _duplicates(table: str, columns: Iterable[str]) -> str:
    listed = ", ".join(_QUOTE(c) for c in columns)
    return f"({listed}) IN (SELECT {listed} FROM {_QUOTE(table)} GROUP BY {listed} HAVING count(*) > 1)"


def _compiled(element: Any) -> str:
    return str(element.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})).strip()


def _comment(table: str, column: str, text: str | None) -> str:
    return f"COMMENT ON COLUMN {_QUOTE(table)}.{_QUOTE(column)} IS {_literal(text) if text else 'NULL'}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _literals(definition: str) -> frozenset[str]:
    """The quoted values an IN / = ANY check lists."""
    return frozenset(value.replace("''", "'") for value in re.findall(r"'((?:[^']|'')*)'", definition))


def _target_default(column: sa.Column[Any]) -> str | None:
    default = column.server_default
    if not isinstance(default, sa.DefaultClause):
        return None
    arg = default.arg
    if isinstance(arg, str):
        return _literal(arg)
    return _compiled(arg)


def _same_default(live: str | None, target: str | None) -> bool:
    """Compared as the drift checks compare them (``now()`` is not ``CURRENT_TIMESTAMP`` to them: it is set)."""
    return spelled_default(live) == spelled_default(target)
