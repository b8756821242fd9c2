import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import KEY_HEADER

HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
EXPECTED_OPERATION_IDS = {
    "list_tasks": ("get", "/api/v1/tasks"),
    "get_task": ("get", "/api/v1/tasks/{task_id}"),
    "create_task": ("post", "/api/v1/tasks"),
    "update_task": ("patch", "/api/v1/tasks/{task_id}"),
    "delete_task": ("delete", "/api/v1/tasks/{task_id}"),
    "tasks_by_timerange": ("get", "/api/v1/tasks/by-timerange"),
    "task_statistics": ("get", "/api/v1/tasks/statistics"),
    "bulk_update_task_status": ("post", "/api/v1/tasks/bulk-update-state"),
    "list_users": ("get", "/api/v1/users"),
    "get_user": ("get", "/api/v1/users/{user_id}"),
    "list_notification_log": ("get", "/api/v1/notification-log"),
    "get_notification_log": ("get", "/api/v1/notification-log/{notification_log_id}"),
}
ENTITY_COMPONENTS = ("User", "Goal", "Task", "Conversation", "Pattern", "NotificationLog")
LIST_FILTERS = {
    "/api/v1/users": set(),
    "/api/v1/goals": {"user_id", "status"},
    "/api/v1/tasks": {"user_id", "goal_id", "status"},
    "/api/v1/conversations": {"user_id", "context_type"},
    "/api/v1/patterns": {"user_id", "pattern_type"},
    "/api/v1/notification-log": {"task_id", "channel"},
}


@pytest.fixture
def doc(client: Any) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    return doc["components"]["schemas"][ref[len(prefix) :]]  # type: ignore[no-any-return]


def normalise(path: str) -> str:
    return path.rstrip("/") or "/"


def find_operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for candidate, verb, operation in operations(doc):
        if verb == method and normalise(candidate) == path:
            return operation
    pytest.fail(f"no {method.upper()} {path} in the OpenAPI document")


