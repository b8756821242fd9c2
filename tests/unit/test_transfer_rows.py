"""The NDJSON line format (issue #14): canonical JSON out, the API's structs in, problems naming the field."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flux_dao.errors import FieldError, TransferError
from flux_dao.manifest import load_manifest
from flux_dao.schema import build_resources
from flux_dao.store.transfer.order import dependency_order
from flux_dao.store.transfer.rows import RowCodec, wrap
from flux_dao.store.transfer.sources import lines_of, plan_segments
from tests.conftest import MANIFEST

RESOURCES = build_resources(load_manifest(MANIFEST))
STEPS = list(dependency_order(RESOURCES.manifest))
ALL = {step.name for step in STEPS}
USER = uuid.UUID("01938000-0000-7000-8000-000000000001")
TASK = uuid.UUID("01938000-0000-7000-8000-0000000000aa")
AT = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def codec(name: str) -> RowCodec:
    return RowCodec(next(r for r in RESOURCES.items if r.entity.name == name))


def task_row(**changes: object) -> list[object]:
    values: dict[str, object] = dict.fromkeys(codec("tasks").columns)
    values |= {"id": TASK, "user_id": USER, "title": "Run", "status": "pending", "trigger_type": "time"}
    values |= {"created_at": AT, "updated_at": AT, "version": 3, "shared_with_goal_ids": [str(USER)]}
    values |= changes
    return list(values.values())


def task_line(**changes: object) -> bytes:
    return codec("tasks").encode([task_row(**changes)]).rstrip(b"\n")


def test_a_row_is_canonical_json_with_sorted_keys_and_api_datetimes():
    line = task_line()
    assert b" " not in line.replace(b'"Run"', b"")
    decoded = json.loads(line)
    assert list(decoded) == sorted(decoded)
    assert decoded["created_at"] == "2030-01-02T03:04:05.123456Z"
    assert decoded["id"] == str(TASK)
    assert decoded["version"] == 3
    assert decoded["shared_with_goal_ids"] == [str(USER)]


def test_equal_rows_give_equal_bytes_whatever_the_key_order_of_json_values():
    patterns = codec("patterns")
    columns = patterns.columns
    base = dict.fromkeys(columns) | {"id": USER, "user_id": USER, "created_at": AT, "updated_at": AT, "version": 1}
    one = patterns.encode([list((base | {"data": {"b": 1, "a": [2, {"d": 1, "c": 2}]}}).values())])
    two = patterns.encode([list((base | {"data": {"a": [2, {"c": 2, "d": 1}], "b": 1}}).values())])
    assert one == two
    assert b'{"a":[2,{"c":2,"d":1}],"b":1}' in one


def test_a_whole_real_read_back_as_an_int_is_written_as_a_float():
    patterns = codec("patterns")
    row = dict.fromkeys(patterns.columns) | {
        "id": USER,
        "user_id": USER,
        "confidence": 1,
        "created_at": AT,
        "updated_at": AT,
        "version": 1,
    }
    assert b'"confidence":1.0' in patterns.encode([list(row.values())])


def test_a_line_decodes_to_the_values_the_table_stores():
    values = codec("tasks").decode(task_line())
    assert values["id"] == TASK
    assert values["created_at"] == AT
    assert values["version"] == 3
    assert values["status"] == "pending"
    assert type(values["status"]) is str  # the enum's value, as drivers take it
    assert values["shared_with_goal_ids"] == [USER]


def test_naive_and_offset_datetimes_are_taken_to_utc():
    line = task_line().replace(b"2030-01-02T03:04:05.123456Z", b"2030-01-02T05:04:05.123456+02:00", 1)
    assert codec("tasks").decode(line)["created_at"] == AT


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ((b'"status":"pending"', b'"status":"later"'), "status", "Invalid enum value 'later'"),
        ((b'"title":"Run"', b'"title":""'), "title", "Expected `str` of length >= 1"),
        ((b'"version":3', b'"version":0'), "version", "Expected `int` >= 1"),
        ((b'"version":3', b'"version":3,"priority":1'), "priority", "contains unknown field"),
        ((b'"id":"', b'"id":"x'), "id", "Invalid UUID"),
        ((b'"duration_minutes":null', b'"duration_minutes":"30"'), "duration_minutes", "Expected `int | null`"),
        ((b'"title":"Run"', b'"title":"R\\u0000n"'), "title", "must not contain NUL"),
    ],
)
def test_a_bad_field_is_named_with_the_apis_message(change, field, message):
    with pytest.raises(FieldError) as caught:
        codec("tasks").decode(task_line().replace(*change, 1))
    assert caught.value.field == field
    assert caught.value.message.startswith(message)


def test_a_missing_timestamp_is_required_since_the_import_keeps_them():
    line = task_line().replace(b'"created_at":"2030-01-02T03:04:05.123456Z",', b"")
    with pytest.raises(FieldError) as caught:
        codec("tasks").decode(line)
    assert (caught.value.field, caught.value.message) == ("created_at", "missing required field")


@pytest.mark.parametrize("line", [b"[1, 2]", b'{"id": ', b"not json"])
def test_a_line_that_is_not_an_object_is_a_problem_of_the_row(line):
    with pytest.raises(FieldError) as caught:
        codec("tasks").decode(line)
    assert caught.value.field == "row"


def test_wrapping_keeps_the_canonical_key_order():
    wrapped = wrap("tasks", task_line() + b"\n")
    assert wrapped.endswith(b"}\n")
    assert json.loads(wrapped)["row"] == json.loads(task_line())
    assert wrapped.startswith(b'{"resource":"tasks","row":{')


def write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def stream_line(resource: str, line: bytes = b"{}") -> bytes:
    return b'{"resource":"' + resource.encode() + b'","row":' + line + b"}"


def test_a_stream_splits_into_one_segment_per_resource_with_line_numbers(tmp_path):
    path = write(
        tmp_path / "all.ndjson",
        stream_line("users"),
        stream_line("users"),
        b"",
        stream_line("tasks"),
        b"garbled",
        stream_line("tasks"),
    )
    reported: list[str] = []
    segments, unreadable = plan_segments(path, "all.ndjson", STEPS, ALL, reported.append)
    assert [(s.resource, s.first_line, s.lines) for s in segments] == [("users", 1, 3), ("tasks", 4, 3)]
    assert [number for number, _ in lines_of(segments[1])] == [4, 5, 6]
    assert unreadable == 1
    assert reported == ["all.ndjson:5: row: not a JSON object (JSON is malformed: invalid character (byte 0))"]


def test_a_stream_with_a_child_before_its_parent_is_refused_before_anything_is_written(tmp_path):
    path = write(tmp_path / "all.ndjson", stream_line("tasks"), stream_line("users"))
    with pytest.raises(TransferError, match=r"all.ndjson:2: users rows after tasks rows, which reference users"):
        plan_segments(path, "all.ndjson", STEPS, ALL, print)


def test_a_stream_returning_to_a_resource_is_refused(tmp_path):
    path = write(tmp_path / "s.ndjson", stream_line("users"), stream_line("patterns"), stream_line("users"))
    with pytest.raises(TransferError, match=r"s.ndjson:3: users rows again after patterns rows"):
        plan_segments(path, "s.ndjson", STEPS, ALL, print)


def test_unrelated_resources_may_come_in_any_order_in_a_stream(tmp_path):
    path = write(tmp_path / "s.ndjson", stream_line("users"), stream_line("patterns"), stream_line("goals"))
    segments, _ = plan_segments(path, "s.ndjson", STEPS, ALL, print)
    assert [s.resource for s in segments] == ["users", "patterns", "goals"]


def test_a_bare_file_is_the_resource_its_name_says(tmp_path):
    path = write(tmp_path / "tasks.ndjson", task_line(), task_line())
    [segment], _ = plan_segments(path, "tasks.ndjson", STEPS, ALL, print)
    assert (segment.resource, segment.lines, segment.wrapped) == ("tasks", 2, False)
    with pytest.raises(TransferError, match="cannot tell which resource"):
        plan_segments(write(tmp_path / "rows.ndjson", task_line()), "rows.ndjson", STEPS, ALL, print)


def test_a_folder_is_read_in_dependency_order_and_refuses_strange_files(tmp_path):
    for name in ("tasks", "users", "goals"):
        write(tmp_path / f"{name}.ndjson", b"{}")
    segments, _ = plan_segments(tmp_path, str(tmp_path), STEPS, ALL, print)
    assert [s.resource for s in segments] == ["users", "goals", "tasks"]
    write(tmp_path / "taks.ndjson", b"{}")
    with pytest.raises(TransferError, match=r"taks\.ndjson names no resource"):
        plan_segments(tmp_path, str(tmp_path), STEPS, ALL, print)
