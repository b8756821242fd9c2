r"""Filter conditions and keyset positions -> SQL expressions, the same meaning on PostgreSQL and SQLite.

Every value is a bound parameter named after the condition's position (``c0``, ``c1``...; ``k0``... for a cursor),
so one statement serves every request of the same shape. Where the two databases differ, each gets its own
spelling of the same meaning:

- ``in``: ``= ANY(array)`` on PostgreSQL (one prepared statement for any number of values), an expanding ``IN`` on
  SQLite.
- ``ne``: ``IS DISTINCT FROM`` on a nullable column, so rows holding null are "not equal" too.
- ``contains`` (lists, stored as JSON): ``@>`` on PostgreSQL's JSONB, ``json_each`` on SQLite.
- ``icontains``: ``lower(column) LIKE '%' || lower(value) || '%'``, with SQLite's ``lower`` replaced by a Unicode
  one (``flux_lower``, registered by ``flux_dao.store.db``); ``%``, ``_`` and ``\\`` in the value are escaped.
- ``startswith``: case-sensitive on both: ``LIKE`` on PostgreSQL, ``substr`` on SQLite (whose LIKE ignores case).
- Nulls sort last (unless the manifest's default order says first) on both, spelled out only for nullable columns
  so a plain index still serves the order of a NOT NULL one.
"""

from collections.abc import Sequence
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from flux_dao.manifest.columns import ColumnInfo, OrderTerm
from flux_dao.query.plans import Condition

__all__ = ("SQLITE_LOWER", "after", "condition_params", "conditions", "order_by")

SQLITE_LOWER: Final = "flux_lower"
"""``icontains``' Unicode lower case on SQLite, registered on every connection by ``flux_dao.store.db``."""
_ESCAPE: Final = "\\"
_JSONB = postgresql.JSONB(none_as_null=True)


def _escaped(value: str) -> str:
    return value.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")


def condition_params(items: Sequence[Condition], info: dict[str, ColumnInfo], *, postgres: bool) -> dict[str, Any]:
    """The bound values of ``conditions(items)``."""
    params: dict[str, Any] = {}
    for index, condition in enumerate(items):
        value = condition.value
        if condition.operator == "isnull":
            continue  # spelled in the SQL
        if condition.operator in {"icontains", "startswith"} and (postgres or condition.operator == "icontains"):
            value = _escaped(value)
        elif condition.operator == "in":
            value = list(value)
        elif condition.operator == "contains":
            items_are_text = info[condition.field].items == "string"
            value = (
                list(value)
                if postgres
                else msgspec.json.encode([v if items_are_text else str(v) for v in value]).decode()
            )
        params[f"c{index}"] = value
    return params


def conditions(
    table: sa.Table, items: Sequence[Condition], info: dict[str, ColumnInfo], *, postgres: bool
) -> list[Any]:
    """One SQL expression per condition."""
    return [
        _condition(table, f"c{index}", item, info[item.field], postgres=postgres) for index, item in enumerate(items)
    ]


def _condition(table: sa.Table, name: str, item: Condition, info: ColumnInfo, *, postgres: bool) -> Any:
    column = table.c[item.field]
    operator = item.operator
    if operator == "isnull":
        return column.is_(None) if item.value else column.is_not(None)
    if operator == "in":
        if postgres:
            return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
        return column.in_(sa.bindparam(name, expanding=True, type_=column.type))
    if operator == "contains":
        if postgres:
            return column.op("@>")(sa.bindparam(name, type_=_JSONB))
        have = sa.func.json_each(column).table_valued("value").alias(f"{name}_have")
        want = sa.func.json_each(sa.bindparam(name, type_=sa.String)).table_valued("value").alias(f"{name}_want")
        missing = sa.select(sa.literal(1)).select_from(want).where(want.c.value.not_in(sa.select(have.c.value)))
        return ~sa.exists(missing)
    value = sa.bindparam(name, type_=column.type)
    if operator == "icontains":
        lower = sa.func.lower if postgres else getattr(sa.func, SQLITE_LOWER)
        pattern = sa.literal("%") + lower(sa.bindparam(name, type_=sa.String)) + sa.literal("%")
        return lower(column).like(pattern, escape=_ESCAPE)
    if operator == "startswith":
        if postgres:
            return column.like(sa.bindparam(name, type_=sa.String) + sa.literal("%"), escape=_ESCAPE)
        text = sa.bindparam(name, type_=sa.String)
        return sa.func.substr(column, 1, sa.func.length(text)) == text
    if operator == "ne":
        return column.is_distinct_from(value) if info.nullable else column != value
    comparisons = {"eq": column == value, "gt": column > value, "gte": column >= value}
    comparisons |= {"lt": column < value, "lte": column <= value}
    return comparisons[operator]


def order_by(table: sa.Table, terms: Sequence[OrderTerm], info: dict[str, ColumnInfo]) -> list[Any]:
    """ORDER BY expressions; nulls placed explicitly where the column can hold them."""
    found = []
    for term in terms:
        column = table.c[term.field]
        expression = column.desc() if term.descending else column.asc()
        if info[term.field].nullable:
            expression = expression.nulls_first() if term.nulls_first else expression.nulls_last()
        found.append(expression)
    return found


def after(table: sa.Table, terms: Sequence[OrderTerm], info: dict[str, ColumnInfo], positions: Sequence[Any]) -> Any:
    """Rows strictly after the keyset position (the order's values ``k0``, ``k1``... of the last row seen).

    ``(a, b, id) > (x, y, z)`` in the order's own directions and null placement, spelled as ``a after x OR (a = x
    AND (b after y OR (b = y AND id after z)))``. ``positions`` says which values are null: a null compares with
    ``IS NULL``, so it shapes the SQL. The first term is repeated as a bound (``a >= x``) when nothing null can follow
    it, which lets an index on it seek straight to the position instead of scanning from the start.
    """
    clause: Any = None
    for index in reversed(range(len(terms))):
        term, value = terms[index], positions[index]
        column = table.c[term.field]
        bound = sa.bindparam(f"k{index}", type_=column.type)
        nullable = info[term.field].nullable
        if value is None:
            equal: Any = column.is_(None)
            beyond: Any = column.is_not(None) if term.nulls_first else sa.false()
        else:
            equal = column == bound
            beyond = column < bound if term.descending else column > bound
            if nullable and not term.nulls_first:
                beyond = sa.or_(beyond, column.is_(None))
        clause = beyond if clause is None else sa.or_(beyond, sa.and_(equal, clause))
    first, value = terms[0], positions[0]
    if value is not None and not (info[first.field].nullable and not first.nulls_first):
        column = table.c[first.field]
        bound = sa.bindparam("k0", type_=column.type)
        clause = sa.and_(column <= bound if first.descending else column >= bound, clause)
    return clause
