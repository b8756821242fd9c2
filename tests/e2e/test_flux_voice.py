"""The later Flux schema by manifest alone: the voice agent's HTTP calls against ``flux-dao --manifest
examples/flux-voice/resources.yaml serve``, on SQLite and PostgreSQL.

The calls are the ones the voice conversation agent's client makes (../shared/notes/earlier_service.md §7), with
its collection paths' trailing slash. Nothing here is Python written for the example: the manifest's ``updates``
and ``list`` declarations make the two endpoint shapes.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, BACKENDS, KEY_HEADER, fresh_database
from tests.live import LiveServer, live_server

ROOT = Path(__file__).resolve().parents[2]
VOICE = ROOT / "examples" / "flux-voice" / "resources.yaml"
MISSING = "01900000-0000-7000-8000-0000000000ee"
VOICE_FIELDS = ("voice_session_id", "extracted_intent", "intent_payload", "linked_goal_id", "linked_task_id")
VOICE_FIELDS += ("ended_at", "duration_seconds")

pytestmark = pytest.mark.slow  # a real server per backend (about 3 s each)


@pytest.fixture(scope="module", params=BACKENDS)
def voice(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    work = tmp_path_factory.mktemp(f"voice-{request.param}")
    with fresh_database(str(request.param), work, "voice") as url:
        env = {"FLUX_DAO_SERVICE_API_KEYS": API_KEY, "FLUX_DAO_DOCS": "public"}
        with live_server(url, work, env=env, manifest=VOICE) as server, _client(server) as client:
            yield client


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.base}/api/v1", headers={KEY_HEADER: API_KEY}, timeout=10)


def _created(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_the_voice_agent_calls(voice: httpx.Client) -> None:
    user = _created(voice.post("/users/", json={"email": "voice@example.com"}))
    conversation = _created(
        voice.post(
            "/conversations/",
            json={
                "user_id": user["id"],
                "langgraph_thread_id": "voice-thread-1",
                "context_type": "voice",
                "voice_session_id": "session-1",
            },
        )
    )
    assert conversation["voice_session_id"] == "session-1"
    assert conversation["ended_at"] is None

    read = voice.get(f"/conversations/{conversation['id']}")
    assert read.status_code == 200
    assert read.json()["context_type"] == "voice"

    goal = _created(
        voice.post("/goals/", json={"user_id": user["id"], "title": "Run", "description": "", "target_weeks": 8})
    )
    assert goal["description"] == ""
    assert goal["target_weeks"] == 8
    task = _created(
        voice.post(
            "/tasks/",
            json={
                "user_id": user["id"],
                "goal_id": goal["id"],
                "title": "Run 5k",
                "scheduled_at": "2030-01-01T07:00:00Z",
                "trigger_type": "time",
                "status": "pending",
            },
        )
    )

    ended = "2030-01-01T07:05:00Z"
    patched = voice.patch(
        f"/conversations/{conversation['id']}/voice",
        json={
            "extracted_intent": "NEW_TASK",
            "intent_payload": {"title": "Run 5k"},
            "linked_goal_id": goal["id"],
            "linked_task_id": task["id"],
            "ended_at": ended,
            "duration_seconds": 300,
        },
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["extracted_intent"], body["intent_payload"], body["duration_seconds"]) == (
        "NEW_TASK",
        {"title": "Run 5k"},
        300,
    )
    assert (body["linked_task_id"], body["ended_at"], body["version"]) == (task["id"], ended, 2)
    assert body["voice_session_id"] == "session-1"  # partial: what was not sent stays

    for content in ("I want to run", "Added a 5k run for tomorrow"):
        message = _created(
            voice.post(
                "/messages/",
                json={
                    "conversation_id": conversation["id"],
                    "role": "user",
                    "content": content,
                    "input_modality": "voice",
                },
            )
        )
        assert message["metadata"] == {}
    listed = voice.get("/messages/", params={"conversation_id": conversation["id"]})
    assert listed.status_code == 200
    messages = listed.json()
    assert isinstance(messages, list)
    assert [m["content"] for m in messages] == ["I want to run", "Added a 5k run for tomorrow"]
    assert [m["input_modality"] for m in messages] == ["voice", "voice"]

    assert voice.get(f"/users/{MISSING}").status_code == 404
    window = {"user_id": user["id"], "start_at": "2030-01-01T00:00:00Z", "end_at": "2030-01-02T00:00:00Z"}
    in_range = voice.get("/tasks/by-timerange", params=window)
    assert in_range.status_code == 200
    assert [t["id"] for t in in_range.json()] == [task["id"]]
    done = voice.patch(f"/tasks/{task['id']}", json={"status": "done"})
    assert done.status_code == 200
    assert done.json()["status"] == "done"


def test_the_voice_update_takes_the_voice_fields_only(voice: httpx.Client) -> None:
    user = _created(voice.post("/users/", json={"email": "voice-only@example.com"}))
    conversation = _created(
        voice.post(
            "/conversations/",
            json={"user_id": user["id"], "langgraph_thread_id": "voice-thread-2", "context_type": "voice"},
        )
    )
    other = voice.patch(
        f"/conversations/{conversation['id']}/voice", json={"context_type": "goal", "duration_seconds": 1}
    )
    assert other.status_code == 422
    assert [e["field"] for e in other.json()["errors"]] == ["context_type"]
    assert voice.get(f"/conversations/{conversation['id']}").json()["version"] == 1  # nothing applied
    assert voice.patch(f"/conversations/{MISSING}/voice", json={"ended_at": None}).status_code == 404
    assert voice.patch(f"/conversations/{conversation['id']}/voice", json={"duration_seconds": -1}).status_code == 422
    stale = voice.patch(
        f"/conversations/{conversation['id']}/voice", json={"ended_at": None}, headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 412


def test_the_message_list_requires_its_conversation_and_keeps_the_query_language(voice: httpx.Client) -> None:
    missing = voice.get("/messages/")
    assert missing.status_code == 422
    assert missing.json()["errors"] == [
        {"field": "conversation_id", "message": "is required: this list answers one conversation_id at a time"}
    ]
    user = _created(voice.post("/users/", json={"email": "voice-list@example.com"}))
    conversation = _created(
        voice.post(
            "/conversations/",
            json={"user_id": user["id"], "langgraph_thread_id": "voice-thread-3", "context_type": "voice"},
        )
    )
    for index, role in enumerate(("user", "assistant", "user")):
        _created(
            voice.post("/messages", json={"conversation_id": conversation["id"], "role": role, "content": f"m{index}"})
        )
    scope = {"conversation_id": conversation["id"]}
    newest_first = voice.get("/messages", params={**scope, "sort": "-created_at", "fields": "content", "limit": 2})
    assert newest_first.json() == [
        {"id": newest_first.json()[0]["id"], "content": "m2"},
        {"id": newest_first.json()[1]["id"], "content": "m1"},
    ]
    users_only = voice.get("/messages/", params={**scope, "role": "user"})
    assert [m["content"] for m in users_only.json()] == ["m0", "m2"]
    assert voice.get("/messages/", params={**scope, "cursor": "x"}).status_code == 422  # an array has no next page
    message = users_only.json()[0]["id"]
    assert voice.patch(f"/messages/{message}", json={"content": "edited"}).status_code == 405  # no PATCH route
    assert voice.delete(f"/messages/{message}").status_code == 204


def test_the_document_describes_both_shapes(voice: httpx.Client) -> None:
    base = str(voice.base_url).rstrip("/").removesuffix("/api/v1")
    document = httpx.get(f"{base}/schema/openapi.json", timeout=10).json()
    voice_update = document["paths"]["/api/v1/conversations/{conversation_id}/voice"]["patch"]
    assert voice_update["operationId"] == "update_conversation_voice"
    body = voice_update["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert sorted(document["components"]["schemas"][body]["properties"]) == sorted(
        [
            "voice_session_id",
            "extracted_intent",
            "intent_payload",
            "linked_goal_id",
            "linked_task_id",
            "ended_at",
            "duration_seconds",
        ]
    )
    listing = document["paths"]["/api/v1/messages"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    required = [p["name"] for p in listing["parameters"] if p.get("required")]
    assert required == ["conversation_id"]
    names = {p["name"] for p in listing["parameters"]}
    assert "cursor" not in names
    assert "count" not in names
    assert "patch" not in document["paths"]["/api/v1/messages/{message_id}"]
