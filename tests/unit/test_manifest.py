from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from flux_dao.errors import ManifestError
from flux_dao.manifest import load_manifest, parse_manifest
from flux_dao.query.compiler import ResourceStatements
from flux_dao.query.plans import Condition, ListPlan
from flux_dao.schema import build_resources

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "m.yaml"

OWNERS = """\
version: 1
resources:
  owners:
    fields:
      name: {type: string, required: true}
"""


def manifest_with(resource: str) -> str:
    return OWNERS + resource


def manifest_error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source=SOURCE)
    return str(info.value)


def assert_names(message: str, resource: str, field: str) -> None:
    assert SOURCE in message, message
    assert resource in message, message
    assert field in message, message


def test_valid_manifest_parses() -> None:
    manifest = parse_manifest(
        manifest_with("""\
  notes:
    fields:
      owner_id: {type: uuid, references: owners, on_delete: cascade, required: true, filter: true}
      kind: {type: enum, values: [a, b], default: a}
"""),
        source=SOURCE,
    )
    assert [e.name for e in manifest.entities] == ["owners", "notes"]


def test_unknown_type_names_file_resource_and_field() -> None:
    message = manifest_error(manifest_with("  notes:\n    fields:\n      body: {type: text}\n"))
    assert_names(message, "notes", "body")


def test_enum_without_values_names_file_resource_and_field() -> None:
    message = manifest_error(manifest_with("  notes:\n    fields:\n      kind: {type: enum}\n"))
    assert_names(message, "notes", "kind")


def test_enum_with_empty_values_names_file_resource_and_field() -> None:
    message = manifest_error(manifest_with("  notes:\n    fields:\n      kind: {type: enum, values: []}\n"))
    assert_names(message, "notes", "kind")


def test_enum_default_outside_values_names_file_resource_and_field() -> None:
    message = manifest_error(
        manifest_with("  notes:\n    fields:\n      kind: {type: enum, values: [a, b], default: c}\n")
    )
    assert_names(message, "notes", "kind")
    assert "'c'" in message


def test_reference_to_missing_entity_names_file_resource_and_field() -> None:
    message = manifest_error(
        manifest_with("  notes:\n    fields:\n      folder_id: {type: uuid, references: folders}\n")
    )
    assert_names(message, "notes", "folder_id")
    assert "folders" in message


def test_required_with_default_names_file_resource_and_field() -> None:
    message = manifest_error(
        manifest_with("  notes:\n    fields:\n      pinned: {type: boolean, required: true, default: false}\n")
    )
    assert_names(message, "notes", "pinned")


def test_unknown_key_in_field_names_file_resource_field_and_key() -> None:
    message = manifest_error(manifest_with("  notes:\n    fields:\n      body: {type: string, maxlength: 10}\n"))
    assert_names(message, "notes", "body")
    assert "maxlength" in message


def test_unknown_key_in_resource_names_file_resource_and_key() -> None:
    message = manifest_error(
        manifest_with("  notes:\n    fields:\n      body: {type: string}\n    ordering: [created_at desc]\n")
    )
    assert_names(message, "notes", "ordering")


def test_set_null_on_required_field_names_file_resource_and_field() -> None:
    message = manifest_error(
        manifest_with(
            "  notes:\n    fields:\n"
            "      owner_id: {type: uuid, references: owners, on_delete: set null, required: true}\n"
        )
    )
    assert_names(message, "notes", "owner_id")


def test_two_resources_generating_one_class_name_are_rejected() -> None:
    message = manifest_error(
        manifest_with(
            "  thing:\n    fields:\n      label: {type: string}\n  things:\n    fields:\n      label: {type: string}\n"
        )
    )
    assert SOURCE in message
    assert "'thing'" in message
    assert "'things'" in message


def test_filter_on_json_field_names_file_resource_and_field() -> None:
    message = manifest_error(manifest_with("  notes:\n    fields:\n      extra: {type: json, filter: true}\n"))
    assert_names(message, "notes", "extra")


def test_order_by_unknown_field_names_file_resource_and_field() -> None:
    message = manifest_error(
        manifest_with("  notes:\n    fields:\n      body: {type: string}\n    order_by: [posted_at desc]\n")
    )
    assert_names(message, "notes", "posted_at")


def test_bulk_update_on_immutable_field_names_file_resource_and_field() -> None:
    message = manifest_error(
        manifest_with(
            "  notes:\n    fields:\n"
            "      state: {type: enum, values: [open, shut], default: open, immutable: true}\n"
            "    queries:\n"
            "      bulk-close:\n"
            "        kind: bulk_update\n"
            "        field: state\n"
        )
    )
    assert_names(message, "notes", "state")
    assert "bulk-close" in message


def test_every_problem_is_reported_at_once() -> None:
    message = manifest_error(
        manifest_with(
            "  notes:\n    fields:\n"
            "      kind: {type: enum, values: [a], default: z}\n"
            "      folder_id: {type: uuid, references: folders}\n"
        )
    )
    assert "kind" in message
    assert "folder_id" in message


def test_project_manifest_loads_with_six_entities() -> None:
    manifest = load_manifest(ROOT / "resources.yaml")
    assert [e.name for e in manifest.entities] == [
        "users",
        "goals",
        "tasks",
        "conversations",
        "patterns",
        "notification_log",
    ]


def test_load_manifest_of_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ManifestError, match=r"nowhere\.yaml"):
        load_manifest(missing)


# --- statement compiler ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def statements() -> dict[str, ResourceStatements]:
    resources = build_resources(load_manifest(ROOT / "resources.yaml"))
    return {r.entity.name: ResourceStatements(r.entity, r.table) for r in resources.items}


