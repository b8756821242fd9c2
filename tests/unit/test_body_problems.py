"""Collecting every problem of a JSON body (issue #8), as pure functions: no app, no database."""

from typing import Annotated

import msgspec
import pytest

from flux_dao.http.body_problems import BodyFields, decode_locating_out_of_range, is_out_of_range, unlocated

Task = msgspec.defstruct(
    "Task",
    [
        ("title", Annotated[str, msgspec.Meta(max_length=5)]),
        ("minutes", Annotated[int, msgspec.Meta(ge=1)] | None, None),
        ("tags", list[str], []),
    ],
    kw_only=True,
    forbid_unknown_fields=True,
)
Open = msgspec.defstruct("Open", [("title", str)], kw_only=True)


def test_each_field_is_checked_in_declared_order_and_unknown_keys_come_last():
    raw = {"colour": "red", "tags": ["a", 1], "minutes": 0, "shape": "round"}
    assert BodyFields(Task).problems(raw, {}) == [
        "Object missing required field `title`",
        "Expected `int` >= 1 - at `$.minutes`",
        "Expected `str`, got `int` - at `$.tags[1]`",
        "Object contains unknown field `colour`",
        "Object contains unknown field `shape`",
    ]


def test_a_single_problem_reads_as_msgspec_reports_it_for_the_whole_struct():
    raw = {"title": "far too long"}
    with pytest.raises(msgspec.ValidationError) as whole:
        msgspec.convert(raw, Task, strict=True)
    assert BodyFields(Task).problems(raw, {}) == [str(whole.value)]


def test_a_valid_body_has_no_problems_and_open_structs_take_unknown_keys():
    assert BodyFields(Task).problems({"title": "Run", "minutes": None}, {}) == []
    assert BodyFields(Open).problems({"title": "Run", "extra": 1}, {}) == []


@pytest.mark.parametrize(
    ("body", "located"),
    [
        (b'{"minutes": 1e400, "title": "x"}', {"minutes": [".minutes"]}),
        (b'{"tags": [1, -1e999], "x": {"y": [1e400]}}', {"tags": [".tags[1]"], "x": [".x.y[0]"]}),
        (b'{"minutes": 1' + b"0" * 5000 + b"}", {"minutes": [".minutes"]}),
        (b'{"minutes": 12}', {}),
    ],
)
def test_numbers_out_of_range_are_located_per_top_level_key(body, located):
    decoded = decode_locating_out_of_range(body)
    assert decoded is not None
    assert decoded[1] == located


def test_out_of_range_fields_are_reported_in_place_of_their_conversion():
    decoded = decode_locating_out_of_range(b'{"minutes": 1e400, "title": 7, "colour": 1e400}')
    assert decoded is not None
    assert BodyFields(Task).problems(*decoded) == [
        "Expected `str`, got `int` - at `$.title`",
        "number out of range - at `$.minutes`",
        "Object contains unknown field `colour`",
    ]


@pytest.mark.parametrize("body", [b'{"a": 1e400, "b": NaN}', b'{"a": 1e400', b'{"a": Infinity}'])
def test_a_body_that_is_not_json_for_another_reason_is_not_located(body):
    assert decode_locating_out_of_range(body) is None


def test_decoder_messages():
    assert is_out_of_range("Number out of range - at `$[...]`")
    assert is_out_of_range("Integer value out of range")
    assert not is_out_of_range("JSON is malformed: invalid character (byte 3)")
    assert unlocated("Number out of range - at `$[...]`") == "Number out of range"
    assert unlocated("Input data was truncated") == "Input data was truncated"
