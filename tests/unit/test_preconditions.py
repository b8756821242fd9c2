"""The pure parsing of conditional-request headers (RFC 9110 §13): ``If-Match``, ``If-None-Match`` and ``ETag``."""

import pytest

from flux_dao.errors import InvalidInputError, ManifestError, PreconditionRequiredError
from flux_dao.http.preconditions import NEVER, etag, expected_version, if_match, not_modified
from flux_dao.manifest import parse_manifest
from flux_dao.manifest.spec import EntitySpec

MANIFEST = """\
version: 1
resources:
  notes:
    fields:
      body: {type: string}
  ledgers:
    concurrency: required
    fields:
      total: {type: integer}
"""


def entity(name: str) -> EntitySpec:
    manifest = parse_manifest(MANIFEST, source="m.yaml")
    return next(e for e in manifest.entities if e.name == name)


def invalid_field(header: str, name: str = "If-Match") -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        if_match(header, name)
    return [error.field for error in info.value.errors]


# --- etag ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "tag"), [(1, '"1"'), (3, '"3"'), (1234567890, '"1234567890"')])
def test_etag_is_the_version_as_a_strong_quoted_tag(version: int, tag: str) -> None:
    assert etag(version) == tag


def test_an_etag_read_back_as_if_match_names_its_version() -> None:
    for version in (1, 2, 99, 2**31 - 1):  # the largest the column holds
        assert if_match(etag(version)) == version


# --- if_match -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "version"), [('"3"', 3), ('"1"', 1), (' "3" ', 3), ('"42"', 42)])
def test_if_match_names_one_version(header: str, version: int) -> None:
    assert if_match(header) == version


@pytest.mark.parametrize("header", ["*", " * "])
def test_if_match_star_accepts_any_version(header: str) -> None:
    assert if_match(header) is None


@pytest.mark.parametrize("header", ['W/"3"', 'W/"1"', ' W/"3" '])
def test_a_weak_tag_never_matches_a_write(header: str) -> None:
    assert if_match(header) == NEVER


@pytest.mark.parametrize("header", ['"abc"', '""', '"3a"', '"-1"', '"0x3"', '"1.0"', '"99999999999999999999"'])
def test_a_well_formed_tag_that_is_not_one_of_our_versions_never_matches(header: str) -> None:
    assert if_match(header) == NEVER


def test_never_is_no_version_a_row_can_have() -> None:
    assert NEVER < 1


@pytest.mark.parametrize("header", ['"1", "2"', '"3","3"', '"3", W/"4"', '"3", *'])
def test_several_tags_are_refused_naming_the_header(header: str) -> None:
    assert invalid_field(header) == ["If-Match"]


@pytest.mark.parametrize("header", ["3", "", "   ", '"3', '3"', "W/3", '"3" "4"', "**", "'3'", '"3";x'])
def test_a_malformed_if_match_is_invalid_input_naming_the_header(header: str) -> None:
    assert invalid_field(header) == ["If-Match"]


def test_a_malformed_header_names_the_header_it_came_from() -> None:
    assert invalid_field("nope", "X-Other") == ["X-Other"]


# --- not_modified -------------------------------------------------------------------------------------------------


def test_without_if_none_match_the_copy_is_not_current() -> None:
    assert not_modified({}, 3) is False


@pytest.mark.parametrize(
    ("header", "current"),
    [
        ('"3"', True),
        ('"2"', False),
        ('"4"', False),
        ('W/"3"', True),  # GET compares weakly
        ('W/"2"', False),
        ('"1", "2", "3"', True),
        ('"1", "2"', False),
        ('"1", W/"3"', True),
        ("*", True),
        ('"abc"', False),
    ],
)
def test_not_modified_compares_every_listed_tag_weakly(header: str, current: bool) -> None:
    assert not_modified({"if-none-match": header}, 3) is current


@pytest.mark.parametrize("header", ["3", '"3', "", '"3" "4"'])
def test_a_malformed_if_none_match_is_invalid_input_naming_it(header: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        not_modified({"if-none-match": header}, 3)
    assert [error.field for error in info.value.errors] == ["If-None-Match"]


# --- expected_version ---------------------------------------------------------------------------------------------


def test_an_optional_resource_without_if_match_takes_any_version() -> None:
    assert expected_version({}, entity("notes")) is None


def test_an_optional_resource_with_if_match_takes_that_version() -> None:
    assert expected_version({"if-match": '"7"'}, entity("notes")) == 7
    assert expected_version({"if-match": "*"}, entity("notes")) is None
    assert expected_version({"if-match": 'W/"7"'}, entity("notes")) == NEVER


def test_a_required_resource_without_if_match_is_a_precondition_required_error() -> None:
    with pytest.raises(PreconditionRequiredError) as info:
        expected_version({}, entity("ledgers"))
    assert "ledgers" in str(info.value)
    assert "If-Match" in str(info.value)


def test_a_required_resource_with_if_match_takes_that_version_or_any() -> None:
    assert expected_version({"if-match": '"2"'}, entity("ledgers")) == 2
    assert expected_version({"if-match": "*"}, entity("ledgers")) is None


def test_a_required_resource_with_a_malformed_if_match_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        expected_version({"if-match": "2"}, entity("ledgers"))


def test_the_manifest_default_is_optional_and_required_is_kept() -> None:
    assert entity("notes").concurrency == "optional"
    assert entity("ledgers").concurrency == "required"


# --- the manifest keeps the engine's names -------------------------------------------------------------------------


def manifest_error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.yaml")
    return str(info.value)


def test_a_field_named_version_is_refused_naming_resource_and_field() -> None:
    message = manifest_error("version: 1\nresources:\n  notes:\n    fields:\n      version: {type: integer}\n")
    assert "m.yaml" in message
    assert "'notes'" in message
    assert "field 'version'" in message
    assert "reserved" in message


def test_a_resource_named_with_the_system_prefix_is_refused() -> None:
    message = manifest_error("version: 1\nresources:\n  flux_dao_x:\n    fields:\n      body: {type: string}\n")
    assert "m.yaml" in message
    assert "'flux_dao_x'" in message
    assert "'flux_dao_'" in message
    assert "reserved" in message


def test_an_unknown_concurrency_setting_is_refused() -> None:
    message = manifest_error(
        "version: 1\nresources:\n  notes:\n    concurrency: sometimes\n    fields:\n      body: {type: string}\n"
    )
    assert "'notes'" in message
    assert "concurrency" in message
    assert "sometimes" in message


def test_a_tag_beyond_the_largest_version_matches_no_row() -> None:
    """The version column is a 32-bit integer on PostgreSQL: a larger tag is no row's, not a value to send it."""
    assert if_match('"2147483647"') == 2**31 - 1
    assert if_match('"2147483648"') == NEVER
    assert if_match('"9999999999"') == NEVER
