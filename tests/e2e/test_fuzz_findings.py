"""Regressions for what schemathesis found (tests/fuzz/test_schemathesis.py), each through HTTP on both backends.

1. OPTIONS answered ``Allow: GET, OPTIONS`` on paths that also take POST, PATCH or DELETE (Litestar builds its
   automatic OPTIONS handler with the first handler registered on a path and never updates it).
2. JSON bodies were converted leniently: ``"5"`` stored as the integer 5, ``"true"`` and ``1`` as booleans, and a
   number as a datetime (``12345`` -> 1970-01-01T03:25:45Z), against the documented types.
3. Request bodies refuse unknown fields (422) but the document did not say so (no ``additionalProperties: false``),
   so a client or fuzzer reading it expected extra keys to be accepted.
4. A bound of 0 (``confidence: ge: 0.0``) was missing from the document (Litestar drops falsy constraints), so
   negative confidences looked valid and were refused.
5. The docs routes (``/schema/{path}``...) documented themselves, with statuses they do not send.
"""

import re
from typing import Any

import pytest

from flux_dao.manifest import load_manifest
from flux_dao.manifest.names import struct_name
from tests import factories
from tests.conftest import MANIFEST
from tests.factories import API
from tests.problems import assert_problem

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "trace"}
SOME_ID = "01a2177c-b23a-7154-b46e-87e6b814b23c"


@pytest.fixture
def doc(client: Any) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_422_naming(response: Any, field: str) -> None:
    body = assert_problem(response, 422, "validation-error")
    assert field in [error["field"] for error in body["errors"]], body


def _component(doc: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema  # type: ignore[no-any-return]


# --- 1. OPTIONS -----------------------------------------------------------------------------------------------------


def test_options_allows_exactly_the_documented_methods_on_every_path(client, doc):
    checked = 0
    for template, item in doc["paths"].items():
        if not template.startswith(API):
            continue
        path = re.sub(r"\{[a-z_]+\}", SOME_ID, template)
        response = client.options(path)
        assert response.status_code == 204, (path, response.text)
        allowed = {m.strip().lower() for m in response.headers["allow"].split(",")}
        assert allowed == {m for m in item if m in HTTP_METHODS} | {"options"}, (template, response.headers["allow"])
        checked += 1
    assert checked >= 15  # every resource's collection and item paths, plus the extra queries


def test_options_on_a_resource_without_delete_does_not_offer_it(client):
    response = client.options(f"{API}/conversations/{SOME_ID}")
    assert response.status_code == 204
    assert sorted(m.strip() for m in response.headers["allow"].split(",")) == ["GET", "OPTIONS", "PATCH"]
    assert_problem(client.delete(f"{API}/conversations/{SOME_ID}"), 405, "method-not-allowed")


# --- 2. strict JSON bodies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration_minutes", "5"),  # a string for an integer
        ("duration_minutes", True),  # a boolean for an integer
        ("scheduled_at", 12345),  # a number for a datetime (was stored as 1970-01-01T03:25:45Z)
        ("scheduled_at", 1.5e9),
        ("title", 5),
        ("goal_id", 5),
    ],
)
def test_a_wrong_json_type_is_422_naming_the_field_on_create_and_patch(client, field, value):
    user = factories.user(client)
    assert_422_naming(client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "t", field: value}), field)
    task = factories.task(client, user["id"])
    assert_422_naming(client.patch(f"{API}/tasks/{task['id']}", json={field: value}), field)
    listed = client.get(f"{API}/tasks").json()
    assert [row["id"] for row in listed["items"]] == [task["id"]]
    assert client.get(f"{API}/tasks/{task['id']}").json() == task


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "1"])
def test_a_boolean_field_takes_only_json_booleans(client, value):
    assert_422_naming(client.post(f"{API}/users", json={"email": "a@example.com", "onboarded": value}), "onboarded")
    user = factories.user(client)
    assert_422_naming(client.patch(f"{API}/users/{user['id']}", json={"onboarded": value}), "onboarded")
    assert client.get(f"{API}/users/{user['id']}").json()["onboarded"] is False


@pytest.mark.parametrize("value", ["0.5", "1"])
def test_a_float_field_takes_only_json_numbers(client, value):
    user = factories.user(client)
    assert_422_naming(client.post(f"{API}/patterns", json={"user_id": user["id"], "confidence": value}), "confidence")


