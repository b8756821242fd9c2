"""What an existing PostgreSQL database holds, read from its catalog for ``flux-dao adopt``.

SQLAlchemy's inspector answers most of this, but not the parts adopting needs most: a foreign key's ON DELETE as
PostgreSQL spells it, which views read which column, row-level security and its policies, a view's owner and grants.
So this reads ``pg_catalog`` directly, in a handful of queries over the current schema, into plain values the
(pure) planner compares with the manifest.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = (
    "LiveCheck",
    "LiveColumn",
    "LiveForeignKey",
    "LiveIndex",
    "LivePolicy",
    "LiveSchema",
    "LiveTable",
    "LiveView",
    "read_catalog",
)

_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class LiveColumn:
    """One column: its type as ``format_type`` spells it (``text[]``, ``character varying(255)``)."""

    name: str
    type: str
    nullable: bool
    default: str | None
    comment: str | None = None


@dataclass(frozen=True)
class LiveCheck:
    """A CHECK constraint and the columns it reads."""

    name: str
    columns: tuple[str, ...]
    definition: str


@dataclass(frozen=True)
class LiveForeignKey:
    """A foreign key, with ON DELETE spelled as in SQL (``NO ACTION``, ``SET NULL``...)."""

    name: str
    columns: tuple[str, ...]
    target: str
    on_delete: str


@dataclass(frozen=True)
class LiveIndex:
    """An index; ``constraint`` names the primary key or unique constraint it backs, if any."""

    name: str
    columns: tuple[str, ...]
    unique: bool
    primary: bool
    constraint: str | None
    plain: bool
    """On columns only, without an expression or a WHERE: the kind the manifest declares."""
    definition: str


@dataclass(frozen=True)
class LivePolicy:
    """A row-level-security policy, in the words ``pg_policies`` gives."""

    name: str
    command: str
    roles: tuple[str, ...]
    using: str | None
    check: str | None
    permissive: bool = True
    reads: frozenset[tuple[str, str]] = frozenset()
    """(table, column) pairs its expressions read: PostgreSQL refuses to change such a column's type."""


@dataclass(frozen=True)
class LiveTable:
    """One table of the database and what hangs on it."""

    name: str
    owner: str
    columns: Mapping[str, LiveColumn]
    checks: tuple[LiveCheck, ...] = ()
    foreign_keys: tuple[LiveForeignKey, ...] = ()
    indexes: tuple[LiveIndex, ...] = ()
    row_security: bool = False
    forced_row_security: bool = False
    policies: tuple[LivePolicy, ...] = ()
    triggers: tuple[tuple[str, str], ...] = ()
    """(name, definition) of each trigger someone made (not PostgreSQL's internal ones)."""


@dataclass(frozen=True)
class LiveView:
    """A view or materialized view, with what recreating it takes."""

    name: str
    materialized: bool
    definition: str
    owner: str
    reads: frozenset[tuple[str, str]]
    """(relation, column) pairs it reads: a table's or another view's."""
    indexes: tuple[str, ...] = ()
    grants: tuple[tuple[str, str], ...] = ()
    """(grantee, privilege) pairs besides the owner's own."""
    comment: str | None = None


@dataclass(frozen=True)
class LiveSchema:
    """The tables (of the names asked for) and every view of the current schema, and who is connected."""

    schema: str
    tables: Mapping[str, LiveTable]
    views: Mapping[str, LiveView] = field(default_factory=dict)
    role: str = ""
    role_bypasses_rls: bool = False
    """A superuser or a role with BYPASSRLS: row-level security never applies to it."""


def _rows(connection: Connection, sql: str, **params: object) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in connection.execute(sa.text(sql), params)]


_COLUMNS = """
SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity,
       a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       col_description(c.oid, a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY(:tables)
ORDER BY c.relname, a.attnum
"""

_CONSTRAINTS = """
SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid),
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.pos),
       target.relname, con.confdeltype::text
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class target ON target.oid = con.confrelid
WHERE n.nspname = current_schema() AND c.relname = ANY(:tables) AND con.contype IN ('c', 'f')
ORDER BY c.relname, con.conname
"""

_INDEXES = """
SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary, con.conname,
       ix.indexprs IS NULL AND ix.indpred IS NULL, pg_get_indexdef(ix.indexrelid),
       ARRAY(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(num, pos)
             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.num ORDER BY k.pos)
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint con ON con.conindid = ix.indexrelid AND con.conrelid = t.oid AND con.contype IN ('p', 'u')
WHERE n.nspname = current_schema() AND t.relname = ANY(:tables)
ORDER BY t.relname, i.relname
"""

_POLICIES = """
SELECT p.tablename, p.policyname, p.cmd, p.roles::text[], p.qual, p.with_check, p.permissive = 'PERMISSIVE',
       ARRAY(SELECT ARRAY[source.relname::text, a.attname::text]
             FROM pg_policy pol
             JOIN pg_class t ON t.oid = pol.polrelid
             JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = pol.oid
                              AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
             JOIN pg_class source ON source.oid = d.refobjid
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE pol.polname = p.policyname AND t.relname = p.tablename
               AND t.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = p.schemaname))
FROM pg_policies p WHERE p.schemaname = current_schema() AND p.tablename = ANY(:tables)
ORDER BY p.tablename, p.policyname
"""

