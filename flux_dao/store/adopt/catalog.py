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
    enum: bool = False
    """Its type is a PostgreSQL enum (``CREATE TYPE ... AS ENUM``)."""


@dataclass(frozen=True)
class LiveCheck:
    """A CHECK constraint and the columns it reads."""

    name: str
    columns: tuple[str, ...]
    definition: str
    validated: bool = True
    """False for a CHECK added ``NOT VALID``: rows from before it may break it."""


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
    """The kind the manifest declares: a B-tree on columns only, ascending, default operator classes, no WHERE."""
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
    grants: tuple[tuple[str, str, bool], ...] = ()
    """(grantee, privilege, with grant option) besides the owner's own."""
    comment: str | None = None
    options: tuple[str, ...] = ()
    """Its ``WITH (...)`` options: ``security_invoker=true``, ``security_barrier=true``, ``check_option=local``."""
    populated: bool = True
    """False for a materialized view made ``WITH NO DATA`` and never refreshed."""
    extras: tuple[str, ...] = ()
    """Statements that give it back what hangs on it: INSTEAD OF triggers, rules, column comments and defaults."""


@dataclass(frozen=True)
class LiveSchema:
    """The tables (of the names asked for) and every view of the current schema, and who is connected."""

    schema: str
    tables: Mapping[str, LiveTable]
    views: Mapping[str, LiveView] = field(default_factory=dict)
    role: str = ""
    role_bypasses_rls: bool = False
    """A superuser or a role with BYPASSRLS: row-level security never applies to it."""
    relations: frozenset[str] = frozenset()
    """Every relation name of the schema (tables, views, indexes, sequences): one namespace for new indexes."""
    can_create: bool = True
    """Whether the role may create tables and indexes in the schema."""
    altered_by_role: frozenset[str] = frozenset()
    """Tables the role may ALTER: it owns them (or is a member of their owner's role) or is a superuser."""


def _rows(connection: Connection, sql: str, **params: object) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in connection.execute(sa.text(sql), params)]


_COLUMNS = """
SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity,
       a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       col_description(c.oid, a.attnum), ty.typtype = 'e'
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY(:tables)
ORDER BY c.relname, a.attnum
"""

_CONSTRAINTS = """
SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid),
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.pos),
       target.relname, con.confdeltype::text, con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class target ON target.oid = con.confrelid
WHERE n.nspname = current_schema() AND c.relname = ANY(:tables) AND con.contype IN ('c', 'f')
ORDER BY c.relname, con.conname
"""

_INDEXES = """
SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary, con.conname,
       ix.indexprs IS NULL AND ix.indpred IS NULL AND am.amname = 'btree'
         AND NOT EXISTS (SELECT 1 FROM unnest(ix.indoption::int2[]) AS o(flags) WHERE o.flags <> 0)
         AND NOT EXISTS (SELECT 1 FROM unnest(ix.indclass::oid[]) AS k(opclass)
                         JOIN pg_opclass oc ON oc.oid = k.opclass WHERE NOT oc.opcdefault),
       pg_get_indexdef(ix.indexrelid),
       ARRAY(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(num, pos)
             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.num ORDER BY k.pos)
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_am am ON am.oid = i.relam
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
                          acl.privilege_type, acl.is_grantable::text]
             FROM aclexplode(v.relacl) acl WHERE acl.grantee <> v.relowner),
       coalesce(v.reloptions, '{}'), v.relispopulated,
       ARRAY(SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = v.oid AND NOT t.tgisinternal
             ORDER BY t.tgname)
       || ARRAY(SELECT pg_get_ruledef(r.oid) FROM pg_rewrite r WHERE r.ev_class = v.oid AND r.rulename <> '_RETURN'
                ORDER BY r.rulename)
       || ARRAY(SELECT format('ALTER %s %I ALTER COLUMN %I SET DEFAULT %s',
                              CASE WHEN v.relkind = 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                              v.relname, a.attname, pg_get_expr(d.adbin, d.adrelid))
                FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                WHERE d.adrelid = v.oid ORDER BY a.attnum)
       || ARRAY(SELECT format('COMMENT ON COLUMN %I.%I IS %L', v.relname, a.attname, col_description(v.oid, a.attnum))
                FROM pg_attribute a WHERE a.attrelid = v.oid AND a.attnum > 0
                  AND col_description(v.oid, a.attnum) IS NOT NULL ORDER BY a.attnum)
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

_ROLE = """
SELECT current_user, rolsuper OR rolbypassrls, current_schema(), has_schema_privilege(current_schema(), 'CREATE'),
       ARRAY(SELECT c.relname FROM pg_class c WHERE c.relnamespace = n.oid),
       ARRAY(SELECT c.relname FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
             AND (r.rolsuper OR pg_has_role(current_user, c.relowner, 'MEMBER')))
FROM pg_roles r, pg_namespace n WHERE r.rolname = current_user AND n.nspname = current_schema()
"""


def read_catalog(connection: Connection, tables: Iterable[str]) -> LiveSchema:
    """The database's tables named in ``tables`` (those that exist) and every view of the current schema."""
    names = sorted(tables)
    columns: dict[str, dict[str, LiveColumn]] = {}
    heads: dict[str, tuple[str, bool, bool]] = {}
    rows = _rows(connection, _COLUMNS, tables=names)
    for table, owner, rls, forced, name, type_, nullable, default, comment, is_enum in rows:
        heads[str(table)] = (str(owner), bool(rls), bool(forced))
        column = LiveColumn(str(name), str(type_), bool(nullable), default, comment, bool(is_enum))
        columns.setdefault(str(table), {})[str(name)] = column
    checks: dict[str, list[LiveCheck]] = {}
    keys: dict[str, list[LiveForeignKey]] = {}
    for table, name, kind, definition, cols, target, on_delete, valid in _rows(connection, _CONSTRAINTS, tables=names):
        if kind == "c":
            check = LiveCheck(str(name), tuple(cols), str(definition), bool(valid))
            checks.setdefault(str(table), []).append(check)
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
    views = {}
    for name, materialized, definition, owner, comment, index_defs, grants, options, populated, extras in _rows(
        connection, _VIEWS
    ):
        views[str(name)] = LiveView(
            name=str(name),
            materialized=bool(materialized),
            definition=str(definition),
            owner=str(owner),
            reads=frozenset(reads.get(str(name), ())),
            indexes=tuple(index_defs),
            grants=tuple(
                (str(grantee), str(privilege), grantable == "true") for grantee, privilege, grantable in grants
            ),
            comment=comment,
            options=tuple(options),
            populated=bool(populated),
            extras=tuple(extras),
        )
    role, bypasses, schema, can_create, relations, altered = _rows(connection, _ROLE)[0]
    return LiveSchema(
        str(schema),
        live_tables,
        views,
        str(role),
        bool(bypasses),
        relations=frozenset(relations),
        can_create=bool(can_create),
        altered_by_role=frozenset(altered),
    )