def test_the_bulk_update_body_is_strict_too(client):
    user = factories.user(client)
    task = factories.task(client, user["id"])
    url = f"{API}/tasks/bulk-update-state"
    assert_422_naming(client.post(url, json={"task_ids": task["id"], "new_status": "done"}), "task_ids")
    assert_422_naming(client.post(url, json={"task_ids": [task["id"]], "new_status": 1}), "new_status")
    assert client.get(f"{API}/tasks/{task['id']}").json()["status"] == "pending"


def test_a_whole_number_written_as_a_float_is_still_that_integer(client):
    """JSON Schema's ``integer`` includes 5.0; the strict decoding keeps accepting it (as the lax one did)."""
    user = factories.user(client)
    created = client.post(f"{API}/tasks", json={"user_id": user["id"], "title": "t", "duration_minutes": 30.0})
    assert created.status_code == 201, created.text
    assert created.json()["duration_minutes"] == 30
    patched = client.patch(f"{API}/tasks/{created.json()['id']}", json={"duration_minutes": 45.0})
    assert patched.status_code == 200, patched.text
    assert patched.json()["duration_minutes"] == 45
    assert_422_naming(
        client.patch(f"{API}/tasks/{created.json()['id']}", json={"duration_minutes": 45.5}), "duration_minutes"
    )
    goal = client.post(f"{API}/goals", json={"user_id": user["id"], "title": "g", "target_weeks": 0.0})
    assert_422_naming(goal, "target_weeks")  # the bound still applies: ge 1


def test_datetimes_as_strings_still_work_with_a_strict_body(client):
    user = factories.user(client)
    task = factories.task(client, user["id"], scheduled_at="2030-01-01T08:00:00+01:00")
    assert task["scheduled_at"] == "2030-01-01T07:00:00Z"


# --- 3. additionalProperties: false ---------------------------------------------------------------------------------


def test_every_request_body_is_documented_closed_and_an_unknown_key_is_422(client, doc):
    bodies = 0
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS or "requestBody" not in operation:
                continue
            schema = _component(doc, operation["requestBody"]["content"]["application/json"]["schema"])
            if schema.get("type") == "array":  # a bulk body: each of its objects is closed
                schema = _component(doc, schema["items"])
            assert schema.get("additionalProperties") is False, (method, template, schema)
            bodies += 1
    assert bodies >= 13  # create and update of each resource (conversations has no delete, all have update) + bulk
    user = factories.user(client)
    assert_422_naming(
        client.post(f"{API}/goals", json={"user_id": user["id"], "title": "g", "colour": "red"}), "colour"
    )
    assert_422_naming(client.patch(f"{API}/users/{user['id']}", json={"nickname": "x"}), "nickname")


# --- 4. zero bounds -------------------------------------------------------------------------------------------------


def test_every_numeric_bound_of_the_manifest_is_documented_including_zero(doc):
    manifest = load_manifest(MANIFEST)
    seen = 0
    for entity in manifest.entities:
        for role in ("Create", "Update"):
            name = struct_name(entity, role)
            properties = doc["components"]["schemas"][name]["properties"]
            for field, spec in entity.fields.items():
                if field not in properties or spec.type not in {"integer", "float"}:
                    continue
                # a create field with a default is documented one level down, in a one-branch anyOf
                schema = properties[field].get("anyOf", [properties[field]])[0]
                if spec.ge is not None:
                    assert schema.get("minimum") == spec.ge, (name, field, properties[field])
                    seen += 1
                if spec.le is not None:
                    assert schema.get("maximum") == spec.le, (name, field, properties[field])
                    seen += 1
    assert seen >= 4


def test_a_confidence_below_the_documented_minimum_is_422(client, doc):
    assert doc["components"]["schemas"]["PatternCreate"]["properties"]["confidence"]["minimum"] == 0
    user = factories.user(client)
    assert_422_naming(client.post(f"{API}/patterns", json={"user_id": user["id"], "confidence": -0.1}), "confidence")
    created = factories.pattern(client, user["id"], confidence=0.0)
    assert created["confidence"] == 0.0


# --- 5. the docs routes are not operations --------------------------------------------------------------------------


def test_the_document_does_not_document_its_own_docs_routes(doc):
    assert [path for path in doc["paths"] if path.startswith("/schema")] == []