def effective_security(doc: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    return operation.get("security", doc.get("security")) or []


def key_scheme_name(doc: dict[str, Any]) -> str:
    schemes = doc["components"]["securitySchemes"]
    names = [
        name
        for name, scheme in schemes.items()
        if scheme.get("type") == "apiKey" and scheme.get("in") == "header" and scheme.get("name") == KEY_HEADER
    ]
    assert len(names) == 1, schemes
    return str(names[0])


def test_schema_is_served_to_a_remote_client_with_a_key(client: Any) -> None:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")


def test_document_is_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")


def test_browsable_schema_ui_is_served(client: Any) -> None:
    response = client.get("/schema")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


def test_every_operation_has_a_unique_operation_id(doc: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _, _, op in operations(doc)]
    assert all(isinstance(i, str) and i for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(str(i) for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("operation_id", sorted(EXPECTED_OPERATION_IDS))
def test_named_operation_id_sits_on_its_route(doc: dict[str, Any], operation_id: str) -> None:
    method, path = EXPECTED_OPERATION_IDS[operation_id]
    assert find_operation(doc, method, path).get("operationId") == operation_id


def test_entity_components_are_named_after_the_entities(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for entity in ENTITY_COMPONENTS:
        for suffix in ("", "Create", "Update", "Page"):
            assert f"{entity}{suffix}" in schemas, f"{entity}{suffix} missing from {sorted(schemas)}"


def test_task_page_has_the_list_envelope(doc: dict[str, Any]) -> None:
    page = doc["components"]["schemas"]["TaskPage"]
    assert set(page["properties"]) == {"items", "total", "page", "page_size", "has_next", "has_prev", "next_cursor"}
    items = page["properties"]["items"]
    assert items["type"] == "array"
    assert items["items"] == {"$ref": "#/components/schemas/Task"}


def test_list_tasks_returns_a_task_page(doc: dict[str, Any]) -> None:
    ok = find_operation(doc, "get", "/api/v1/tasks")["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TaskPage"}


def test_read_components_carry_their_embeds_as_optional_typed_properties(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    task, user = schemas["Task"], schemas["User"]
    assert {"goal", "user", "notification_log"} <= set(task["properties"])
    assert not {"goal", "user", "notification_log"} & set(task["required"])
    refs = json.dumps(task["properties"]["goal"])
    assert '"#/components/schemas/Goal"' in refs
    assert '"null"' in refs
    assert '"#/components/schemas/Task"' in json.dumps(user["properties"]["tasks"])


def test_list_documents_every_operator_parameter_with_its_type(doc: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in find_operation(doc, "get", "/api/v1/tasks")["parameters"]}
    assert parameters["scheduled_at__gte"]["schema"] == {"type": "string", "format": "date-time"}
    assert parameters["status__in"]["schema"]["items"] == {"$ref": "#/components/schemas/TaskStatus"}
    assert parameters["goal_id__isnull"]["schema"] == {"type": "boolean"}
    assert parameters["notification_log.channel"]["schema"] == {"$ref": "#/components/schemas/NotificationLogChannel"}
    for name in ("sort", "cursor", "fields", "include", "include_limit", "skip", "limit", "count"):
        assert parameters[name]["description"], name
    assert all(p["description"] for p in parameters.values())


def test_task_status_is_an_enum_component_with_the_five_statuses(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    status = resolve(doc, schemas["Task"]["properties"]["status"])
    assert sorted(status["enum"]) == sorted(["pending", "done", "missed", "rescheduled", "cancelled"])
    assert schemas["Task"]["properties"]["status"].get("$ref"), "TaskStatus should be a named component"


@pytest.mark.parametrize(
    ("component", "field", "values"),
    [
        ("Goal", "status", {"active", "completed", "abandoned", "pipeline"}),
        ("Task", "trigger_type", {"time", "location"}),
        ("Conversation", "context_type", {"onboarding", "goal", "task", "reschedule"}),
        ("NotificationLog", "channel", {"push", "whatsapp", "call"}),
    ],
)
def test_enum_fields_are_enum_components(doc: dict[str, Any], component: str, field: str, values: set[str]) -> None:
    prop = doc["components"]["schemas"][component]["properties"][field]
    assert "$ref" in prop, prop
    assert set(resolve(doc, prop)["enum"]) == values


def test_service_key_header_is_declared_as_an_api_key(doc: dict[str, Any]) -> None:
    key_scheme_name(doc)


def test_api_operations_require_the_service_key(doc: dict[str, Any]) -> None:
    scheme = key_scheme_name(doc)
    api_ops = [(m, p, op) for p, m, op in operations(doc) if p.startswith("/api/v1")]
    assert api_ops
    for method, path, op in api_ops:
        assert any(scheme in requirement for requirement in effective_security(doc, op)), (method, path)


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_probes_do_not_require_the_service_key(doc: dict[str, Any], path: str) -> None:
    scheme = key_scheme_name(doc)
    security = effective_security(doc, find_operation(doc, "get", path))
    assert not any(scheme in requirement for requirement in security), security


@pytest.mark.parametrize("path", sorted(LIST_FILTERS))
def test_list_operations_document_paging_and_filters(doc: dict[str, Any], path: str) -> None:
    parameters = {p["name"]: p for p in find_operation(doc, "get", path).get("parameters", [])}
    assert {"skip", "limit"} <= set(parameters)
    assert LIST_FILTERS[path] <= set(parameters), sorted(parameters)
    for name in {"skip", "limit", *LIST_FILTERS[path]}:
        assert parameters[name]["in"] == "query"
        assert parameters[name].get("required", False) is False


def test_list_paging_parameters_carry_their_bounds(doc: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in find_operation(doc, "get", "/api/v1/tasks")["parameters"]}
    skip, limit = parameters["skip"]["schema"], parameters["limit"]["schema"]
    assert skip["type"] == "integer"
    assert skip["minimum"] == 0
    assert "default" not in skip  # a generated client would send it, and `cursor` refuses any `skip`
    assert "default 0" in parameters["skip"]["description"]
    assert limit["type"] == "integer"
    assert limit["minimum"] == 1
    assert limit["maximum"] == 500
    assert limit["default"] == 100


def test_task_filters_are_typed(doc: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in find_operation(doc, "get", "/api/v1/tasks")["parameters"]}

    def variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
        return [resolve(doc, s) for s in schema.get("oneOf", schema.get("anyOf", [schema]))]

    assert any(v.get("format") == "uuid" for v in variants(parameters["user_id"]["schema"]))
    assert any(v.get("format") == "uuid" for v in variants(parameters["goal_id"]["schema"]))
    assert any("done" in v.get("enum", []) for v in variants(parameters["status"]["schema"]))


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("get", "/api/v1/tasks", {"422"}),
        ("post", "/api/v1/tasks", {"422", "409"}),
        ("get", "/api/v1/tasks/{task_id}", {"404"}),
        ("patch", "/api/v1/tasks/{task_id}", {"422", "404", "409"}),
        ("delete", "/api/v1/tasks/{task_id}", {"404", "409"}),
        ("delete", "/api/v1/users/{user_id}", {"404", "409"}),
        ("post", "/api/v1/tasks/bulk-update-state", {"422"}),
    ],
)
def test_error_responses_are_problem_documents(doc: dict[str, Any], method: str, path: str, statuses: set[str]) -> None:
    responses = find_operation(doc, method, path)["responses"]
    for status in statuses:
        assert status in responses, (method, path, sorted(responses))
        content = responses[status].get("content", {})
        assert "application/problem+json" in content, (method, path, status, content)
        assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_problem_schema_has_the_rfc_9457_members(doc: dict[str, Any]) -> None:
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])
    assert {"type", "title", "status", "detail"} <= set(problem.get("required", []))


def test_every_error_response_uses_problem_json(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert set(response.get("content", {})) == {"application/problem+json"}, (method, path, status)


def test_no_operation_documents_a_400(doc: dict[str, Any]) -> None:
    offenders = [(m, p) for p, m, op in operations(doc) if "400" in op["responses"]]
    assert offenders == []


def test_conversations_have_no_delete_operation(doc: dict[str, Any]) -> None:
    deletes = [p for p, m, _ in operations(doc) if m == "delete" and p.startswith("/api/v1/conversations")]
    assert deletes == []
    ids = {op.get("operationId") for _, _, op in operations(doc)}
    assert "delete_conversation" not in ids
    assert {"list_conversations", "get_conversation", "create_conversation", "update_conversation"} <= ids


def test_create_schema_omits_server_set_fields(doc: dict[str, Any]) -> None:
    create = doc["components"]["schemas"]["TaskCreate"]
    assert not {"id", "created_at"} & set(create["properties"])
    assert {"user_id", "title"} <= set(create.get("required", []))


def test_update_schema_omits_immutable_fields(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "user_id" not in schemas["TaskUpdate"]["properties"]
    assert "task_id" not in schemas["NotificationLogUpdate"]["properties"]
    assert set(schemas["ConversationUpdate"]["properties"]) == {"context_type", "last_message_at"}
    assert not schemas["TaskUpdate"].get("required")
