"""Manifest checks of the query surface: operators that fit their column, ``filters`` on server-owned columns only,
embeds that name no column, field names an operator suffix cannot be confused with.

Each mistake is a ``ManifestError`` naming the file, the resource and the field (``parse_manifest`` on small YAML).
"""

import pytest

from flux_dao.errors import ManifestError
from flux_dao.manifest import parse_manifest
from flux_dao.manifest.columns import columns
from flux_dao.manifest.relations import embeds

SOURCE = "queries.yaml"
OWNERS = """\
version: 1
resources:
  owners:
    fields:
      name: {type: string, required: true}
"""


def notes(fields: str, extra: str = "") -> str:
    """A ``notes`` resource with ``fields`` (YAML lines under ``fields:``) and ``extra`` resource keys."""
    body = "".join(f"      {line}\n" for line in fields.splitlines())
    return OWNERS + "  notes:\n    fields:\n" + body + "".join(f"    {line}\n" for line in extra.splitlines())


def manifest_error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source=SOURCE)
    return str(info.value)


def assert_names(message: str, resource: str, field: str) -> None:
    assert SOURCE in message, message
    assert f"'{resource}'" in message, message
    assert f"'{field}'" in message, message


# --- operators that do not fit their column -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("x: {type: boolean, filter: [gt]}", "filter 'gt' compares numbers, datetimes and strings"),
        ("x: {type: uuid, filter: [gte]}", "filter 'gte' compares numbers, datetimes and strings"),
        (
            "x: {type: enum, values: [a, b], filter: [lt]}",
            "filter 'lt' compares numbers, datetimes and strings",
        ),
        ("x: {type: json, filter: [lte]}", "filter 'lte' compares numbers, datetimes and strings"),
        (
            "x: {type: list, items: string, filter: [gt]}",
            "filter 'gt' compares numbers, datetimes and strings",
        ),
        ("x: {type: string, filter: [contains]}", "filter 'contains' applies to list fields only"),
        ("x: {type: json, filter: [contains]}", "filter 'contains' applies to list fields only"),
        ("x: {type: integer, filter: [icontains]}", "filter 'icontains' applies to string fields only"),
        ("x: {type: enum, values: [a], filter: [startswith]}", "filter 'startswith' applies to string fields only"),
        ("x: {type: list, items: string, filter: [icontains]}", "filter 'icontains' applies to string fields only"),
        ("x: {type: uuid, filter: [startswith]}", "filter 'startswith' applies to string fields only"),
        ("x: {type: list, items: uuid, filter: [in]}", "filter 'in' cannot compare a list field"),
        ("x: {type: list, items: string, filter: [eq]}", "filter 'eq' cannot compare a list field"),
        ("x: {type: json, filter: [ne]}", "filter 'ne' cannot compare a json field"),
        ("x: {type: json, filter: [in]}", "filter 'in' cannot compare a json field"),
        ("x: {type: string, required: true, filter: [isnull]}", "filter 'isnull' applies to nullable fields only"),
        ("x: {type: integer, default: 3, filter: [isnull]}", "filter 'isnull' applies to nullable fields only"),
        (
            "x: {type: enum, values: [a], default: a, filter: [eq, isnull]}",
            "filter 'isnull' applies to nullable fields only",
        ),
        ("x: {type: string, filter: [eq, in, eq]}", "filter lists an operator twice"),
    ],
)
def test_an_operator_that_does_not_fit_its_field_is_named(field: str, message: str) -> None:
    found = manifest_error(notes(field))
    assert_names(found, "notes", "x")
    assert message in found


@pytest.mark.parametrize(
    ("filters", "column", "message"),
    [
        ("{id: [gt]}", "id", "filter 'gt' compares numbers, datetimes and strings"),
        ("{id: [isnull]}", "id", "filter 'isnull' applies to nullable fields only"),
        ("{id: [icontains]}", "id", "filter 'icontains' applies to string fields only"),
        ("{created_at: [isnull]}", "created_at", "filter 'isnull' applies to nullable fields only"),
        ("{created_at: [contains]}", "created_at", "filter 'contains' applies to list fields only"),
        ("{created_at: [startswith]}", "created_at", "filter 'startswith' applies to string fields only"),
        ("{created_at: [gte, gte]}", "created_at", "filter lists an operator twice"),
    ],
)
def test_an_operator_that_does_not_fit_a_server_owned_column_is_named(filters: str, column: str, message: str) -> None:
    found = manifest_error(notes("body: {type: string}", f"filters: {filters}"))
    assert_names(found, "notes", column)
    assert message in found


def test_a_filter_true_on_a_list_is_refused() -> None:
    found = manifest_error(notes("x: {type: list, items: string, filter: true}"))
    assert_names(found, "notes", "x")


def test_an_unknown_operator_is_named() -> None:
    found = manifest_error(notes("x: {type: string, filter: [eq, between]}"))
    assert_names(found, "notes", "x")
    assert "between" in found