def postgres_sql(stmt: sa.ClauseElement) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return " ".join(str(stmt.compile(dialect=dialect)).split())


def test_task_list_filters_orders_and_pages(statements: dict[str, ResourceStatements]) -> None:
    sql = postgres_sql(statements["tasks"].rows(ListPlan(conditions=(Condition("user_id", "eq", None),)))[0].statement)
    assert "WHERE tasks.user_id = %(c0)s" in sql
    assert "ORDER BY tasks.created_at DESC, tasks.id DESC" in sql
    assert "LIMIT %(limit)s" in sql
    assert "OFFSET %(offset)s" in sql
    assert sql.index("WHERE") < sql.index("ORDER BY") < sql.index("LIMIT")


def test_task_list_selects_every_read_column(statements: dict[str, ResourceStatements]) -> None:
    sql = postgres_sql(statements["tasks"].rows(ListPlan())[0].statement)
    select = sql.split(" FROM ")[0]
    for column in ("tasks.id", "tasks.user_id", "tasks.status", "tasks.shared_with_goal_ids", "tasks.created_at"):
        assert column in select
    assert "WHERE" not in sql


def test_notification_log_list_orders_nulls_last(statements: dict[str, ResourceStatements]) -> None:
    [values, nulls] = statements["notification_log"].rows(ListPlan())  # values, then nulls: each in index order
    assert "WHERE notification_log.sent_at IS NOT NULL ORDER BY notification_log.sent_at DESC" in postgres_sql(
        values.statement
    )
    assert "WHERE notification_log.sent_at IS NULL ORDER BY notification_log.id DESC" in postgres_sql(nulls.statement)


def test_patterns_list_orders_by_updated_at(statements: dict[str, ResourceStatements]) -> None:
    sql = postgres_sql(statements["patterns"].rows(ListPlan())[0].statement)
    assert "ORDER BY patterns.updated_at DESC, patterns.id DESC" in sql


def test_count_uses_the_same_filter_without_paging(statements: dict[str, ResourceStatements]) -> None:
    sql = postgres_sql(statements["tasks"].count((Condition("user_id", "eq", None), Condition("status", "eq", None))))
    assert "count(*)" in sql
    assert "tasks.user_id = %(c0)s" in sql
    assert "tasks.status = %(c1)s" in sql
    assert "LIMIT" not in sql
    assert "ORDER BY" not in sql


def test_query_parameters_that_collide_are_reported() -> None:
    message = manifest_error(
        manifest_with("""\
  notes:
    fields:
      owner_id: {type: uuid, references: owners, required: true}
      due_at: {type: datetime}
    queries:
      due:
        kind: time_range
        field: due_at
        scope: [owner_id]
        start: owner_id
"""),
    )
    assert_names(message, "notes", "due")
    assert "owner_id" in message


def test_an_explicit_operation_id_that_repeats_a_generated_one_is_reported() -> None:
    message = manifest_error(
        manifest_with("""\
  notes:
    fields:
      due_at: {type: datetime}
    queries:
      due: {kind: time_range, field: due_at, operation_id: list_notes}
"""),
    )
    assert "operationId 'list_notes'" in message


def test_a_query_whose_struct_repeats_a_generated_component_is_reported() -> None:
    message = manifest_error(
        manifest_with("""\
  notes:
    fields:
      kind: {type: enum, values: [a, b], default: a}
    queries:
      page: {kind: grouped_count, group_by: kind, time_field: created_at}
"""),
    )
    assert "OpenAPI component 'NotePage'" in message


@pytest.mark.parametrize("field", ["count", "skip", "limit"])
def test_list_parameter_names_are_reserved_for_fields(field: str) -> None:
    message = manifest_error(manifest_with(f"  notes:\n    fields:\n      {field}: {{type: integer}}\n"))
    assert_names(message, "notes", field)


# --- which fields get an index of their own ---------------------------------------------------------------------------

NOTES = """\
  notes:
    fields:
      owner_id: {type: uuid, references: owners}
      editor_id: {type: uuid, references: owners, index: false}
      kind: {type: string, filter: true}
      slug: {type: string, filter: true, unique: true}
      folder_id: {type: uuid, references: owners, filter: true}
      status: {type: string, filter: true, index: true}
      body: {type: string}
      rank: {type: integer, index: true}
    indexes:
      - fields: [folder_id, kind]
      - fields: [status, rank]
"""


def single_column_indexes(text: str) -> set[str]:
    table = build_resources(parse_manifest(text, source=SOURCE)).metadata.tables["notes"]
    return {next(iter(i.columns)).name for i in table.indexes if len(i.columns) == 1}


def test_references_and_filters_get_an_index_unless_told_not_to_or_already_served() -> None:
    assert single_column_indexes(manifest_with(NOTES)) == {
        "owner_id",  # a reference
        "kind",  # a filter (second in [folder_id, kind], which does not serve lookups on kind)
        "status",  # said so, although [status, rank] starts with it
        "rank",  # said so
    }  # not editor_id (index: false), slug (unique), folder_id (first in a declared index), body (neither)


def test_id_columns_get_a_database_default() -> None:
    table = build_resources(parse_manifest(manifest_with(NOTES), source=SOURCE)).metadata.tables["notes"]
    default = table.c.id.server_default
    assert default is not None
    assert str(sa.schema.CreateColumn(table.c.id).compile(dialect=postgresql.dialect())).endswith(
        "DEFAULT gen_random_uuid() NOT NULL"
    )
