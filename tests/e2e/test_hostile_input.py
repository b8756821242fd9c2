"""Hostile input that fuzzers rarely produce, through HTTP on both backends (issue #4, "Bad input").

SQL-looking and exotic unicode text must be stored and read back byte for byte and matched literally by the equality
filters; numbers beyond what a column holds, NaN and infinities, deeply nested or huge JSON, bodies that are not
objects, invalid UTF-8, NUL characters, lone surrogates and odd datetimes must each be a 422 problem naming the field
(or be stored faithfully), never a 500.

Budget: about 12 s for both backends together on an idle machine (tables of cases run in one test each where
they share rows; read-only cases use the session client, which skips the wipe).
"""

import json
import unicodedata
import uuid
from datetime import datetime
from typing import Any

import pytest

from flux_dao.store.repository import MAX_JSON_DEPTH
from tests import factories
from tests.factories import API
from tests.problems import assert_problem

JSON_HEADERS = {"content-type": "application/json"}


def assert_422_naming(response: Any, field: str) -> dict[str, Any]:
    """A validation-error problem whose ``errors`` name ``field``."""
    body = assert_problem(response, 422, "validation-error")
    named = [error["field"] for error in body["errors"]]
    assert any(n == field or n.startswith((f"{field}[", f"{field}.")) for n in named), body  # or one of its items
    return body


def post_raw(client: Any, path: str, content: bytes | str, method: str = "post") -> Any:
    return client.request(method.upper(), f"{API}/{path}", content=content, headers=JSON_HEADERS)


def with_raw(value: Any, raw: str) -> str:
    """``value`` as JSON text with every ``"RAW"`` string replaced by ``raw``, which need not be valid JSON."""
    return json.dumps(value).replace('"RAW"', raw)


