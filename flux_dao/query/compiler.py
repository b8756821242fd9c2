"""Plan -> SQLAlchemy Core statement, built once per shape and cached.

Every statement takes its values as bound parameters (``:row_id``, ``:c0``, ``:limit``...), so a statement object
is built once per resource and shape (the fields and operators filtered, the order, whether a cursor is given) and
the databases' prepared-statement caches do the rest. Column lists follow ``read_columns`` so each row maps
positionally onto the Read struct.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select, Update

from flux_dao.manifest.columns import ColumnInfo, OrderTerm, columns, default_order
from flux_dao.manifest.relations import Embed
from flux_dao.manifest.spec import VERSION, BulkUpdateQuery, EntitySpec, GroupedCountQuery, TimeRangeQuery
from flux_dao.query.conditions import after, condition_params, conditions, order_by
from flux_dao.query.plans import Condition, ListPlan

__all__ = ("MAX_CACHED_SHAPES", "Part", "ResourceStatements")

MAX_CACHED_SHAPES: Final = 256
"""Bound on cached statements of each kind per resource (one per shape a client sends)."""


def _nulls_kept(items: Sequence[Condition], field: str) -> bool | None:
    """Whether the filters keep only the rows where ``field`` is null (True), only those where it is not (False).

    Every operator but ``ne`` and ``isnull=true`` compares a value, so no null row passes it. None: both can pass.
    """
    decided = None
    for item in items:
        if item.field != field or item.operator == "ne":
            continue
        if item.operator == "isnull" and item.value:
            return True
        decided = False
    return decided


class Part(NamedTuple):
    """One statement of a page and the keyset position it continues from (bound as ``:k0``, ``:k1``...)."""

    statement: Select[Any]
    after: tuple[Any, ...] | None

    @property
    def positions(self) -> dict[str, Any]:
        """The keyset position as bound parameters (a null position is spelled in the SQL instead)."""
        return {f"k{index}": value for index, value in enumerate(self.after or ()) if value is not None}


class ResourceStatements:
    """The statements of one resource."""

    def __init__(self, entity: EntitySpec, table: sa.Table, *, postgres: bool = False) -> None:
        self.entity = entity
        self.postgres = postgres
        self.table = table
        self.info: dict[str, ColumnInfo] = columns(entity)
        self.columns = tuple(table.c[name] for name in entity.read_columns)
        pk = table.c.id
        self.get: Select[Any] = sa.select(*self.columns).where(pk == sa.bindparam("row_id"))
        self.insert = sa.insert(table).returning(*self.columns)
        self.version: Select[Any] = sa.select(table.c[VERSION]).where(pk == sa.bindparam("row_id"))
        """The row's current version: what a refused conditional write reports."""
        self._deletes = {
            conditional: sa.delete(table).where(*self._row(conditional)).returning(pk) for conditional in (False, True)
        }
        self.default_order = default_order(entity)
        self._lists: dict[Any, Select[Any]] = {}
        self._counts: dict[Any, Select[Any]] = {}
        self._updates: dict[tuple[tuple[str, ...], bool], Update] = {}
        self._queries: dict[Any, Any] = {}
        self._embeds: dict[Any, Select[Any]] = {}

    # -- reads -------------------------------------------------------------------------------------------------

    def params(self, items: Sequence[Condition]) -> dict[str, Any]:
        """The bound values of ``items``, as ``where`` names them."""
        return condition_params(items, self.info, postgres=self.postgres)

    def where(self, items: Sequence[Condition]) -> list[Any]:
        """The WHERE expressions of ``items``."""
        return conditions(self.table, items, self.info, postgres=self.postgres)

    def rows(self, plan: ListPlan) -> list[Part]:
        """The statements of one page, run in turn until it is full: one, or two around a nullable first sort key.

        ``SELECT ... WHERE <conditions> [AND <after the cursor>] ORDER BY ... LIMIT :limit OFFSET :offset``. When
        the order starts with a nullable column (and the page starts at a cursor or at the top), nulls are read as a
        part of their own, before or after the values: ``col IS NOT NULL ORDER BY col`` in either direction is the
        plain order of an index on the column read forwards or backwards, so both ``sort=col`` and ``sort=-col``
        seek (``DESC NULLS LAST`` in one statement is neither, and would scan and sort the whole table).
        """
        order = plan.order or self.default_order
        first = order[0]
        if plan.offset or first.field == "id" or not self.info[first.field].nullable:
            return [Part(self._rows(plan.conditions, order, self.info, plan.after), plan.after)]
        valued = {**self.info, first.field: replace(self.info[first.field], nullable=False)}
        kept = _nulls_kept(plan.conditions, first.field)
        if kept is not None:  # a filter on the key already decides: only values, or only nulls
            if kept:
                rest = None if plan.after is None else plan.after[1:]
                return [Part(self._rows(plan.conditions, order[1:], self.info, rest, first.field, nulls=True), rest)]
            return [Part(self._rows(plan.conditions, order, valued, plan.after, first.field, nulls=False), plan.after)]
        after = plan.after
        in_nulls = after is not None and after[0] is None
        in_values = after is not None and after[0] is not None

        def values(position: tuple[Any, ...] | None) -> Part:
            return Part(self._rows(plan.conditions, order, valued, position, first.field, nulls=False), position)

        def nulls(position: tuple[Any, ...] | None) -> Part:
            return Part(self._rows(plan.conditions, order[1:], self.info, position, first.field, nulls=True), position)

        rest = after[1:] if in_nulls and after is not None else None
        if first.nulls_first:  # nulls, then values: a cursor among the values has read every null
            return [values(after)] if in_values else [nulls(rest), values(None)]
        return [nulls(rest)] if in_nulls else [values(after), nulls(None)]

    def _rows(
        self,
        items: Sequence[Condition],
        order: tuple[OrderTerm, ...],
        info: dict[str, ColumnInfo],
        after_values: tuple[Any, ...] | None,
        split: str | None = None,
        nulls: bool = False,
    ) -> Select[Any]:
        """One statement of a page; with ``split``, only the rows whose ``split`` column is null (``nulls``) or not."""
        key = (
            tuple(c.shape for c in items),
            order,
            split,
            nulls,
            None if after_values is None else tuple(v is None for v in after_values),
        )
        stmt = self._lists.get(key)
        if stmt is None:
            where = self.where(items)
            if split is not None:
                column = self.table.c[split]
                where.append(column.is_(None) if nulls else column.is_not(None))
            if after_values is not None:
                where.append(after(self.table, order, info, after_values))
            stmt = (
                sa.select(*self.columns)
                .where(*where)
                .order_by(*order_by(self.table, order, info))
                .limit(sa.bindparam("limit", type_=sa.Integer))
                .offset(sa.bindparam("offset", type_=sa.Integer))
            )
            self._remember(self._lists, key, stmt)
        return stmt

    def count(self, items: Sequence[Condition]) -> Select[Any]:
        """The filtered total, run only when a list needs it."""
        key = tuple(c.shape for c in items)
        stmt = self._counts.get(key)
        if stmt is None:
            stmt = sa.select(sa.func.count()).select_from(self.table).where(*self.where(items))
            self._remember(self._counts, key, stmt)
        return stmt

    def embed(self, embed: Embed, child: "ResourceStatements", items: Sequence[Condition]) -> Select[Any]:
        """The rows ``embed`` adds to a set of parents (``:parent_ids``), in one statement whatever their number.

        To-one: the parents' referenced rows by id. To-many: each parent's first ``:per_parent`` children in the
        child's default order and matching ``items``: a LATERAL subquery per parent on PostgreSQL (an index on the
        reference seeks each parent's first rows), a ``row_number()`` window on SQLite.
        """
        key = (embed.name, tuple(c.shape for c in items))
        stmt = self._embeds.get(key)
        if stmt is None:
            stmt = child.to_one() if not embed.many else child.to_many(embed.via, items)
            self._remember(self._embeds, key, stmt)
        return stmt

    def to_one(self) -> Select[Any]:
        """Rows whose id is among ``:parent_ids``."""
        return sa.select(*self.columns).where(self._among(self.table.c.id))

    def to_many(self, via: str, items: Sequence[Condition]) -> Select[Any]:
        """Up to ``:per_parent`` rows per ``via`` value among ``:parent_ids``, in the default order."""
        order = order_by(self.table, self.default_order, self.info)
        limit = sa.bindparam("per_parent", type_=sa.Integer)
        reference = self.table.c[via]
        if self.postgres:
            parents = sa.func.unnest(sa.bindparam("parent_ids", type_=postgresql.ARRAY(reference.type)))
            parent = parents.table_valued("parent_id").render_derived()
            rows = (
                sa.select(*self.columns)
                .where(reference == parent.c.parent_id, *self.where(items))
                .order_by(*order)
                .limit(limit)
                .lateral("children")
            )
            return (
                sa.select(*(rows.c[name] for name in self.entity.read_columns))
                .select_from(parent)
                .join(rows, sa.true())
            )
        rank = sa.func.row_number().over(partition_by=reference, order_by=order).label("rank")
        ranked = sa.select(*self.columns, rank).where(self._among(reference), *self.where(items)).subquery("ranked")
        return (
            sa.select(*(ranked.c[name] for name in self.entity.read_columns))
            .where(ranked.c.rank <= limit)
            .order_by(ranked.c.rank)
        )

    def _among(self, column: sa.Column[Any]) -> Any:
        if self.postgres:
            return column == sa.any_(sa.bindparam("parent_ids", type_=postgresql.ARRAY(column.type)))
        return column.in_(sa.bindparam("parent_ids", expanding=True, type_=column.type))

    # -- writes ------------------------------------------------------------------------------------------------

    def _row(self, conditional: bool) -> list[Any]:
        """``id = :row_id``, and with ``conditional`` ``AND version = :expected``: the If-Match check, in the write."""
        where = [self.table.c.id == sa.bindparam("row_id")]
        if conditional:
            where.append(self.table.c[VERSION] == sa.bindparam("expected", type_=sa.Integer))
        return where

    def _stamped(self, values: dict[str, Any]) -> dict[str, Any]:
        """A change's SET clause with what every change also sets: ``updated_at = :v_updated_at``, version + 1."""
        table = self.table
        values["updated_at"] = sa.bindparam("v_updated_at", type_=table.c.updated_at.type)
        values[VERSION] = table.c[VERSION] + sa.literal_column("1")  # no parameter: the statement stays static
        return values

    def delete(self, conditional: bool = False) -> Any:
        """``DELETE ... WHERE id = :row_id [AND version = :expected] RETURNING id``."""
        return self._deletes[conditional]

    def update(self, fields: tuple[str, ...], conditional: bool = False) -> Update:
        """The UPDATE of the fields a PATCH sends, adding one to ``version``; with ``conditional``, at ``:expected``.

        ``UPDATE ... SET field = :v_field ..., version = version + 1 WHERE id = :row_id [AND version = :expected]
        RETURNING ...``
        """
        key = (fields, conditional)
        stmt = self._updates.get(key)
        if stmt is None:
            values = {name: sa.bindparam("v_" + name, type_=self.table.c[name].type) for name in fields}
            stmt = (
                sa.update(self.table)
                .where(*self._row(conditional))
                .values(self._stamped(values))
                .returning(*self.columns)
            )
            self._remember(self._updates, key, stmt)
        return stmt

    def insert_many(self) -> Any:
        """PostgreSQL: any number of rows in one statement, ``INSERT ... SELECT * FROM jsonb_to_recordset(:rows)``.

        The rows travel as one JSON array (encoded in C by msgspec, parsed by PostgreSQL into the columns' types), so
        one prepared statement serves every row count: a VALUES list would need a statement, and tens of thousands
        of parameters, per count, and per-column arrays cost the driver a check per element.
        """
        stmt = self._queries.get("insert_many")
        if stmt is None:
            table = self.table
            names = [column.name for column in table.columns]
            rows = (
                sa.func.jsonb_to_recordset(sa.cast(sa.bindparam("rows", type_=sa.Text), postgresql.JSONB))
                .table_valued(*(sa.column(column.name, column.type) for column in table.columns))
                .render_derived(with_types=True)
            )
            stmt = sa.insert(table).from_select(names, sa.select(*(rows.c[name] for name in names)))
            stmt = stmt.returning(*self.columns)
            self._queries["insert_many"] = stmt
        return stmt

    def upsert(self, field: str, changed: tuple[str, ...], fixed: tuple[str, ...]) -> Any:
        """``INSERT ... ON CONFLICT (field) DO UPDATE SET <changed> = excluded..., version + 1 WHERE <fixed> match``.

        A row whose ``fixed`` (immutable) fields differ from the insert's is left alone and returns nothing.
        """
        key = ("upsert", field, changed, fixed)
        stmt = self._queries.get(key)
        if stmt is None:
            table = self.table
            insert = (postgresql.insert if self.postgres else sqlite.insert)(table)
            excluded = insert.excluded
            values: dict[str, Any] = {name: excluded[name] for name in changed}
            values["updated_at"] = excluded.updated_at
            values[VERSION] = table.c[VERSION] + sa.literal_column("1")
            stmt = insert.on_conflict_do_update(
                index_elements=[table.c[field]],
                set_=values,
                where=sa.and_(sa.true(), *(table.c[name] == excluded[name] for name in fixed)),
            ).returning(*self.columns)
            self._remember(self._queries, key, stmt)
        return stmt

    def time_range(self, name: str, query: TimeRangeQuery, items: Sequence[Condition] = ()) -> Select[Any]:
        """Rows of a scope with ``:start <= field <= :end`` and the list filters, ascending by field then id."""
        key = (name, tuple(c.shape for c in items))
        stmt = self._queries.get(key)
        if stmt is None:
            column = self.table.c[query.field]
            stmt = (
                sa.select(*self.columns)
                .where(
                    *self._where(query.scope),
                    column >= sa.bindparam("start"),
                    column <= sa.bindparam("end"),
                    *self.where(items),
                )
                .order_by(column.asc(), self.table.c.id.asc())
            )
            self._remember(self._queries, key, stmt)
        return stmt

    def grouped_count(self, name: str, query: GroupedCountQuery) -> Select[Any]:
        """``SELECT group, count(*) ... GROUP BY group`` over a scope and an inclusive time window."""
        stmt = self._queries.get(name)
        if stmt is None:
            group = self.table.c[query.group_by]
            column = self.table.c[query.time_field]
            stmt = (
                sa.select(group, sa.func.count())
                .where(*self._where(query.scope), column >= sa.bindparam("start"), column <= sa.bindparam("end"))
                .group_by(group)
            )
            self._queries[name] = stmt
        return stmt

    def bulk_update(self, name: str, query: BulkUpdateQuery) -> Update:
        """``UPDATE ... SET field = :value WHERE id IN (:ids)``: one statement, unknown ids simply match nothing."""
        stmt = self._queries.get(name)
        if stmt is None:
            values: dict[str, Any] = {query.field: sa.bindparam("value", type_=self.table.c[query.field].type)}
            pk = self.table.c.id
            if self.postgres:
                # One array parameter (one prepared statement for any number of ids), and the rows locked in id
                # order first, so concurrent bulk updates over overlapping ids queue instead of deadlocking.
                listed = pk == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(pk.type)))
                locked = sa.select(pk).where(listed).order_by(pk).with_for_update()
                ids = pk.in_(locked)
            else:  # SQLite has one writer at a time: no lock order to keep
                ids = pk.in_(sa.bindparam("ids", expanding=True))
            stmt = sa.update(self.table).where(ids).values(self._stamped(values))
            self._queries[name] = stmt
        return stmt

    def _where(self, fields: Sequence[str], prefix: str = "f_") -> list[Any]:
        return [self.table.c[name] == sa.bindparam(prefix + name) for name in fields]

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, stmt: Any) -> None:
        if len(cache) >= MAX_CACHED_SHAPES:
            cache.pop(next(iter(cache)))
        cache[key] = stmt
