r"""The compiler's SQL on both dialects: each operator's spelling, ORDER BY, the keyset predicate and embeds.

Statements are compiled, never run: ``sqlalchemy.dialects.postgresql`` (casts the driver would add left out, as they
do not change the meaning) and ``sqlalchemy.dialects.sqlite``. Bound values come from ``condition_params``.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import BindTyping

from flux_dao.manifest import load_manifest, parse_manifest
from flux_dao.manifest.columns import OrderTerm
from flux_dao.manifest.spec import TimeRangeQuery
from flux_dao.query.compiler import ResourceStatements
from flux_dao.query.conditions import SQLITE_LOWER, after
from flux_dao.query.plans import Condition, ListPlan
from flux_dao.schema import build_resources

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = build_resources(load_manifest(ROOT / "resources.yaml"))
EVENTS = build_resources(
    parse_manifest(
        """\
version: 1
resources:
  events:
    fields:
      at: {type: datetime}
      rank: {type: integer, required: true}
    order_by: [at asc nulls first]
""",
        source="events.yaml",
    )
)
PG = True
LITE = False
U1 = UUID("01940000-0000-7000-8000-000000000001")
WHEN = datetime(2026, 1, 31, 9, tzinfo=UTC)


def statements(postgres: bool) -> dict[str, ResourceStatements]:
    found = {r.entity.name: ResourceStatements(r.entity, r.table, postgres=postgres) for r in RESOURCES.items}
    [events] = EVENTS.items
    found["events"] = ResourceStatements(events.entity, events.table, postgres=postgres)
    return found


STATEMENTS = {PG: statements(PG), LITE: statements(LITE)}


def dialect(postgres: bool) -> sa.Dialect:
    if not postgres:
        return sqlite.dialect()
    found = postgresql.dialect()  # type: ignore[no-untyped-call]
    found.bind_typing = BindTyping.NONE  # no ``::VARCHAR`` after each parameter
    return found


def sql(stmt: sa.ClauseElement, postgres: bool) -> str:
    return " ".join(str(stmt.compile(dialect=dialect(postgres))).split())


def where(stmt: sa.ClauseElement, postgres: bool) -> str:
    """The WHERE clause of a statement, up to ORDER BY or LIMIT."""
    text = sql(stmt, postgres)
    found = text.split(" WHERE ", 1)[1]
    for end in (" ORDER BY ", " LIMIT "):
        found = found.split(end)[0]
    return found


def fresh(resource: str, postgres: bool) -> ResourceStatements:
    """Statements with an empty cache (the module's shared ones keep what earlier tests compiled)."""
    return statements(postgres)[resource]


def count_where(resource: str, conditions: tuple[Condition, ...], postgres: bool) -> str:
    return where(fresh(resource, postgres).count(conditions), postgres)


# --- one condition each ---------------------------------------------------------------------------------------------

OPERATORS: list[tuple[str, Condition, str, str]] = [
    ("tasks", Condition("status", "eq", "done"), "tasks.status = %(c0)s", "tasks.status = ?"),
    ("tasks", Condition("status", "ne", "done"), "tasks.status != %(c0)s", "tasks.status != ?"),
    ("tasks", Condition("goal_id", "ne", U1), "tasks.goal_id IS DISTINCT FROM %(c0)s", "tasks.goal_id IS NOT ?"),
    ("tasks", Condition("duration_minutes", "eq", 5), "tasks.duration_minutes = %(c0)s", "tasks.duration_minutes = ?"),
    ("tasks", Condition("status", "in", ("a",)), "tasks.status = ANY (%(c0)s)", "tasks.status IN (__[POSTCOMPILE_c0])"),
    (
        "tasks",
        Condition("goal_id", "in", (U1,)),
        "tasks.goal_id = ANY (%(c0)s)",
        "tasks.goal_id IN (__[POSTCOMPILE_c0])",
    ),
    ("tasks", Condition("scheduled_at", "gt", WHEN), "tasks.scheduled_at > %(c0)s", "tasks.scheduled_at > ?"),
    ("tasks", Condition("scheduled_at", "gte", WHEN), "tasks.scheduled_at >= %(c0)s", "tasks.scheduled_at >= ?"),
    ("tasks", Condition("scheduled_at", "lt", WHEN), "tasks.scheduled_at < %(c0)s", "tasks.scheduled_at < ?"),
    ("tasks", Condition("scheduled_at", "lte", WHEN), "tasks.scheduled_at <= %(c0)s", "tasks.scheduled_at <= ?"),
    ("tasks", Condition("created_at", "gte", WHEN), "tasks.created_at >= %(c0)s", "tasks.created_at >= ?"),
    ("tasks", Condition("goal_id", "isnull", True), "tasks.goal_id IS NULL", "tasks.goal_id IS NULL"),
    ("tasks", Condition("goal_id", "isnull", False), "tasks.goal_id IS NOT NULL", "tasks.goal_id IS NOT NULL"),
    (
        "goals",
        Condition("class_tags", "contains", ("a",)),
        "goals.class_tags @> %(c0)s",
        "NOT (EXISTS (SELECT ? AS anon_1 FROM json_each(?) AS c0_want WHERE (c0_want.value NOT IN "
        "(SELECT c0_have.value FROM json_each(goals.class_tags) AS c0_have))))",
    ),
    (
        "tasks",
        Condition("title", "icontains", "run"),
        "lower(tasks.title) LIKE (%(param_1)s || lower(%(c0)s) || %(param_2)s) ESCAPE '\\'",
        f"{SQLITE_LOWER}(tasks.title) LIKE (? || {SQLITE_LOWER}(?) || ?) ESCAPE '\\'",
    ),
    (
        "tasks",
        Condition("title", "startswith", "Run"),
        "tasks.title LIKE (%(c0)s || %(param_1)s) ESCAPE '\\'",
        "substr(tasks.title, ?, length(?)) = ?",
    ),
]


@pytest.mark.parametrize(("resource", "condition", "postgres_sql", "sqlite_sql"), OPERATORS)
def test_each_operators_sql(resource: str, condition: Condition, postgres_sql: str, sqlite_sql: str) -> None:
    assert count_where(resource, (condition,), PG) == postgres_sql
    assert count_where(resource, (condition,), LITE) == sqlite_sql


@pytest.mark.parametrize(("resource", "condition", "postgres_sql", "sqlite_sql"), OPERATORS)
def test_values_are_bound_never_spliced(
    resource: str, condition: Condition, postgres_sql: str, sqlite_sql: str
) -> None:
    for postgres in (PG, LITE):
        compiled = fresh(resource, postgres).count((condition,)).compile(dialect=dialect(postgres))
        if condition.operator == "isnull":
            assert "c0" not in compiled.params  # spelled in the SQL: IS NULL / IS NOT NULL
        else:
            assert compiled.params["c0"] is None  # a slot the request's value fills, not the value


def test_the_literal_wildcards_are_bound_too() -> None:
    for postgres in (PG, LITE):
        for operator in ("icontains", "startswith"):
            compiled = (
                fresh("tasks", postgres).count((Condition("title", operator, "x"),)).compile(dialect=dialect(postgres))
            )
            wildcards = [v for k, v in compiled.params.items() if k.startswith("param_")]
            expected = {("icontains", PG): ["%", "%"], ("icontains", LITE): ["%", "%"], ("startswith", PG): ["%"]}
            assert wildcards == expected.get((operator, postgres), []), (operator, postgres)


def test_startswith_on_sqlite_does_not_use_like() -> None:
    text = count_where("tasks", (Condition("title", "startswith", "Run"),), LITE)
    assert "LIKE" not in text  # SQLite's LIKE ignores case; the prefix is compared with =


def test_icontains_on_sqlite_never_calls_the_ascii_lower() -> None:
    text = count_where("tasks", (Condition("title", "icontains", "Ä"),), LITE)
    assert " lower(" not in f" {text}"
    assert "(lower(" not in text


def test_conditions_are_joined_with_and_and_named_by_position() -> None:
    items = (
        Condition("user_id", "eq", U1),
        Condition("goal_id", "isnull", True),
        Condition("status", "in", ("pending",)),
        Condition("scheduled_at", "lt", WHEN),
    )
    assert count_where("tasks", items, PG) == (
        "tasks.user_id = %(c0)s AND tasks.goal_id IS NULL AND tasks.status = ANY (%(c2)s) "
        "AND tasks.scheduled_at < %(c3)s"
    )


def test_a_count_has_no_order_or_paging() -> None:
    text = sql(STATEMENTS[PG]["tasks"].count((Condition("status", "eq", "done"),)), PG)
    assert text.startswith("SELECT count(*) AS count_1 FROM tasks WHERE")
    assert "ORDER BY" not in text
    assert "LIMIT" not in text


# --- bound values ---------------------------------------------------------------------------------------------------


def params(resource: str, items: tuple[Condition, ...], postgres: bool) -> dict[str, Any]:
    return STATEMENTS[postgres][resource].params(items)


@pytest.mark.parametrize("postgres", [PG, LITE])
def test_icontains_escapes_percent_underscore_and_backslash(postgres: bool) -> None:
    found = params("tasks", (Condition("title", "icontains", "100%_a\\b"),), postgres)
    assert found == {"c0": "100\\%\\_a\\\\b"}


def test_an_escaped_backslash_is_not_escaped_again() -> None:
    assert params("tasks", (Condition("title", "icontains", "\\%"),), PG) == {"c0": "\\\\\\%"}


def test_startswith_escapes_for_like_on_postgres_only() -> None:
    items = (Condition("title", "startswith", "5%_\\"),)
    assert params("tasks", items, PG) == {"c0": "5\\%\\_\\\\"}
    assert params("tasks", items, LITE) == {"c0": "5%_\\"}  # substr compares it as written


@pytest.mark.parametrize("postgres", [PG, LITE])
def test_in_binds_a_list_and_isnull_binds_nothing(postgres: bool) -> None:
    items = (
        Condition("goal_id", "isnull", False),
        Condition("status", "in", ("pending", "missed")),
        Condition("user_id", "eq", U1),
        Condition("scheduled_at", "gte", WHEN),
    )
    assert params("tasks", items, postgres) == {"c1": ["pending", "missed"], "c2": U1, "c3": WHEN}


def test_contains_binds_a_list_on_postgres_and_json_text_on_sqlite() -> None:
    uuids = (Condition("shared_with_goal_ids", "contains", (U1,)),)
    assert params("tasks", uuids, PG) == {"c0": [U1]}
    assert msgspec.json.decode(params("tasks", uuids, LITE)["c0"]) == [str(U1)]
    tags = (Condition("class_tags", "contains", ('a"b', "ü")),)
    assert params("goals", tags, PG) == {"c0": ['a"b', "ü"]}
    assert msgspec.json.decode(params("goals", tags, LITE)["c0"]) == ['a"b', "ü"]


def test_contains_values_are_not_like_escaped() -> None:
    tags = (Condition("class_tags", "contains", ("50%_off",)),)
    assert params("goals", tags, PG) == {"c0": ["50%_off"]}


# --- ORDER BY -------------------------------------------------------------------------------------------------------


def one(statements: ResourceStatements, plan: ListPlan) -> sa.Select[Any]:
    """The statement of a page that is read in one (its order does not start with a nullable column, or it skips)."""
    [part] = statements.rows(plan)
    return part.statement


def order_clause(resource: str, order: tuple[OrderTerm, ...], postgres: bool) -> str:
    # offset paging reads a page in one statement, its nulls placed by NULLS FIRST/LAST
    text = sql(one(STATEMENTS[postgres][resource], ListPlan(order=order, offset=10)), postgres)
    return text.split(" ORDER BY ")[1].split(" LIMIT ")[0]


@pytest.mark.parametrize("postgres", [PG, LITE])
@pytest.mark.parametrize(
    ("resource", "order", "expected"),
    [
        (
            "tasks",
            (OrderTerm("scheduled_at"), OrderTerm("title", True), OrderTerm("id")),
            "tasks.scheduled_at ASC NULLS LAST, tasks.title DESC, tasks.id ASC",
        ),
        (
            "tasks",
            (OrderTerm("scheduled_at", True), OrderTerm("id", True)),
            "tasks.scheduled_at DESC NULLS LAST, tasks.id DESC",
        ),
        (
            "tasks",
            (OrderTerm("duration_minutes"), OrderTerm("status", True), OrderTerm("created_at"), OrderTerm("id")),
            "tasks.duration_minutes ASC NULLS LAST, tasks.status DESC, tasks.created_at ASC, tasks.id ASC",
        ),
        ("tasks", (), "tasks.created_at DESC, tasks.id DESC"),
        ("notification_log", (), "notification_log.sent_at DESC NULLS LAST, notification_log.id DESC"),
        ("events", (), "events.at ASC NULLS FIRST, events.id ASC"),
        ("events", (OrderTerm("rank", True), OrderTerm("id", True)), "events.rank DESC, events.id DESC"),
    ],
)
def test_nulls_are_placed_only_where_a_column_can_hold_them(
    resource: str, order: tuple[OrderTerm, ...], expected: str, postgres: bool
) -> None:
    assert order_clause(resource, order, postgres) == expected


@pytest.mark.parametrize("postgres", [PG, LITE])
def test_rows_filter_order_then_page(postgres: bool) -> None:
    text = sql(one(STATEMENTS[postgres]["tasks"], ListPlan(conditions=(Condition("user_id", "eq", U1),))), postgres)
    assert text.index(" WHERE ") < text.index(" ORDER BY ") < text.index(" LIMIT ") < text.index(" OFFSET ")
    assert text.endswith(("LIMIT %(limit)s OFFSET %(offset)s", "LIMIT ? OFFSET ?"))


# --- the keyset predicate -----------------------------------------------------------------------------------------


def keyset(
    resource: str, order: tuple[OrderTerm, ...], position: tuple[Any, ...], postgres: bool, *items: Condition
) -> str:
    """The WHERE clause of the rows after ``position``, as one statement would spell it (the predicate alone)."""
    found = STATEMENTS[postgres][resource]
    clause = after(found.table, order, found.info, position)
    stmt = sa.select(found.table.c.id).where(*found.where(items), clause)
    return where(stmt, postgres)


CREATED = (OrderTerm("created_at", True), OrderTerm("id", True))
SCHEDULED = (OrderTerm("scheduled_at"), OrderTerm("title", True), OrderTerm("id"))


def test_a_not_null_first_column_gets_the_seek_bound() -> None:
    assert keyset("tasks", CREATED, (WHEN, U1), PG) == (
        "tasks.created_at <= %(k0)s AND (tasks.created_at < %(k0)s OR tasks.created_at = %(k0)s AND tasks.id < %(k1)s)"
    )
    ascending = (OrderTerm("title"), OrderTerm("id"))
    assert keyset("tasks", ascending, ("Run", U1), LITE) == (
        "tasks.title >= ? AND (tasks.title > ? OR tasks.title = ? AND tasks.id > ?)"
    )


def test_a_nullable_first_column_with_nulls_last_gets_no_seek_bound() -> None:
    assert keyset("tasks", SCHEDULED, (WHEN, "Run", U1), PG) == (
        "tasks.scheduled_at > %(k0)s OR tasks.scheduled_at IS NULL OR tasks.scheduled_at = %(k0)s "
        "AND (tasks.title < %(k1)s OR tasks.title = %(k1)s AND tasks.id > %(k2)s)"
    )


def test_a_descending_nullable_column_still_lets_nulls_follow() -> None:
    order = (OrderTerm("scheduled_at", True), OrderTerm("id", True))
    assert keyset("tasks", order, (WHEN, U1), PG) == (
        "tasks.scheduled_at < %(k0)s OR tasks.scheduled_at IS NULL OR tasks.scheduled_at = %(k0)s AND tasks.id < %(k1)s"
    )


def test_a_null_position_compares_with_is_null() -> None:
    assert keyset("tasks", SCHEDULED, (None, "Run", U1), PG) == (
        "tasks.scheduled_at IS NULL AND (tasks.title < %(k1)s OR tasks.title = %(k1)s AND tasks.id > %(k2)s)"
    )


def test_a_null_in_the_middle_of_the_order() -> None:
    order = (OrderTerm("status"), OrderTerm("duration_minutes", True), OrderTerm("id"))
    assert keyset("tasks", order, ("done", None, U1), LITE) == (
        "tasks.status >= ? AND (tasks.status > ? OR tasks.status = ? "
        "AND tasks.duration_minutes IS NULL AND tasks.id > ?)"
    )
    assert keyset("tasks", order, ("done", 5, U1), LITE) == (
        "tasks.status >= ? AND (tasks.status > ? OR tasks.status = ? AND (tasks.duration_minutes < ? "
        "OR tasks.duration_minutes IS NULL OR tasks.duration_minutes = ? AND tasks.id > ?))"
    )


def test_nulls_first_columns_put_non_null_rows_after_a_null_position() -> None:
    order = (OrderTerm("at", nulls_first=True), OrderTerm("id"))
    assert keyset("events", order, (None, U1), PG) == (
        "events.at IS NOT NULL OR events.at IS NULL AND events.id > %(k1)s"
    )
    # nothing null follows a non-null position, so the seek bound is sound
    assert keyset("events", order, (WHEN, U1), PG) == (
        "events.at >= %(k0)s AND (events.at > %(k0)s OR events.at = %(k0)s AND events.id > %(k1)s)"
    )


@pytest.mark.parametrize("postgres", [PG, LITE])
def test_the_keyset_predicate_is_and_ed_with_the_filters(postgres: bool) -> None:
    text = keyset("tasks", SCHEDULED, (WHEN, "Run", U1), postgres, Condition("user_id", "eq", U1))
    placeholder = "%(c0)s" if postgres else "?"
    assert text.startswith(f"tasks.user_id = {placeholder} AND (tasks.scheduled_at > ")
    assert text.endswith("))")


@pytest.mark.parametrize("postgres", [PG, LITE])
@pytest.mark.parametrize("kind", ["rows", "count", "embed", "time_range"])
def test_isnull_true_and_false_do_not_share_a_statement(postgres: bool, kind: str) -> None:
    found = statements(postgres)
    embed = RESOURCES.embeds["users"]["tasks"]

    def compiled(value: bool) -> str:
        items = (Condition("goal_id", "isnull", value),)
        if kind == "rows":
            return sql(one(found["tasks"], ListPlan(conditions=items)), postgres)
        if kind == "count":
            return sql(found["tasks"].count(items), postgres)
        if kind == "time_range":
            query = RESOURCES.manifest.entity("tasks").queries["by-timerange"]
            assert isinstance(query, TimeRangeQuery)
            return sql(found["tasks"].time_range("by-timerange", query, items), postgres)
        return sql(found["users"].embed(embed, found["tasks"], items), postgres)

    assert "tasks.goal_id IS NULL" in compiled(True)
    assert "tasks.goal_id IS NOT NULL" in compiled(False)


def test_statements_are_cached_per_shape_and_null_pattern() -> None:
    tasks = STATEMENTS[PG]["tasks"]
    created = (OrderTerm("created_at", True), OrderTerm("title"), OrderTerm("id", True))
    first = one(tasks, ListPlan(order=created, after=(WHEN, "a", U1)))
    assert one(tasks, ListPlan(order=created, after=(datetime.now(UTC), "b", U1))) is first
    assert one(tasks, ListPlan(order=created, after=(WHEN, None, U1))) is not first
    assert one(tasks, ListPlan(order=created)) is not first
    filtered = one(tasks, ListPlan(conditions=(Condition("status", "eq", "done"),)))
    assert one(tasks, ListPlan(conditions=(Condition("status", "eq", "missed"),))) is filtered
    assert one(tasks, ListPlan(conditions=(Condition("status", "ne", "done"),))) is not filtered


# --- a nullable first sort key: values, then nulls ------------------------------------------------------------------


def parts(resource: str, plan: ListPlan, postgres: bool = PG) -> list[tuple[str, str, tuple[Any, ...] | None]]:
    """Each statement of a page: its WHERE clause, its ORDER BY, the position it continues from."""
    found = []
    for part in STATEMENTS[postgres][resource].rows(plan):
        text = sql(part.statement, postgres)
        clause = where(part.statement, postgres) if " WHERE " in text else ""
        found.append((clause, text.split(" ORDER BY ")[1].split(" LIMIT ")[0], part.after))
    return found


@pytest.mark.parametrize("descending", [False, True])
def test_a_nullable_first_key_reads_the_values_then_the_nulls_each_in_plain_index_order(descending: bool) -> None:
    direction = "DESC" if descending else "ASC"
    order = (OrderTerm("scheduled_at", descending), OrderTerm("id", descending))
    assert parts("tasks", ListPlan(order=order)) == [
        ("tasks.scheduled_at IS NOT NULL", f"tasks.scheduled_at {direction}, tasks.id {direction}", None),
        ("tasks.scheduled_at IS NULL", f"tasks.id {direction}", None),
    ]


def test_a_cursor_among_the_values_seeks_then_reads_every_null() -> None:
    order = (OrderTerm("scheduled_at", True), OrderTerm("id", True))
    [values, nulls] = parts("tasks", ListPlan(order=order, after=(WHEN, U1)))
    assert values[0] == (
        "tasks.scheduled_at IS NOT NULL AND tasks.scheduled_at <= %(k0)s AND (tasks.scheduled_at < %(k0)s "
        "OR tasks.scheduled_at = %(k0)s AND tasks.id < %(k1)s)"
    )
    assert values[2] == (WHEN, U1)
    assert nulls == ("tasks.scheduled_at IS NULL", "tasks.id DESC", None)


def test_a_cursor_among_the_nulls_reads_only_the_rest_of_the_nulls() -> None:
    order = (OrderTerm("scheduled_at"), OrderTerm("title", True), OrderTerm("id"))
    assert parts("tasks", ListPlan(order=order, after=(None, "Run", U1)), LITE) == [
        (
            "tasks.scheduled_at IS NULL AND tasks.title <= ? AND (tasks.title < ? OR tasks.title = ? AND tasks.id > ?)",
            "tasks.title DESC, tasks.id ASC",
            ("Run", U1),
        )
    ]


def test_nulls_first_reads_the_nulls_then_the_values() -> None:
    [nulls, values] = parts("events", ListPlan())
    assert (nulls[0], values[0]) == ("events.at IS NULL", "events.at IS NOT NULL")
    [only] = parts("events", ListPlan(after=(WHEN, U1)))  # a cursor among the values has read every null
    assert only[0].startswith("events.at IS NOT NULL AND events.at >= %(k0)s")


def test_offset_paging_keeps_one_statement_with_nulls_placed_in_it() -> None:
    [(_, order, _)] = parts("notification_log", ListPlan(offset=100))
    assert order == "notification_log.sent_at DESC NULLS LAST, notification_log.id DESC"


# --- embeds -------------------------------------------------------------------------------------------------------


def embed_sql(parent: str, name: str, postgres: bool, *items: Condition) -> str:
    embed = RESOURCES.embeds[parent][name]
    found = STATEMENTS[postgres]
    return sql(found[parent].embed(embed, found[embed.target], items), postgres)


def test_a_to_many_embed_is_a_lateral_join_on_postgres() -> None:
    text = embed_sql("users", "tasks", PG, Condition("status", "in", ("pending",)))
    assert "FROM unnest(%(parent_ids)s) AS anon_1(parent_id) JOIN LATERAL (SELECT " in text
    assert (
        "FROM tasks WHERE tasks.user_id = anon_1.parent_id AND tasks.status = ANY (%(c0)s) "
        "ORDER BY tasks.created_at DESC, tasks.id DESC LIMIT %(per_parent)s) AS children ON true"
    ) in text
    assert "row_number" not in text


def test_a_to_many_embed_is_a_row_number_window_on_sqlite() -> None:
    text = embed_sql("users", "tasks", LITE, Condition("status", "in", ("pending",)))
    assert (
        "row_number() OVER (PARTITION BY tasks.user_id ORDER BY tasks.created_at DESC, tasks.id DESC) AS rank "
        "FROM tasks WHERE tasks.user_id IN (__[POSTCOMPILE_parent_ids]) AND tasks.status IN (__[POSTCOMPILE_c0])"
    ) in text
    assert text.endswith("WHERE ranked.rank <= ? ORDER BY ranked.rank")
    assert "LATERAL" not in text


@pytest.mark.parametrize("postgres", [PG, LITE])
def test_a_to_many_embed_keeps_the_childs_null_placement(postgres: bool) -> None:
    text = embed_sql("tasks", "notification_log", postgres)
    assert "ORDER BY notification_log.sent_at DESC NULLS LAST, notification_log.id DESC" in text
    assert "notification_log.task_id" in text


@pytest.mark.parametrize("postgres", [PG, LITE])
def test_a_to_many_embed_selects_the_childs_read_columns_in_order(postgres: bool) -> None:
    text = embed_sql("users", "goals", postgres)
    outer = text.split(" FROM ")[0].removeprefix("SELECT ")
    alias = "children" if postgres else "ranked"
    expected = ", ".join(f"{alias}.{column}" for column in RESOURCES.manifest.entity("goals").read_columns)
    assert outer == expected


def test_a_self_referencing_to_many_embed_goes_through_its_reference() -> None:
    assert "goals.parent_goal_id = anon_1.parent_id" in embed_sql("goals", "goals", PG)
    assert "PARTITION BY goals.parent_goal_id" in embed_sql("goals", "goals", LITE)


@pytest.mark.parametrize(
    ("postgres", "expected"),
    [(PG, "WHERE goals.id = ANY (%(parent_ids)s)"), (LITE, "WHERE goals.id IN (__[POSTCOMPILE_parent_ids])")],
)
def test_a_to_one_embed_reads_the_parents_by_id(postgres: bool, expected: str) -> None:
    text = embed_sql("tasks", "goal", postgres)
    assert text.endswith(expected)
    assert "ORDER BY" not in text
    assert "LIMIT" not in text


def test_embed_statements_are_cached_per_filter_shape() -> None:
    found = STATEMENTS[PG]
    embed = RESOURCES.embeds["users"]["tasks"]
    first = found["users"].embed(embed, found["tasks"], (Condition("status", "eq", "done"),))
    assert found["users"].embed(embed, found["tasks"], (Condition("status", "eq", "missed"),)) is first
    assert found["users"].embed(embed, found["tasks"], ()) is not first


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (Condition("scheduled_at", "gte", WHEN), ["tasks.scheduled_at IS NOT NULL"]),
        (Condition("scheduled_at", "isnull", False), ["tasks.scheduled_at IS NOT NULL"]),
        (Condition("scheduled_at", "isnull", True), ["tasks.scheduled_at IS NULL"]),
        (Condition("status", "eq", "done"), ["tasks.scheduled_at IS NOT NULL", "tasks.scheduled_at IS NULL"]),
    ],
)
def test_a_filter_on_the_nullable_key_that_decides_its_nullness_leaves_one_statement(
    condition: Condition, expected: list[str]
) -> None:
    order = (OrderTerm("scheduled_at"), OrderTerm("id"))
    found = parts("tasks", ListPlan(conditions=(condition,), order=order))
    assert [clause.split(" AND ")[-1] for clause, _, _ in found] == expected