def read_back(client: Any, path: str, row: dict[str, Any]) -> dict[str, Any]:
    response = client.get(f"{API}/{path}/{row['id']}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def list_rows(client: Any, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- the filters this file covers, checked against the OpenAPI document -------------------------------------------

STRING_FILTERS = {("users", "email"), ("patterns", "pattern_type")}
ENUM_FILTERS = {
    ("goals", "status"),
    ("tasks", "status"),
    ("conversations", "context_type"),
    ("notification-log", "channel"),
}
UUID_FILTERS = {
    ("goals", "user_id"),
    ("goals", "parent_goal_id"),
    ("tasks", "user_id"),
    ("tasks", "goal_id"),
    ("conversations", "user_id"),
    ("patterns", "user_id"),
    ("notification-log", "task_id"),
}
INTEGER_FILTERS = {("tasks", "duration_minutes")}
NOT_EQUALITY = {"skip", "limit", "count", "sort", "cursor", "fields", "include", "include_limit"}
"""Paging and shaping parameters; operator filters (``field__op``) and embed filters (``embed.field``) are named so."""
NOT_RESOURCES = {"changes"}
"""Top-level GET routes that list no resource: the change feed (``tests/e2e/test_changes.py`` covers its parameters)."""


def test_every_list_filter_in_the_openapi_document_is_covered_here(client):
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    found: dict[str, set[tuple[str, str]]] = {"string": set(), "enum": set(), "uuid": set()}
    for path, operations in response.json()["paths"].items():
        resource = path.removeprefix(f"{API}/")
        if "/" in resource or "get" not in operations or resource in NOT_RESOURCES:
            continue
        for parameter in operations["get"].get("parameters", []):
            name = parameter["name"]
            if parameter["in"] != "query" or name in NOT_EQUALITY or "__" in name or "." in name:
                continue
            schema = parameter["schema"]
            variants = schema.get("oneOf") or schema.get("anyOf") or schema.get("allOf") or [schema]
            kind = next(s for s in variants if s.get("type") != "null")
            key = "enum" if "$ref" in kind else "uuid" if kind.get("format") == "uuid" else kind["type"]
            found.setdefault(key, set()).add((resource, parameter["name"]))
    assert found == {"string": STRING_FILTERS, "enum": ENUM_FILTERS, "uuid": UUID_FILTERS, "integer": INTEGER_FILTERS}


# --- SQL-looking and exotic unicode text: stored byte for byte, matched literally ---------------------------------

SQL_LOOKING = [
    "'; DROP TABLE tasks; --",
    "%",
    "_",
    "\\",
    '" OR 1=1 --',
    "' OR '1'='1",
    "$1",
    ":name",
    "?",
    "%%",
    "%s",
    "a%",
    "_b",
    "\\%",
    "*",
    "[a-z]",
    "NULL",
]
UNICODE = [
    "🏃‍♀️🔥",  # emoji with a zero-width joiner and a variation selector
    "e\u0301",  # e + combining acute (NFD)
    "\u00e9",  # precomposed e-acute (NFC): must not match the NFD row
    "Z\u0351\u0327\u0346a\u0310\u0322l\u0352g\u0336o",  # stacked combining marks
    "مرحبا بالعالم",  # right-to-left text
    "\u202eevil\u202c",  # right-to-left override
    "a\u200db",  # zero-width joiner
    "a\u200bb",  # zero-width space
    "\ufeffbom",
    "𝕏𐍈🀄",  # 4-byte UTF-8 characters
    "\U0010ffff",  # the last code point
    "\ufffd",  # the replacement character itself
    "line\u2028sep\u2029",
    "tab\tnew\nline\r",
    "trailing ",
    " leading",
    "UPPER",
    "upper",
]
HOSTILE_TEXT = SQL_LOOKING + UNICODE


def test_hostile_text_in_every_string_field_reads_back_byte_for_byte(client):
    user = factories.user(client)
    sent: list[tuple[str, dict[str, Any]]] = []
    for value in HOSTILE_TEXT:
        sent.append(("tasks", factories.task(client, user["id"], title=value, description=value)))
        sent.append(("patterns", factories.pattern(client, user["id"], pattern_type=value, description=value)))
    long_text = "𝕏é\u200d'%_" * 20_000  # 100k characters, 2/5 of the bytes 4-byte characters
    sent.append(("tasks", factories.task(client, user["id"], title="long", description=long_text)))
    mismatched = []
    for path, created in sent:
        stored = read_back(client, path, created)
        if stored != created:
            mismatched.append((path, created, stored))
    assert not mismatched
    assert read_back(client, "tasks", sent[-1][1])["description"].encode() == long_text.encode()
    for value, (_, task) in zip(HOSTILE_TEXT, sent[::2], strict=False):
        assert task["title"].encode("utf-8") == value.encode("utf-8")


@pytest.mark.parametrize(("path", "field"), sorted(STRING_FILTERS))
def test_string_filter_matches_exactly_the_row_holding_the_value(client, path, field):
    user = factories.user(client)
    values = [*HOSTILE_TEXT, "plain", "x" * 255, "\U0001d54f" * 255]  # 255 4-byte characters fit a 255-char column
    rows = {}
    for value in values:
        if path == "users":
            rows[value] = factories.user(client, email=value)
        else:
            rows[value] = factories.pattern(client, user["id"], pattern_type=value)
    wrong = {}
    for value in values:
        page = list_rows(client, path, **{field: value})
        if [item["id"] for item in page["items"]] != [rows[value]["id"]] or page["total"] != 1:
            wrong[value] = [item[field] for item in page["items"]]
    assert not wrong, wrong
    assert list_rows(client, path, **{field: "%" * 3})["items"] == []
    assert list_rows(client, path, **{field: unicodedata.normalize("NFC", "e\u0301") + "x"})["items"] == []


def test_sql_looking_values_leave_every_table_intact(client):
    user = factories.user(client)
    task = factories.task(client, user["id"], title="'; DROP TABLE tasks; --")
    for value in SQL_LOOKING:
        list_rows(client, "patterns", pattern_type=value)
        list_rows(client, "users", email=value)
    assert list_rows(client, "tasks")["total"] == 1
    assert read_back(client, "tasks", task) == task


def test_hostile_text_as_json_keys_and_values_reads_back_equal(client):
    user = factories.user(client)
    data = {value: [value, {value: value}] for value in HOSTILE_TEXT}
    created = factories.pattern(client, user["id"], data=data)
    assert created["data"] == data
    assert read_back(client, "patterns", created)["data"] == data
    goal = factories.goal(client, user["id"], class_tags=HOSTILE_TEXT)
    assert read_back(client, "goals", goal)["class_tags"] == HOSTILE_TEXT


@pytest.mark.parametrize(("path", "field"), sorted(ENUM_FILTERS | UUID_FILTERS))
def test_sql_looking_enum_and_uuid_filter_values_are_422_naming_the_filter(session_client, path, field):
    for value in [*SQL_LOOKING, "", " ", "\U0010ffff", "🔥"]:
        assert_422_naming(session_client.get(f"{API}/{path}", params={field: value}), field)


@pytest.mark.parametrize(("path", "field", "value"), [("tasks", "status", "DONE"), ("tasks", "status", "done ")])
def test_enum_filter_is_exact_not_case_or_space_insensitive(session_client, path, field, value):
    assert_422_naming(session_client.get(f"{API}/{path}", params={field: value}), field)


def test_uuid_filter_matches_the_same_row_in_any_letter_case(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    factories.task(client, factories.user(client)["id"])
    for form in (user["id"], user["id"].upper(), user["id"].replace("-", "")):
        assert [item["id"] for item in list_rows(client, "tasks", user_id=form)["items"]] == [task["id"]]


# --- integers beyond the column, skip/limit beyond their range ------------------------------------------------------

HUGE_INTEGERS = [2**31, -(2**31) - 1, 2**63, 10**30, -(2**63) - 1]
INT_FIELDS = [("tasks", "duration_minutes"), ("goals", "target_weeks"), ("goals", "pipeline_order")]


@pytest.mark.parametrize(("path", "field"), INT_FIELDS)
def test_huge_integer_is_422_naming_the_field_on_create_and_patch(client, path, field):
    user = factories.user(client)
    row = factories.create(client, path, user_id=user["id"], title="Something")
    for as_sent in [*HUGE_INTEGERS, *map(str, HUGE_INTEGERS)]:  # a numeric string takes the lenient path
        body = {"user_id": user["id"], "title": "Other", field: as_sent}
        assert_422_naming(client.post(f"{API}/{path}", json=body), field)
        assert_422_naming(client.patch(f"{API}/{path}/{row['id']}", json={field: as_sent}), field)
    assert list_rows(client, path)["total"] == 1
    assert read_back(client, path, row) == row


@pytest.mark.parametrize("value", [2**31 - 1, -(2**31)], ids=str)
def test_integer_at_the_32_bit_bounds_reads_back_equal(client, value):
    user = factories.user(client)
    goal = factories.goal(client, user["id"], pipeline_order=value)
    assert goal["pipeline_order"] == value
    assert read_back(client, "goals", goal)["pipeline_order"] == value


@pytest.mark.parametrize("param", ["duration_minutes", "duration_minutes__gte", "duration_minutes__lt"])
def test_huge_or_non_integer_filter_values_are_422_naming_the_filter(session_client, param):
    for value in [*HUGE_INTEGERS, "9" * 5000, "1e400", "1.5", "NaN", "-0x1", "1 ", "", *SQL_LOOKING]:
        assert_422_naming(session_client.get(f"{API}/tasks", params={param: str(value)}), param)


@pytest.mark.parametrize("param", ["skip", "limit"])
def test_huge_or_non_integer_skip_and_limit_are_422_naming_the_parameter(session_client, param):
    for value in [*HUGE_INTEGERS, "9" * 5000, "1e400", "NaN", "Infinity", "-0x1", "1 ", ""]:
        assert_422_naming(session_client.get(f"{API}/tasks", params={param: str(value)}), param)


def test_huge_integers_inside_a_json_field_read_back_equal(client):
    user = factories.user(client)
    data = {"int64_max": 2**63 - 1, "beyond": 2**64, "tiny": -(2**63) - 1, "huge": 10**30, "list": [10**30, -(10**30)]}
    created = factories.pattern(client, user["id"], data=data)
    assert created["data"] == data
    assert read_back(client, "patterns", created)["data"] == data


# --- NaN, infinities and extreme floats ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_number_is_422(client, token):
    user = factories.user(client)
    for body in (
        with_raw({"user_id": user["id"], "confidence": "RAW"}, token),
        with_raw({"user_id": user["id"], "data": {"x": "RAW"}}, token),
        with_raw({"user_id": user["id"], "data": {"x": [1, {"y": "RAW"}]}}, token),
    ):
        assert_422_naming(post_raw(client, "patterns", body), "body")  # not JSON at all
    assert list_rows(client, "patterns")["total"] == 0


@pytest.mark.parametrize("token", ["1e400", "-1e400", "1" + "0" * 5000])
def test_json_number_out_of_range_is_422_naming_where(client, token):
    """Issue #8: the JSON decoder cannot say where such a number is; the problem still names it."""
    user = factories.user(client)
    for value, field in (
        ({"user_id": user["id"], "confidence": "RAW"}, "confidence"),
        ({"user_id": user["id"], "data": {"x": "RAW"}}, "data.x"),
        ({"user_id": user["id"], "data": {"x": [1, {"y": "RAW"}]}}, "data.x[1].y"),
    ):
        problem = assert_422_naming(post_raw(client, "patterns", with_raw(value, token)), field)
        assert problem["errors"] == [{"field": field, "message": "number out of range"}]
    assert list_rows(client, "patterns")["total"] == 0


@pytest.mark.parametrize("text", ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e400"])
def test_non_finite_float_as_a_string_is_422_naming_the_field(client, text):
    user = factories.user(client)
    assert_422_naming(client.post(f"{API}/patterns", json={"user_id": user["id"], "confidence": text}), "confidence")
    row = factories.pattern(client, user["id"], confidence=0.5)
    assert_422_naming(client.patch(f"{API}/patterns/{row['id']}", json={"confidence": text}), "confidence")
    assert read_back(client, "patterns", row) == row


def test_non_finite_strings_in_a_json_field_are_stored_as_strings(client):
    user = factories.user(client)
    data = {"nan": "NaN", "inf": "Infinity", "neg": "-Infinity", "list": ["NaN", "Infinity"]}
    created = factories.pattern(client, user["id"], data=data)
    assert read_back(client, "patterns", created)["data"] == data


def test_extreme_float_in_a_float_field_reads_back_equal(client):
    user = factories.user(client)
    for value in [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.0, 0.1, 1 - 2**-53]:
        created = factories.pattern(client, user["id"], confidence=value)
        stored = read_back(client, "patterns", created)["confidence"]
        assert isinstance(stored, float), value
        assert stored == value  # the sign of zero is not kept (SQLite stores -0.0 as 0): -0.0 == 0.0 numerically
        assert created["confidence"] == stored


def test_extreme_float_in_a_json_field_reads_back_as_the_same_number(client):
    user = factories.user(client)
    for value in [1e308, -1e308, 1.7976931348623157e308, 5e-324, -0.0, 0.1, 2.5e-10, 1e16]:
        created = factories.pattern(client, user["id"], data={"x": value, "nested": [value]})
        stored = read_back(client, "patterns", created)["data"]
        # JSON numbers carry no int/float distinction: JSONB answers 1e308 as its 309 integer digits (same number)
        assert float(stored["x"]) == value
        assert float(stored["nested"][0]) == value
        assert stored == created["data"]


def test_float_beyond_a_bounded_field_is_422_naming_it(client):
    user = factories.user(client)
    for value in (1e308, -1e308, 1.0000000000000002):
        assert_422_naming(
            client.post(f"{API}/patterns", json={"user_id": user["id"], "confidence": value}), "confidence"
        )


# --- nesting, size and shape of JSON bodies --------------------------------------------------------------------------


def nested_objects(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def nested_json_text(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


def test_json_field_nested_to_the_limit_reads_back_equal(client):
    user = factories.user(client)
    data = nested_objects(MAX_JSON_DEPTH)
    created = factories.pattern(client, user["id"], data=data)
    assert read_back(client, "patterns", created)["data"] == data
    assert list_rows(client, "patterns")["items"][0]["data"] == data


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 900])
def test_json_field_nested_beyond_the_limit_is_422_naming_the_field(client, depth):
    user = factories.user(client)
    arrays = with_raw({"user_id": user["id"], "data": {"x": "RAW"}}, nested_json_text(depth - 1))
    assert_422_naming(post_raw(client, "patterns", arrays), "data")
    objects = {"email": "deep@example.com", "profile": nested_objects(depth)}
    assert_422_naming(client.post(f"{API}/users", content=json.dumps(objects), headers=JSON_HEADERS), "profile")
    patch = json.dumps({"profile": nested_objects(depth)})
    assert_422_naming(post_raw(client, f"users/{user['id']}", patch, method="patch"), "profile")
    assert list_rows(client, "patterns")["total"] == 0
    assert read_back(client, "users", user) == user


@pytest.mark.parametrize("depth", [5000, 100_000])
def test_json_nested_beyond_what_the_decoder_follows_is_422(client, depth):
    user = factories.user(client)
    body = with_raw({"user_id": user["id"], "data": {"x": "RAW"}}, nested_json_text(depth))
    assert_422_naming(post_raw(client, "patterns", body), "body")
    assert_422_naming(post_raw(client, "patterns", nested_json_text(depth, "{", "}").replace("{}", "{")), "body")
    assert list_rows(client, "patterns")["total"] == 0


def test_list_field_with_nested_arrays_is_422_naming_it(client):
    user = factories.user(client)
    body = {"user_id": user["id"], "title": "g", "class_tags": [["a"]]}
    assert_422_naming(client.post(f"{API}/goals", json=body), "class_tags")


def test_ten_thousand_element_arrays_read_back_equal(client):
    user = factories.user(client)
    tags = [f"tag-{i}" for i in range(10_000)]
    goal = factories.goal(client, user["id"], class_tags=tags)
    assert read_back(client, "goals", goal)["class_tags"] == tags
    ids = [str(uuid.uuid4()) for _ in range(10_000)]
    task = factories.task(client, user["id"], shared_with_goal_ids=ids)
    assert read_back(client, "tasks", task)["shared_with_goal_ids"] == ids
    data = {"numbers": list(range(10_000)), "keys": {f"k{i}": i for i in range(10_000)}}
    pattern = factories.pattern(client, user["id"], data=data)
    assert read_back(client, "patterns", pattern)["data"] == data


def test_bulk_update_with_ten_thousand_ids_is_422_naming_the_list(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    ids = [task["id"]] + [str(uuid.uuid4()) for _ in range(9_999)]
    response = client.post(f"{API}/tasks/bulk-update-state", json={"task_ids": ids, "new_status": "done"})
    assert_422_naming(response, "task_ids")
    assert read_back(client, "tasks", task)["status"] == "pending"
    response = client.post(f"{API}/tasks/bulk-update-state", json={"task_ids": ids[:1000], "new_status": "done"})
    assert response.status_code == 200, response.text
    assert response.json() == {"updated_count": 1}


NOT_OBJECTS = ["[]", "[{}]", '"a string"', "null", "1", "true", "", "   "]


@pytest.mark.parametrize("body", NOT_OBJECTS, ids=repr)
def test_body_that_is_not_an_object_is_422_naming_the_body(client, body):
    user = factories.user(client)
    assert_422_naming(post_raw(client, "users", body), "body")
    assert_422_naming(post_raw(client, f"users/{user['id']}", body, method="patch"), "body")
    assert_422_naming(post_raw(client, "tasks/bulk-update-state", body), "body")
    assert_422_naming(post_raw(client, "patterns", body), "body")  # not its `data` field
    assert list_rows(client, "users")["total"] == 1
    assert read_back(client, "users", user) == user


def test_duplicate_keys_keep_the_last_value_on_both_backends(client):
    user = factories.user(client)
    body = '{"user_id": "%s", "pattern_type": "first", "pattern_type": "last", "data": {"a": 1, "b": 0, "a": 2}}'
    response = post_raw(client, "patterns", body % user["id"])
    assert response.status_code == 201, response.text
    stored = read_back(client, "patterns", response.json())
    assert stored["pattern_type"] == "last"
    assert stored["data"] == {"a": 2, "b": 0}
    assert [r["id"] for r in list_rows(client, "patterns", pattern_type="first")["items"]] == []


INVALID_UTF8 = [
    b"\xff",  # never valid
    b"\xc3\x28",  # bad continuation byte
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xe2\x82",  # truncated sequence
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
]


@pytest.mark.parametrize("raw", INVALID_UTF8, ids=lambda b: b.hex())
def test_invalid_utf8_in_the_body_is_422(client, raw):
    user = factories.user(client)
    in_value = b'{"email": "a' + raw + b'@example.com"}'
    in_key = b'{"user_id": "' + user["id"].encode() + b'", "data": {"k' + raw + b'": 1}}'
    assert_422_naming(post_raw(client, "users", in_value), "body")
    assert_422_naming(post_raw(client, "patterns", in_key), "body")
    assert_422_naming(post_raw(client, f"users/{user['id']}", b'{"profile": {"x": "' + raw + b'"}}', "patch"), "body")
    assert list_rows(client, "users")["total"] == 1
    assert list_rows(client, "patterns")["total"] == 0


# --- NUL characters, refused everywhere on both backends -------------------------------------------------------------


def nul_cases(user_id: str, task_id: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, body, field) of writes holding U+0000 somewhere."""
    nul = "a\u0000b"
    return [
        ("post", "users", {"email": nul}, "email"),
        ("post", "users", {"email": "n1@example.com", "profile": {nul: 1}}, "profile"),
        ("post", "users", {"email": "n2@example.com", "profile": {"a": [{"b": [nul]}]}}, "profile"),
        (
            "post",
            "users",
            {"email": "n3@example.com", "notification_preferences": {"a": {"b": {nul: None}}}},
            "notification_preferences",
        ),
        ("post", "tasks", {"user_id": user_id, "title": nul}, "title"),
        ("post", "tasks", {"user_id": user_id, "title": "t", "recurrence_rule": "\u0000"}, "recurrence_rule"),
        ("post", "tasks", {"user_id": user_id, "title": "t", "status": "done\u0000"}, "status"),
        ("post", "goals", {"user_id": user_id, "title": "g", "class_tags": ["ok", nul]}, "class_tags"),
        ("post", "patterns", {"user_id": user_id, "pattern_type": nul}, "pattern_type"),
        ("post", "patterns", {"user_id": user_id, "data": {"k": {"k": {"k": nul}}}}, "data"),
        (
            "post",
            "conversations",
            {"user_id": user_id, "langgraph_thread_id": nul, "context_type": "goal"},
            "langgraph_thread_id",
        ),
        ("post", "notification-log", {"task_id": task_id, "channel": "push", "response": nul}, "response"),
        ("patch", f"tasks/{task_id}", {"description": nul}, "description"),
        ("patch", f"users/{user_id}", {"profile": {"deep": [[[{nul: nul}]]]}}, "profile"),
        ("post", "tasks/bulk-update-state", {"task_ids": [task_id], "new_status": "\u0000"}, "new_status"),
        ("post", "tasks/bulk-update-state", {"task_ids": [task_id + "\u0000"], "new_status": "done"}, "task_ids"),
    ]


def test_nul_in_any_text_or_json_value_is_422_naming_the_field(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    before = {path: list_rows(client, path)["total"] for path in ("users", "tasks", "goals", "patterns")}
    for method, path, body, field in nul_cases(user["id"], task["id"]):
        response = client.request(method.upper(), f"{API}/{path}", json=body)
        problem = assert_422_naming(response, field)
        assert response.status_code == 422, (method, path, body)
        assert "NUL" in problem["detail"] or field in {"status", "new_status", "task_ids"}, problem
    assert {path: list_rows(client, path)["total"] for path in before} == before
    assert read_back(client, "tasks", task) == task
    assert read_back(client, "users", user) == user


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("users", {"email": "\u0000"}, "email"),
        ("patterns", {"pattern_type": "x\u0000"}, "pattern_type"),
        ("tasks", {"status": "done\u0000"}, "status"),
        ("tasks", {"user_id": "\u0000"}, "user_id"),
        ("tasks", {"skip": "1\u0000"}, "skip"),
        ("tasks/by-timerange", {"start_at": "2030-01-01T00:00:00Z\u0000"}, "start_at"),
        ("tasks/statistics", {"end_date": "\u00002030-01-01T00:00:00Z"}, "end_date"),
    ],
)
def test_nul_in_a_query_parameter_is_422_naming_it(client, path, params, field):
    user = factories.user(client)
    window = {"user_id": user["id"], "start_at": "2030-01-01T00:00:00Z", "end_at": "2030-01-02T00:00:00Z"}
    window |= {"start_date": window["start_at"], "end_date": window["end_at"]}
    query = (window if "/" in path else {}) | params
    assert_422_naming(client.get(f"{API}/{path}", params=query), field)


def test_raw_nul_byte_in_a_json_string_is_422(client):
    assert_422_naming(post_raw(client, "users", b'{"email": "a\x00b"}'), "body")
    assert list_rows(client, "users")["total"] == 0


# --- surrogates -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud800\\ud800", "\\udc00\\ud800", "\\ud83d"])
def test_lone_surrogate_escape_is_422(client, escape):
    user = factories.user(client)
    assert_422_naming(post_raw(client, "users", with_raw({"email": "RAW"}, f'"a{escape}@example.com"')), "body")
    body = with_raw({"user_id": user["id"], "data": {"RAW": 1}}, f'"{escape}"')
    assert_422_naming(post_raw(client, "patterns", body), "body")
    body = with_raw({"user_id": user["id"], "title": "RAW"}, f'"{escape}"')
    assert_422_naming(post_raw(client, "tasks", body), "body")
    assert list_rows(client, "users")["total"] == 1


def test_escaped_surrogate_pair_is_the_character_it_encodes(client):
    user = factories.user(client)
    response = post_raw(client, "tasks", with_raw({"user_id": user["id"], "title": "RAW"}, '"run \\ud83c\\udfc3"'))
    assert response.status_code == 201, response.text
    assert read_back(client, "tasks", response.json())["title"] == "run 🏃"


# --- datetimes -------------------------------------------------------------------------------------------------------

STORED_DATETIMES = [
    ("2030-01-01T00:00:00+14:00", "2029-12-31T10:00:00Z"),
    ("2030-01-01T00:00:00-12:00", "2030-01-01T12:00:00Z"),
    ("2030-01-01T05:45:00+05:45", "2030-01-01T00:00:00Z"),
    ("0001-01-01T00:00:00.000001Z", "0001-01-01T00:00:00.000001Z"),
    ("0001-01-01T00:00:00-01:00", "0001-01-01T01:00:00Z"),
    ("9999-12-31T23:59:59.999998Z", "9999-12-31T23:59:59.999998Z"),
    ("9999-12-31T23:59:59+01:00", "9999-12-31T22:59:59Z"),
    ("2030-01-01T00:00:00", "2030-01-01T00:00:00Z"),  # naive: taken as UTC (README)
    ("2030-01-01T00:00:00.5", "2030-01-01T00:00:00.500000Z"),
]


def same_instant(stored: str, expected: str) -> bool:
    return datetime.fromisoformat(stored) == datetime.fromisoformat(expected)


def test_datetime_is_stored_as_the_instant_it_names(client):
    for sent, instant in STORED_DATETIMES:
        user = factories.user(client)
        task = factories.task(client, user["id"], scheduled_at=sent)
        stored = read_back(client, "tasks", task)["scheduled_at"]
        assert stored.endswith("Z"), (sent, stored)
        assert same_instant(stored, instant), (sent, stored)
        assert stored == task["scheduled_at"]
        window = {"user_id": user["id"], "start_at": sent, "end_at": sent}  # same instant both ends, inclusive
        found = client.get(f"{API}/tasks/by-timerange", params=window)
        assert found.status_code == 200, found.text
        assert [row["id"] for row in found.json()] == [task["id"]], sent


BAD_DATETIMES = [
    "2030-06-30T23:59:60Z",  # leap second: not representable
    "2030-01-01T24:00:00Z",
    "2030-02-30T00:00:00Z",
    "2030-13-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2030-01-01T00:00:00+24:00",
    "2030-01-01",  # date only (README: a full datetime is required)
    "00:00:00",
    "garbage",
    "",
    "'; DROP TABLE tasks; --",
    "2030-01-01T00:00:00Z\u200b",
    "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
    "9999-12-31T23:59:59-12:00",  # after year 9999 once in UTC
]
EXTREME_INSTANTS = ["0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00", "9999-12-31T23:59:59.999999Z"]


@pytest.mark.parametrize("value", EXTREME_INSTANTS)
def test_the_first_and_last_instant_are_422_to_store_but_fine_as_a_query_bound(client, value):
    # asyncpg would store them as PostgreSQL's -infinity/infinity, read back as naive datetimes without the Z
    user = factories.user(client)
    task = factories.task(client, user["id"], scheduled_at="2030-01-01T00:00:00Z")
    body = {"user_id": user["id"], "title": "t", "scheduled_at": value}
    assert_422_naming(client.post(f"{API}/tasks", json=body), "scheduled_at")
    assert_422_naming(client.patch(f"{API}/tasks/{task['id']}", json={"completed_at": value}), "completed_at")
    assert read_back(client, "tasks", task) == task
    first, last = (
        ("0001-01-01T00:00:00Z", value) if value.startswith("9999") else (value, "9999-12-31T23:59:59.999999Z")
    )
    window = {"user_id": user["id"], "start_at": first, "end_at": last}
    found = client.get(f"{API}/tasks/by-timerange", params=window)
    assert found.status_code == 200, found.text
    assert [row["id"] for row in found.json()] == [task["id"]]


def test_bad_datetime_is_422_naming_the_field_in_body_and_query(client):
    user = factories.user(client)
    task = factories.task(client, user["id"], scheduled_at="2030-01-01T00:00:00Z")
    for value in BAD_DATETIMES:
        body = {"user_id": user["id"], "title": "t", "scheduled_at": value}
        assert_422_naming(client.post(f"{API}/tasks", json=body), "scheduled_at")
        assert_422_naming(client.patch(f"{API}/tasks/{task['id']}", json={"completed_at": value}), "completed_at")
        window = {"user_id": user["id"], "start_at": value, "end_at": "2030-01-02T00:00:00Z"}
        assert_422_naming(client.get(f"{API}/tasks/by-timerange", params=window), "start_at")
        stats = {"user_id": user["id"], "start_date": "2030-01-01T00:00:00Z", "end_date": value}
        assert_422_naming(client.get(f"{API}/tasks/statistics", params=stats), "end_date")
    assert read_back(client, "tasks", task) == task
    assert list_rows(client, "tasks")["total"] == 1
