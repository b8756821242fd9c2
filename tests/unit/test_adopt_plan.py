"""The adoption planner (pure): a live catalog against the manifest, step by step, without a database."""

from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from flux_dao.manifest import load_manifest
from flux_dao.schema import build_resources
from flux_dao.store.adopt.catalog import (
    LiveCheck,
    LiveColumn,
    LiveForeignKey,
    LiveIndex,
    LivePolicy,
    LiveSchema,
    LiveTable,
    LiveView,
)
from flux_dao.store.adopt.plan import DIALECT, Kind, Phase, Plan, Step, enum_values, plan_adoption, postgres_type
from tests.conftest import MANIFEST

METADATA = build_resources(load_manifest(MANIFEST)).metadata


def _default(column: sa.Column[Any]) -> str | None:
    default = column.server_default
    if not isinstance(default, sa.DefaultClause):
        return None
    arg = default.arg
    if isinstance(arg, str):
        return f"'{arg}'::text"
    return str(arg.compile(dialect=DIALECT)) if not isinstance(arg, sa.TextClause) else arg.text


def _live_check(check: sa.CheckConstraint) -> LiveCheck:
    """An enum's CHECK as PostgreSQL spells it back: ``CHECK ((status = ANY (ARRAY['a'::text, ...])))``."""
    (column,) = {c.name for c in sa.sql.visitors.iterate(check.sqltext) if isinstance(c, sa.ColumnClause)}
    values = ", ".join(f"'{v}'::text" for v in check.sqltext.right.value)  # type: ignore[attr-defined]
    return LiveCheck(str(check.name), (column,), f"CHECK (({column} = ANY (ARRAY[{values}])))")


def _live_table(table: sa.Table) -> LiveTable:
    """``table`` as PostgreSQL's catalog would describe it had the migrations made it."""
    columns = {
        c.name: LiveColumn(c.name, postgres_type(c.type), bool(c.nullable), _default(c), c.comment)
        for c in table.columns
    }
    checks = tuple(_live_check(c) for c in table.constraints if isinstance(c, sa.CheckConstraint))
    keys = tuple(
        LiveForeignKey(str(k.name), tuple(k.column_keys), k.referred_table.name, (k.ondelete or "NO ACTION").upper())
        for k in table.foreign_key_constraints
    )
    key = tuple(c.name for c in table.primary_key.columns)
    indexes = [LiveIndex(f"pk_{table.name}", key, True, True, f"pk_{table.name}", True, "")]
    indexes += [
        LiveIndex(str(u.name), tuple(c.name for c in u.columns), True, False, str(u.name), True, "")
        for u in table.constraints
        if isinstance(u, sa.UniqueConstraint)
    ]
    indexes += [
        LiveIndex(str(i.name), tuple(c.name for c in i.columns), bool(i.unique), False, None, True, "")
        for i in table.indexes
    ]
    return LiveTable(table.name, "postgres", columns, checks, keys, tuple(indexes))


def _live(**changed: LiveTable) -> LiveSchema:
    tables = {t.name: _live_table(t) for t in METADATA.sorted_tables}
    every = frozenset(tables)
    return LiveSchema("public", tables | changed, {}, "postgres", role_bypasses_rls=True, altered_by_role=every)


def _with_column(table: str, column: LiveColumn) -> LiveTable:
    base = _live_table(METADATA.tables[table])
    return replace(base, columns={**base.columns, column.name: column})


def _step(plan: Plan, subject: str) -> Step:
    found = [s for s in plan.steps if s.subject == subject]
    assert len(found) == 1, [str(s) for s in plan.steps]
    return found[0]


def test_a_database_the_migrations_made_needs_nothing() -> None:
    plan = plan_adoption(_live(), METADATA)
    assert plan.statements == []
    assert [s for s in plan.steps if s.kind is not Kind.KEPT] == []