_TRIGGERS = """
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ANY(:tables) AND NOT t.tgisinternal
ORDER BY c.relname, t.tgname
"""

_VIEWS = """
SELECT v.relname, v.relkind = 'm', pg_get_viewdef(v.oid), pg_get_userbyid(v.relowner),
       obj_description(v.oid, 'pg_class'),
       ARRAY(SELECT pg_get_indexdef(ix.indexrelid) FROM pg_index ix WHERE ix.indrelid = v.oid ORDER BY ix.indexrelid),
       ARRAY(SELECT ARRAY[CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(acl.grantee) END,
                          acl.privilege_type]
             FROM aclexplode(v.relacl) acl WHERE acl.grantee <> v.relowner)
FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE n.nspname = current_schema() AND v.relkind IN ('v', 'm')
ORDER BY v.relname
"""

_VIEW_READS = """
SELECT DISTINCT v.relname, source.relname, a.attname
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace n ON n.oid = v.relnamespace
JOIN pg_class source ON source.oid = d.refobjid
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND n.nspname = current_schema() AND v.oid <> source.oid AND v.relkind IN ('v', 'm')
"""

_ROLE = "SELECT current_user, rolsuper OR rolbypassrls, current_schema() FROM pg_roles WHERE rolname = current_user"


def read_catalog(connection: Connection, tables: Iterable[str]) -> LiveSchema:
    """The database's tables named in ``tables`` (those that exist) and every view of the current schema."""
    names = sorted(tables)
    columns: dict[str, dict[str, LiveColumn]] = {}
    heads: dict[str, tuple[str, bool, bool]] = {}
    for table, owner, rls, forced, name, type_, nullable, default, comment in _rows(connection, _COLUMNS, tables=names):
        heads[str(table)] = (str(owner), bool(rls), bool(forced))
        column = LiveColumn(str(name), str(type_), bool(nullable), default, comment)
        columns.setdefault(str(table), {})[str(name)] = column
    checks: dict[str, list[LiveCheck]] = {}
    keys: dict[str, list[LiveForeignKey]] = {}
    for table, name, kind, definition, cols, target, on_delete in _rows(connection, _CONSTRAINTS, tables=names):
        if kind == "c":
            checks.setdefault(str(table), []).append(LiveCheck(str(name), tuple(cols), str(definition)))
        else:
            fk = LiveForeignKey(str(name), tuple(cols), str(target), _ON_DELETE[str(on_delete)])
            keys.setdefault(str(table), []).append(fk)
    indexes: dict[str, list[LiveIndex]] = {}
    for table, name, unique, primary, constraint, plain, definition, cols in _rows(connection, _INDEXES, tables=names):
        index = LiveIndex(str(name), tuple(cols), bool(unique), bool(primary), constraint, bool(plain), str(definition))
        indexes.setdefault(str(table), []).append(index)
    policies: dict[str, list[LivePolicy]] = {}
    for table, name, command, roles, using, check, permissive, read in _rows(connection, _POLICIES, tables=names):
        pairs = frozenset((str(source), str(column)) for source, column in read)
        policy = LivePolicy(str(name), str(command), tuple(roles), using, check, bool(permissive), pairs)
        policies.setdefault(str(table), []).append(policy)
    triggers: dict[str, list[tuple[str, str]]] = {}
    for table, name, definition in _rows(connection, _TRIGGERS, tables=names):
        triggers.setdefault(str(table), []).append((str(name), str(definition)))
    live_tables = {
        name: LiveTable(
            name=name,
            owner=heads[name][0],
            columns=columns[name],
            checks=tuple(checks.get(name, ())),
            foreign_keys=tuple(keys.get(name, ())),
            indexes=tuple(indexes.get(name, ())),
            row_security=heads[name][1],
            forced_row_security=heads[name][2],
            policies=tuple(policies.get(name, ())),
            triggers=tuple(triggers.get(name, ())),
        )
        for name in columns
    }
    reads: dict[str, set[tuple[str, str]]] = {}
    for view, source, column in _rows(connection, _VIEW_READS):
        reads.setdefault(str(view), set()).add((str(source), str(column)))
    views = {
        str(name): LiveView(
            name=str(name),
            materialized=bool(materialized),
            definition=str(definition),
            owner=str(owner),
            reads=frozenset(reads.get(str(name), ())),
            indexes=tuple(index_defs),
            grants=tuple((str(grantee), str(privilege)) for grantee, privilege in grants),
            comment=comment,
        )
        for name, materialized, definition, owner, comment, index_defs, grants in _rows(connection, _VIEWS)
    }
    role, bypasses, schema = _rows(connection, _ROLE)[0]
    return LiveSchema(str(schema), live_tables, views, str(role), bool(bypasses))