def test_operators_that_fit_are_accepted() -> None:
    manifest = parse_manifest(
        notes(
            "owner_id: {type: uuid, references: owners, filter: [eq, ne, in, isnull]}\n"
            "title: {type: string, required: true, filter: [eq, ne, in, gt, gte, lt, lte, icontains, startswith]}\n"
            "note: {type: string, filter: [isnull, icontains]}\n"
            "rank: {type: integer, default: 0, filter: [eq, ne, in, gt, gte, lt, lte]}\n"
            "weight: {type: float, filter: [gt, lte, isnull]}\n"
            "due_at: {type: datetime, filter: [gt, gte, lt, lte, isnull]}\n"
            "kind: {type: enum, values: [a, b], default: a, filter: [eq, ne, in]}\n"
            "done: {type: boolean, default: false, filter: [eq, ne, in]}\n"
            "tags: {type: list, items: string, filter: [contains]}\n"
            "refs: {type: list, items: uuid, filter: [contains]}",
            "timestamps: [created_at, updated_at]\n"
            "filters: {id: [eq, ne, in], created_at: [gte, lt], updated_at: [gt]}",
        ),
        source=SOURCE,
    )
    info = columns(manifest.entity("notes"))
    assert info["id"].operators == ("eq", "ne", "in")
    assert info["updated_at"].operators == ("gt",)
    assert info["title"].operators[-1] == "startswith"
    assert info["done"].sortable
    assert not info["tags"].sortable


# --- filters: only on the columns the server owns ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "column"),
    [
        ("{body: [eq]}", "body"),  # a field: filter it in place
        ("{nope: [eq]}", "nope"),
        ("{sent_at: [gte]}", "sent_at"),  # named like a timestamp, but not one the server keeps
    ],
)
def test_filters_on_a_column_the_server_does_not_own_are_refused(filters: str, column: str) -> None:
    found = manifest_error(notes("body: {type: string}", f"filters: {filters}"))
    assert_names(found, "notes", column)
    assert f"filters: '{column}' is not a server-owned column (created_at, id, updated_at, version)" in found


def test_filters_on_created_at_need_it_to_be_a_timestamp() -> None:
    found = manifest_error(notes("body: {type: string}", "timestamps: []\nfilters: {created_at: [gte]}"))
    assert_names(found, "notes", "created_at")
    assert "is not a server-owned column (id, updated_at, version)" in found


# --- embeds that would shadow a column, names that would read as an operator --------------------------------------


def test_a_to_one_embed_named_like_a_column_is_refused() -> None:
    found = manifest_error(notes("owner_id: {type: uuid, references: owners}\nowner: {type: string}"))
    assert_names(found, "notes", "owner")
    assert "embed 'owner' (from the reference owner_id) has the name of a column" in found


def test_a_to_many_embed_named_like_a_column_is_refused() -> None:
    text = OWNERS.replace(
        "      name: {type: string, required: true}\n",
        "      name: {type: string, required: true}\n      notes: {type: json}\n",
    ) + ("  notes:\n    fields:\n      owner_id: {type: uuid, references: owners}\n")
    found = manifest_error(text)
    assert_names(found, "owners", "notes")
    assert "embed 'notes' (from the reference owner_id) has the name of a column" in found


def test_an_embed_with_a_reserved_name_is_refused() -> None:
    found = manifest_error(notes("include_id: {type: uuid, references: owners}"))
    assert_names(found, "notes", "include")
    assert "embed 'include' is a reserved name" in found


def test_embeds_of_several_references_to_one_resource_get_distinct_names() -> None:
    manifest = parse_manifest(
        notes("author_id: {type: uuid, references: owners}\neditor_id: {type: uuid, references: owners}"),
        source=SOURCE,
    )
    assert list(embeds(manifest, manifest.entity("owners"))) == ["notes_by_author", "notes_by_editor"]
    assert list(embeds(manifest, manifest.entity("notes"))) == ["author", "editor"]


@pytest.mark.parametrize("name", ["status__in", "a__b", "x__"])
def test_a_field_name_with_a_double_underscore_is_refused(name: str) -> None:
    found = manifest_error(notes(f"{name}: {{type: string}}"))
    assert_names(found, "notes", name)
    assert "name must not contain '__' (it separates a field from its filter operator: status__in)" in found


@pytest.mark.parametrize("name", ["sort", "cursor", "fields", "include", "include_limit"])
def test_the_query_languages_parameter_names_are_reserved(name: str) -> None:
    found = manifest_error(notes(f"{name}: {{type: string}}"))
    assert_names(found, "notes", name)
    assert f"'{name}' is reserved: the engine manages it" in found


# --- sort ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["x: {type: json, sort: true}", "x: {type: list, items: uuid, sort: true}"])
def test_sort_on_a_json_or_list_field_is_refused(field: str) -> None:
    found = manifest_error(notes(field))
    assert_names(found, "notes", "x")
    assert "field cannot be sorted" in found


def test_sort_defaults_to_every_scalar_field_and_can_be_turned_off() -> None:
    manifest = parse_manifest(
        notes("a: {type: string}\nb: {type: string, sort: false}\nc: {type: json}\nd: {type: integer}"),
        source=SOURCE,
    )
    sortable = {name for name, column in columns(manifest.entity("notes")).items() if column.sortable}
    assert sortable == {"id", "a", "d", "created_at", "updated_at", "version"}


# --- every mistake at once ----------------------------------------------------------------------------------------


def test_every_query_surface_mistake_is_reported_at_once() -> None:
    found = manifest_error(
        notes(
            "owner_id: {type: uuid, references: owners}\n"
            "owner: {type: string, filter: [contains]}\n"
            "a__b: {type: integer, required: true, filter: [isnull]}",
            "filters: {owner: [eq], id: [gt]}",
        )
    )
    lines = found.splitlines()
    assert all(line.startswith(f"{SOURCE}: resource 'notes'") for line in lines), lines
    for fragment in (
        "filters: 'owner' is not a server-owned column",
        "field 'id': filter 'gt' compares",
        "field 'owner': filter 'contains' applies to list fields only",
        "field 'a__b': filter 'isnull' applies to nullable fields only",
        "embed 'owner' (from the reference owner_id) has the name of a column",
        "field 'a__b': name must not contain '__'",
    ):
        assert sum(fragment in line for line in lines) == 1, fragment