def test_an_array_becomes_json_with_an_explicit_conversion() -> None:
    plan = plan_adoption(_live(goals=_with_column("goals", LiveColumn("class_tags", "text[]", True, None))), METADATA)
    step = _step(plan, "goals.class_tags")
    assert step.kind is Kind.REPRESENTATION
    assert "text[] becomes JSON" in step.words
    assert step.sql == (
        (Phase.CONVERT, "ALTER TABLE goals ALTER COLUMN class_tags TYPE jsonb USING to_jsonb(class_tags)"),
    )


def test_a_nullable_column_the_manifest_requires_is_guarded_by_a_null_count() -> None:
    plan = plan_adoption(
        _live(goals=_with_column("goals", LiveColumn("status", "text", True, "'active'::text"))), METADATA
    )
    step = _step(plan, "goals.status")
    assert step.kind is Kind.SAFE
    assert step.guard is not None
    assert step.guard.condition == "status IS NULL"
    assert step.sql == ((Phase.COLUMNS, "ALTER TABLE goals ALTER COLUMN status SET NOT NULL"),)


def test_narrowing_text_is_guarded_by_the_longest_value() -> None:
    plan = plan_adoption(_live(users=_with_column("users", LiveColumn("email", "text", False, None))), METADATA)
    step = _step(plan, "users.email")
    assert step.guard is not None
    assert step.guard.condition == "length(email) > 255"
    assert step.sql == ((Phase.CONVERT, "ALTER TABLE users ALTER COLUMN email TYPE character varying(255)"),)


def test_a_type_with_no_safe_conversion_would_lose_data() -> None:
    plan = plan_adoption(
        _live(tasks=_with_column("tasks", LiveColumn("duration_minutes", "text", True, None))), METADATA
    )
    step = _step(plan, "tasks.duration_minutes")
    assert step.kind is Kind.LOSES_DATA
    assert step.sql == ()
    assert "text" in step.words
    assert "integer" in step.words


def test_a_missing_column_with_a_default_is_added_and_updated_at_takes_created_at() -> None:
    base = _live_table(METADATA.tables["tasks"])
    columns = {k: v for k, v in base.columns.items() if k not in {"updated_at", "version"}}
    plan = plan_adoption(_live(tasks=replace(base, columns=columns)), METADATA)
    assert _step(plan, "tasks.version").sql == (
        (Phase.ADD_COLUMNS, "ALTER TABLE tasks ADD COLUMN version INTEGER DEFAULT 1 NOT NULL"),
    )
    updated = _step(plan, "tasks.updated_at")
    assert (Phase.FILL, "UPDATE tasks SET updated_at = created_at WHERE created_at IS NOT NULL") in updated.sql


def test_a_missing_required_column_without_default_would_lose_data() -> None:
    base = _live_table(METADATA.tables["tasks"])
    plan = plan_adoption(
        _live(tasks=replace(base, columns={k: v for k, v in base.columns.items() if k != "title"})), METADATA
    )
    step = _step(plan, "tasks.title")
    assert step.kind is Kind.BLOCKED
    assert step.guard is not None
    assert step.guard.condition == "true"


def test_a_check_with_another_value_set_is_replaced_and_guarded() -> None:
    base = _live_table(METADATA.tables["goals"])
    old = LiveCheck("goals_status_check", ("status",), "CHECK ((status = ANY (ARRAY['active'::text, 'done'::text])))")
    plan = plan_adoption(_live(goals=replace(base, checks=(old,))), METADATA)
    step = _step(plan, "goals.status")
    assert "the database allows active, done; the manifest allows abandoned, active, completed, pipeline" in step.words
    assert (Phase.DROP_CONSTRAINTS, "ALTER TABLE goals DROP CONSTRAINT goals_status_check") in step.sql
    assert step.guard is not None
    assert step.guard.column == "status"
    assert "NOT (status IN ('active', 'completed', 'abandoned', 'pipeline'))" in step.guard.condition


