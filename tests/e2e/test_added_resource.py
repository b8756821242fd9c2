import asyncio
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flux_dao.http.app import create_app
from flux_dao.ops.cli import main
from tests import factories
from tests.conftest import API_KEY, BACKENDS, KEY_HEADER, PG_DSN, make_settings, run_sql, sql_uuid

ROOT = Path(__file__).resolve().parents[2]
API = factories.API
MISSING_ID = "01900000-0000-7000-8000-0000000000bb"

MESSAGES = """
  messages:
    description: One message of an agent conversation.
    fields:
      conversation_id:  # no `index: true`: a reference gets its index by default
        {type: uuid, references: conversations, on_delete: cascade, required: true, immutable: true, filter: true}
      role: {type: enum, values: [user, assistant, system, function], required: true}
      content: {type: string, required: true, min_length: 1}
    order_by: [created_at desc]
"""


@dataclass(frozen=True)
class AddedResource:
    client: TestClient  # type: ignore[type-arg]
    database_url: str
    new_revisions: list[Path]
    migrations_output: str


def _pg_admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('added_db') / 'added.db'}"
        return
    name = f"flux_dao_added_{uuid.uuid4().hex[:12]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_DSN} is required and is not reachable: {exc!r}")
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def added(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AddedResource]:
    folder = tmp_path_factory.mktemp("added_manifest")
    manifest = folder / "resources.yaml"
    manifest.write_text((ROOT / "resources.yaml").read_text(encoding="utf-8") + MESSAGES, encoding="utf-8")
    shutil.copytree(ROOT / "migrations", folder / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    versions = folder / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "SERVICE_API_KEYS": API_KEY, "FLUX_DAO_MANIFEST": ""}
    made = runner.invoke(main, ["--manifest", str(manifest), "makemigrations", "-m", "add messages"], env=env)
    assert made.exit_code == 0, made.output
    new_revisions = sorted(set(versions.glob("*.py")) - before)
    migrated = runner.invoke(main, ["--manifest", str(manifest), "migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output
    app = create_app(make_settings(database_url, manifest_path=manifest))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers[KEY_HEADER] = API_KEY
        yield AddedResource(client, database_url, new_revisions, made.output)


@pytest.fixture
def client(added: AddedResource) -> TestClient:  # type: ignore[type-arg]
    return added.client


def conversation(client: Any) -> dict[str, Any]:
    return factories.conversation(client, factories.user(client)["id"])


def message(client: Any, conversation_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("role", "user")
    body.setdefault("content", "hello")
    return factories.create(client, "messages", conversation_id=conversation_id, **body)


def test_makemigrations_creates_exactly_one_revision(added: AddedResource) -> None:
    assert len(added.new_revisions) == 1, added.migrations_output
    assert added.new_revisions[0].name.endswith("add_messages.py")


def test_new_revision_creates_the_messages_table(added: AddedResource) -> None:
    text = added.new_revisions[0].read_text(encoding="utf-8")
    assert "create_table" in text
    assert "'messages'" in text


def test_new_revision_leaves_the_existing_tables_alone(added: AddedResource) -> None:
    text = added.new_revisions[0].read_text(encoding="utf-8")
    upgrade = text[text.index("def upgrade") : text.index("def downgrade")]
    for table in ("users", "goals", "tasks", "patterns", "notification_log"):
        assert f"'{table}'" not in upgrade, upgrade
    assert "alter_column" not in upgrade, upgrade


def test_the_reference_without_an_explicit_index_has_one_in_the_database(added: AddedResource) -> None:
    async def read() -> list[tuple[str, list[str]]]:
        engine = create_async_engine(added.database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                found = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("messages"))
        finally:
            await engine.dispose()
        return [(i["name"], list(i["column_names"])) for i in found]

    assert ("ix_messages_conversation_id", ["conversation_id"]) in asyncio.run(read())


def test_a_row_inserted_by_sql_without_an_id_is_served(added: AddedResource) -> None:
    parent = conversation(added.client)
    value = sql_uuid(added.database_url, parent["id"])
    insert = f"INSERT INTO messages (conversation_id, role, content) VALUES ({value}, 'user', 'sql')"  # noqa: S608
    run_sql(added.database_url, insert)
    page = added.client.get(f"{API}/messages", params={"conversation_id": parent["id"]}).json()
    assert [m["content"] for m in page["items"]] == ["sql"]
    assert uuid.UUID(page["items"][0]["id"]).version == 4


def test_create_message_returns_201_with_the_full_row(client: Any) -> None:
    parent = conversation(client)
    response = client.post(
        f"{API}/messages", json={"conversation_id": parent["id"], "role": "assistant", "content": "hi"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "conversation_id", "role", "content", "created_at", "updated_at", "version"}
    assert body["version"] == 1
    assert response.headers["etag"] == '"1"'
    assert body["conversation_id"] == parent["id"]
    assert body["role"] == "assistant"
    assert body["content"] == "hi"
    assert uuid.UUID(body["id"]).version == 7
    assert response.headers["location"].endswith(f"/messages/{body['id']}")


def test_get_message_returns_what_was_created(client: Any) -> None:
    created = message(client, conversation(client)["id"])
    response = client.get(f"{API}/messages/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_list_messages_filters_by_conversation(client: Any) -> None:
    first, second = conversation(client), conversation(client)
    mine = [message(client, first["id"], content=f"m{i}") for i in range(3)]
    message(client, second["id"])
    response = client.get(f"{API}/messages", params={"conversation_id": first["id"]})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 3
    assert sorted(m["id"] for m in page["items"]) == sorted(m["id"] for m in mine)
    assert [m["id"] for m in page["items"]] == [m["id"] for m in reversed(mine)]


def test_patch_message_content(client: Any) -> None:
    created = message(client, conversation(client)["id"])
    response = client.patch(f"{API}/messages/{created['id']}", json={"content": "edited"})
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["updated_at"] >= created["updated_at"]
    assert edited == {**created, "content": "edited", "version": 2, "updated_at": edited["updated_at"]}
    assert client.get(f"{API}/messages/{created['id']}").json()["content"] == "edited"


def test_patch_conversation_id_is_rejected(client: Any) -> None:
    created = message(client, conversation(client)["id"])
    other = conversation(client)
    response = client.patch(f"{API}/messages/{created['id']}", json={"conversation_id": other["id"]})
    assert response.status_code == 422, response.text
    assert "conversation_id" in response.text


def test_unknown_role_is_a_validation_error(client: Any) -> None:
    parent = conversation(client)
    response = client.post(f"{API}/messages", json={"conversation_id": parent["id"], "role": "robot", "content": "x"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "role" in [e["field"] for e in response.json()["errors"]]


def test_empty_content_is_a_validation_error(client: Any) -> None:
    parent = conversation(client)
    response = client.post(f"{API}/messages", json={"conversation_id": parent["id"], "role": "user", "content": ""})
    assert response.status_code == 422, response.text
    assert "content" in [e["field"] for e in response.json()["errors"]]


def test_missing_conversation_is_a_conflict(client: Any) -> None:
    response = client.post(f"{API}/messages", json={"conversation_id": MISSING_ID, "role": "user", "content": "x"})
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["type"] == "urn:flux-dao:problem:missing-reference"
    assert MISSING_ID in response.text
    assert "conversation_id" in response.text


def test_delete_message_returns_204_then_404(client: Any) -> None:
    created = message(client, conversation(client)["id"])
    assert client.delete(f"{API}/messages/{created['id']}").status_code == 204
    assert client.get(f"{API}/messages/{created['id']}").status_code == 404
    assert client.delete(f"{API}/messages/{created['id']}").status_code == 404


def test_deleting_the_user_cascades_to_its_messages(client: Any) -> None:
    owner = factories.user(client)
    thread = factories.conversation(client, owner["id"])
    created = message(client, thread["id"])
    assert client.delete(f"{API}/users/{owner['id']}").status_code == 204
    assert client.get(f"{API}/conversations/{thread['id']}").status_code == 404
    assert client.get(f"{API}/messages/{created['id']}").status_code == 404
    assert client.get(f"{API}/messages", params={"conversation_id": thread["id"]}).json()["total"] == 0


def test_messages_appear_in_the_openapi_document(client: Any) -> None:
    document = client.get("/schema/openapi.json").json()
    ids = {op.get("operationId") for item in document["paths"].values() for op in item.values() if isinstance(op, dict)}
    assert {"list_messages", "get_message", "create_message", "update_message", "delete_message"} <= ids
    role = document["components"]["schemas"]["Message"]["properties"]["role"]
    assert "$ref" in role


def test_the_new_reference_embeds_both_ways_with_no_code(client: Any) -> None:
    parent = conversation(client)
    mine = [message(client, parent["id"], content=f"m{i}") for i in range(3)]
    message(client, conversation(client)["id"], content="elsewhere")
    response = client.get(f"{API}/conversations/{parent['id']}", params={"include": "messages"})
    assert response.status_code == 200, response.text
    assert [m["content"] for m in response.json()["messages"]] == ["m2", "m1", "m0"]  # the child's order: newest first
    response = client.get(f"{API}/messages", params={"include": "conversation", "conversation_id": parent["id"]})
    assert response.status_code == 200, response.text
    found = response.json()["items"]
    assert sorted(m["id"] for m in found) == sorted(m["id"] for m in mine)
    assert {m["conversation"]["id"] for m in found} == {parent["id"]}
