"""Plan -> SQLAlchemy Core statement, built once per shape and cached.

Every statement takes its values as bound parameters (``:id``, ``:f_user_id``, ``:limit``...), so a statement object
is built once per resource and filter combination and SQLAlchemy's compiled cache does the rest. Column lists follow
``read_columns`` so each row maps positionally onto the Read struct.
"""

from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Select, Update

from flux_dao.manifest.checks import parse_order
from flux_dao.manifest.spec import BulkUpdateQuery, EntitySpec, GroupedCountQuery, TimeRangeQuery

__all__ = ("MAX_CACHED_SHAPES", "ResourceStatements")

MAX_CACHED_SHAPES: Final = 256
"""Bound on cached UPDATE/list shapes per resource (one per combination of fields a client sends)."""


class ResourceStatements:
    """The statements of one resource."""

    def __init__(self, entity: EntitySpec, table: sa.Table, *, postgres: bool = False) -> None:
        self.entity = entity
        self.postgres = postgres
        self.table = table
        self.columns = tuple(table.c[name] for name in entity.read_columns)
        self.touches_updated_at = "updated_at" in entity.timestamps
        pk = table.c.id
        self.get: Select[Any] = sa.select(*self.columns).where(pk == sa.bindparam("row_id"))
        self.insert = sa.insert(table).returning(*self.columns)
        self.delete: Any = sa.delete(table).where(pk == sa.bindparam("row_id")).returning(pk)
        self.order_by = self._order_by()
        self._lists: dict[tuple[str, ...], Select[Any]] = {}
        self._counts: dict[tuple[str, ...], Select[Any]] = {}
        self._updates: dict[tuple[str, ...], Update] = {}
        self._queries: dict[str, Any] = {}

    def _order_by(self) -> tuple[Any, ...]:
        terms: list[Any] = []
        first_desc = True
        for index, term in enumerate(self.entity.order_by or ("created_at desc",)):
            field, desc, nulls = parse_order(term)
            if field not in self.table.c:
                continue
            column = self.table.c[field]
            expr = column.desc() if desc else column.asc()
            if nulls is not None:
                expr = expr.nulls_last() if nulls == "last" else expr.nulls_first()
            terms.append(expr)
            if index == 0:
                first_desc = desc
        pk = self.table.c.id
        terms.append(pk.desc() if first_desc else pk.asc())
        return tuple(terms)

    def _where(self, fields: Sequence[str], prefix: str = "f_") -> list[Any]:
        return [self.table.c[name] == sa.bindparam(prefix + name) for name in fields]

    def list(self, filter_fields: tuple[str, ...]) -> Select[Any]:
        """``SELECT ... WHERE field = :f_field ... ORDER BY ... LIMIT :limit OFFSET :offset``."""
        stmt = self._lists.get(filter_fields)
        if stmt is None:
            stmt = (
                sa.select(*self.columns)
                .where(*self._where(filter_fields))
                .order_by(*self.order_by)
                .limit(sa.bindparam("limit", type_=sa.Integer))
                .offset(sa.bindparam("offset", type_=sa.Integer))
            )
            self._remember(self._lists, filter_fields, stmt)
        return stmt

    def count(self, filter_fields: tuple[str, ...]) -> Select[Any]:
        """The filtered total, run only when a list needs it."""
        stmt = self._counts.get(filter_fields)
        if stmt is None:
            stmt = sa.select(sa.func.count()).select_from(self.table).where(*self._where(filter_fields))
            self._remember(self._counts, filter_fields, stmt)
        return stmt

    def update(self, fields: tuple[str, ...]) -> Update:
        """``UPDATE ... SET field = :v_field ... WHERE id = :row_id RETURNING ...`` for the fields a PATCH sends."""
        stmt = self._updates.get(fields)
        if stmt is None:
            values = {name: sa.bindparam("v_" + name, type_=self.table.c[name].type) for name in fields}
            if self.touches_updated_at:
                values["updated_at"] = sa.bindparam("v_updated_at", type_=self.table.c.updated_at.type)
            stmt = (
                sa.update(self.table)
                .where(self.table.c.id == sa.bindparam("row_id"))
                .values(values)
                .returning(*self.columns)
            )
            self._remember(self._updates, fields, stmt)
        return stmt

    def time_range(self, name: str, query: TimeRangeQuery) -> Select[Any]:
        """Rows of a scope with ``:start <= field <= :end``, ascending by field then id."""
        stmt = self._queries.get(name)
        if stmt is None:
            column = self.table.c[query.field]
            stmt = (
                sa.select(*self.columns)
                .where(*self._where(query.scope), column >= sa.bindparam("start"), column <= sa.bindparam("end"))
                .order_by(column.asc(), self.table.c.id.asc())
            )
            self._queries[name] = stmt
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
            if self.touches_updated_at:
                values["updated_at"] = sa.bindparam("v_updated_at", type_=self.table.c.updated_at.type)
            pk = self.table.c.id
            if self.postgres:
                # One array parameter (one prepared statement for any number of ids), and the rows locked in id
                # order first, so concurrent bulk updates over overlapping ids queue instead of deadlocking.
                listed = pk == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(pk.type)))
                locked = sa.select(pk).where(listed).order_by(pk).with_for_update()
                ids = pk.in_(locked)
            else:  # SQLite has one writer at a time: no lock order to keep
                ids = pk.in_(sa.bindparam("ids", expanding=True))
            stmt = sa.update(self.table).where(ids).values(values)
            self._queries[name] = stmt
        return stmt

    @staticmethod
    def _remember(cache: dict[tuple[str, ...], Any], key: tuple[str, ...], stmt: Any) -> None:
        if len(cache) >= MAX_CACHED_SHAPES:
            cache.pop(next(iter(cache)))
        cache[key] = stmt