def test_a_check_with_the_same_values_under_another_name_is_renamed() -> None:
    base = _live_table(METADATA.tables["goals"])
    same = replace(base.checks[0], name="goals_status_check")
    plan = plan_adoption(_live(goals=replace(base, checks=(same,))), METADATA)
    assert plan.statements == ["ALTER TABLE goals RENAME CONSTRAINT goals_status_check TO ck_goals_status"]


def test_a_foreign_key_with_another_on_delete_is_replaced() -> None:
    base = _live_table(METADATA.tables["conversations"])
    keys = (LiveForeignKey("conversations_user_id_fkey", ("user_id",), "users", "NO ACTION"),)
    plan = plan_adoption(_live(conversations=replace(base, foreign_keys=keys)), METADATA)
    step = _step(plan, "conversations.user_id")
    assert "ON DELETE NO ACTION becomes CASCADE" in step.words
    assert step.guard is None  # the rows already satisfied a key on the same columns
    assert plan.statements == [
        "ALTER TABLE conversations DROP CONSTRAINT conversations_user_id_fkey",
        "ALTER TABLE conversations ADD CONSTRAINT fk_conversations_user_id_users FOREIGN KEY(user_id) "
        "REFERENCES users (id) ON DELETE CASCADE",
    ]


def test_a_missing_foreign_key_is_guarded_by_the_orphans() -> None:
    base = _live_table(METADATA.tables["tasks"])
    plan = plan_adoption(_live(tasks=replace(base, foreign_keys=base.foreign_keys[:1])), METADATA)
    missing = next(k for k in METADATA.tables["tasks"].foreign_key_constraints if k.name != base.foreign_keys[0].name)
    step = _step(plan, f"tasks.{missing.column_keys[0]}")
    assert step.guard is not None
    assert "NOT EXISTS" in step.guard.condition


def test_indexes_are_renamed_created_or_kept() -> None:
    base = _live_table(METADATA.tables["tasks"])
    others = [i for i in base.indexes if i.name not in {"ix_tasks_status", "ix_tasks_goal_id"}]
    renamed = LiveIndex("idx_tasks_status", ("status",), False, False, None, True, "")
    extra = LiveIndex("idx_tasks_whatsapp", ("whatsapp_sent_at",), False, False, None, True, "CREATE INDEX ...")
    plan = plan_adoption(_live(tasks=replace(base, indexes=(*others, renamed, extra))), METADATA)
    assert plan.statements == [
        "CREATE INDEX ix_tasks_goal_id ON tasks (goal_id)",
        "ALTER INDEX idx_tasks_status RENAME TO ix_tasks_status",
    ]
    assert _step(plan, "index idx_tasks_whatsapp on tasks").kind is Kind.KEPT


def test_a_missing_table_is_created() -> None:
    tables = {t.name: _live_table(t) for t in METADATA.sorted_tables if t.name != "flux_dao_changes"}
    plan = plan_adoption(LiveSchema("public", tables), METADATA)
    assert plan.statements[0].startswith("CREATE TABLE flux_dao_changes (")


def test_views_over_a_converted_column_are_dropped_dependents_first_and_recreated_in_order() -> None:
    live = _live(goals=_with_column("goals", LiveColumn("class_tags", "text[]", True, None)))
    base = LiveView("by_tag", True, " SELECT class_tags FROM goals;", "postgres", frozenset({("goals", "class_tags")}))
    top = LiveView(
        "top_tags",
        False,
        " SELECT class_tags FROM by_tag;",
        "flux",
        frozenset({("by_tag", "class_tags")}),
        grants=(("reader", "SELECT", True),),
    )
    other = LiveView("titles", False, " SELECT title FROM goals;", "postgres", frozenset({("goals", "title")}))
    plan = plan_adoption(replace(live, views={"top_tags": top, "by_tag": base, "titles": other}), METADATA)
    assert plan.statements == [
        "DROP VIEW top_tags",
        "DROP MATERIALIZED VIEW by_tag",
        "ALTER TABLE goals ALTER COLUMN class_tags TYPE jsonb USING to_jsonb(class_tags)",
        "CREATE MATERIALIZED VIEW by_tag AS SELECT class_tags FROM goals WITH DATA",
        "ALTER MATERIALIZED VIEW by_tag OWNER TO postgres",
        "CREATE VIEW top_tags AS SELECT class_tags FROM by_tag",
        "ALTER VIEW top_tags OWNER TO flux",
        "GRANT SELECT ON top_tags TO reader WITH GRANT OPTION",
    ]
    assert _step(plan, "view titles").kind is Kind.KEPT


@pytest.mark.parametrize(
    ("role", "bypasses", "owner", "expected"),
    [
        ("postgres", True, "postgres", "the policies do not apply to it"),
        ("flux", False, "flux", "the tables' owner"),
        ("agent", False, "flux", "to which the policies apply"),
    ],
)
def test_row_level_security_is_listed_with_whether_it_applies(
    role: str, bypasses: bool, owner: str, expected: str
) -> None:
    users = replace(
        _live_table(METADATA.tables["users"]),
        owner=owner,
        row_security=True,
        policies=(LivePolicy("users_own", "ALL", ("public",), "(id = auth.uid())", None),),
    )
    live = replace(_live(users=users), role=role, role_bypasses_rls=bypasses)
    notes = plan_adoption(live, METADATA).notes
    assert notes[0] == "row-level security is on for users: users_own (ALL, USING (id = auth.uid()))"
    assert expected in notes[1]


def test_a_missing_description_becomes_the_column_comment() -> None:
    plan = plan_adoption(_live(users=_with_column("users", LiveColumn("profile", "jsonb", True, None))), METADATA)
    assert plan.statements == ["COMMENT ON COLUMN users.profile IS 'Free-form profile object.'"]


@pytest.mark.parametrize(
    ("definition", "values"),
    [
        ("CHECK ((status = ANY (ARRAY['a'::text, 'b'::text])))", {"a", "b"}),
        (
            "CHECK (((status)::text = ANY ((ARRAY['a'::character varying, 'it''s'::character varying])::text[])))",
            {"a", "it's"},
        ),
        ("CHECK ((status = 'a'::text))", {"a"}),
        ("CHECK ((status = ANY (ARRAY['a'::text]))) NOT VALID", {"a"}),
        ("CHECK ((status <> ALL (ARRAY['a'::text, 'b'::text])))", None),  # NOT IN: the opposite rule
        ("CHECK ((length(status) < 20))", None),
        ("CHECK ((other = ANY (ARRAY['a'::text])))", None),
        ("CHECK (((status = 'a'::text) OR (status = lower(status))))", None),
    ],
)
def test_only_an_in_list_on_the_column_counts_as_an_enum_check(definition: str, values: set[str] | None) -> None:
    assert enum_values(definition, "status") == (frozenset(values) if values is not None else None)


def test_a_users_own_check_on_an_enum_column_is_kept() -> None:
    base = _live_table(METADATA.tables["tasks"])
    own = LiveCheck("tasks_status_len", ("status",), "CHECK ((length(status) < 20))")
    plan = plan_adoption(_live(tasks=replace(base, checks=(*base.checks, own))), METADATA)
    assert plan.statements == []
    assert _step(plan, "constraint tasks_status_len on tasks").kind is Kind.KEPT


def test_a_name_another_object_holds_is_refused_not_reused() -> None:
    base = _live_table(METADATA.tables["goals"])
    indexes = tuple(i for i in base.indexes if i.name != "ix_goals_completed_at")
    live = replace(_live(goals=replace(base, indexes=indexes)), relations=frozenset({"ix_goals_completed_at"}))
    step = _step(plan_adoption(live, METADATA), "index ix_goals_completed_at (completed_at) on goals")
    assert step.kind is Kind.BLOCKED
    assert step.sql == ()


def test_a_guard_on_a_column_the_plan_adds_is_dropped() -> None:
    base = _live_table(METADATA.tables["tasks"])
    columns = {k: v for k, v in base.columns.items() if k != "trigger_type"}
    checks = tuple(c for c in base.checks if c.columns != ("trigger_type",))
    plan = plan_adoption(_live(tasks=replace(base, columns=columns, checks=checks)), METADATA)
    added, check = [s for s in plan.steps if s.subject == "tasks.trigger_type"]
    assert added.sql[0][1].startswith("ALTER TABLE tasks ADD COLUMN trigger_type TEXT DEFAULT 'time' NOT NULL")
    assert check.sql[0][1].startswith("ALTER TABLE tasks ADD CONSTRAINT ck_tasks_trigger_type CHECK")
    assert check.guard is None  # its rows all hold the default


def test_a_table_the_role_may_not_alter_is_refused() -> None:
    live = replace(
        _live(goals=_with_column("goals", LiveColumn("class_tags", "text[]", True, None))),
        altered_by_role=frozenset(t.name for t in METADATA.sorted_tables if t.name != "goals"),
    )
    assert _step(plan_adoption(live, METADATA), "table goals").kind is Kind.BLOCKED


def test_a_postgres_enum_becomes_text_and_a_uuid_in_text_becomes_uuid() -> None:
    goals = _with_column("goals", LiveColumn("status", "goal_status", False, "'active'::goal_status", None, True))
    tasks = _with_column("tasks", LiveColumn("goal_id", "text", True, None))
    plan = plan_adoption(_live(goals=goals, tasks=tasks), METADATA)
    assert _step(plan, "goals.status").sql == (
        (Phase.CONVERT, "ALTER TABLE goals ALTER COLUMN status DROP DEFAULT"),
        (Phase.CONVERT, "ALTER TABLE goals ALTER COLUMN status TYPE text USING status::text"),
        (Phase.COLUMNS, "ALTER TABLE goals ALTER COLUMN status SET DEFAULT 'active'"),
    )
    uuid_step = _step(plan, "tasks.goal_id")
    assert uuid_step.sql == ((Phase.CONVERT, "ALTER TABLE tasks ALTER COLUMN goal_id TYPE uuid USING goal_id::uuid"),)
    assert uuid_step.guard is not None
    assert "!~*" in uuid_step.guard.condition


def test_a_view_is_recreated_with_its_options_data_state_and_extras() -> None:
    live = _live(goals=_with_column("goals", LiveColumn("class_tags", "text[]", True, None)))
    view = LiveView(
        "tags",
        True,
        " SELECT class_tags FROM goals;",
        "postgres",
        frozenset({("goals", "class_tags")}),
        options=("security_barrier=true",),
        populated=False,
        extras=("COMMENT ON COLUMN tags.class_tags IS 'tags'",),
    )
    plan = plan_adoption(replace(live, views={"tags": view}), METADATA)
    assert plan.statements[-3:] == [
        "CREATE MATERIALIZED VIEW tags WITH (security_barrier=true) AS SELECT class_tags FROM goals WITH NO DATA",
        "ALTER MATERIALIZED VIEW tags OWNER TO postgres",
        "COMMENT ON COLUMN tags.class_tags IS 'tags'",
    ]


def test_a_column_that_differs_only_in_case_is_not_added_beside_it() -> None:
    base = _live_table(METADATA.tables["goals"])
    columns = {k: v for k, v in base.columns.items() if k != "description"}
    columns["Description"] = replace(base.columns["description"], name="Description")
    plan = plan_adoption(_live(goals=replace(base, columns=columns)), METADATA)
    step = _step(plan, "goals.description")
    assert step.kind is Kind.BLOCKED
    assert 'RENAME COLUMN "Description" TO description' in step.words
