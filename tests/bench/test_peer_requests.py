"""The SQLite vs PocketBase comparison's pure parts: the same rows every time, and the same question on both APIs.

No server here (the smoke test runs the whole comparison): the seed's ids, PocketBase's collections and indexes read
off the manifest, and each shared scenario's request translated to PocketBase's collections API.
"""

import json
import random
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from bench.peer import PEER_SCENARIOS, peer_requests
from bench.pocketbase import MIRRORED, PocketBase, collection_field, collection_indexes, pocketbase_id, pocketbase_time
from bench.seed import START, Dataset, Ids, generate, uuid7
from flux_dao.manifest import load_manifest
from flux_dao.schema.tables import build_tables
from tests.conftest import MANIFEST


def _seeded(scale: float = 0.01) -> tuple[Dataset, list]:
    data = Dataset(start=START)
    chunks = list(generate(data, scale))
    return data, chunks


def _peer(data: Dataset, chunks: list) -> PocketBase:
    peer = PocketBase("http://127.0.0.1:1", load_manifest(MANIFEST), "token")
    for chunk in chunks:
        for _, rows in chunk.tables():
            peer.ids |= {row.id: pocketbase_id(row.id) for row in rows}
    return peer


def test_seeded_ids_are_uuid7_ascending_in_insertion_order_and_repeat_run_to_run():
    made = uuid7(1_893_553_445_678, random.Random(1))  # noqa: S311 (a seeded stream is the point)
    assert (made.version, made.variant) == (7, "specified in RFC 4122")
    assert made.int >> 80 == 1_893_553_445_678
    stream = Ids(1)
    ids = [stream.next() for _ in range(1000)]
    assert ids == sorted(ids)
    first, second = _seeded(), _seeded()
    assert first[0] == second[0]
    assert [c.tasks for c in first[1]] == [c.tasks for c in second[1]]
    tasks = [task for chunk in first[1] for task in chunk.tasks]
    assert len(tasks) == first[0].tasks == 1000
    assert len({pocketbase_id(task.id) for task in tasks}) == len(tasks)


def test_collections_mirror_the_manifest_and_flux_daos_indexes():
    manifest = load_manifest(MANIFEST)
    tasks = manifest.entity("tasks").fields
    assert collection_field("user_id", tasks["user_id"], {"users": "pbc_1"}) == {
        "name": "user_id",
        "required": True,
        "type": "relation",
        "collectionId": "pbc_1",
        "maxSelect": 1,
        "cascadeDelete": True,
    }
    assert collection_field("status", tasks["status"], {})["values"] == list(tasks["status"].values or ())
    assert collection_field("onboarded", manifest.entity("users").fields["onboarded"], {})["required"] is False
    tables = build_tables(manifest).tables
    found = collection_indexes(tables["tasks"], {*MIRRORED["tasks"], "created_at"})
    assert any("(user_id, created_at)" in sql for sql in found)
    assert any("(user_id, scheduled_at, status)" in sql for sql in found)
    assert not any("completed_at" in sql for sql in found)
    unique = [sql for sql in collection_indexes(tables["users"], {"email"}) if sql.startswith("CREATE UNIQUE INDEX")]
    assert [sql.rsplit(" ", 1)[1] for sql in unique] == ["(email)"]


def test_each_shared_scenario_asks_pocketbase_the_same_question():
    data, chunks = _seeded()
    peer = _peer(data, chunks)
    first = {key: next(zip(*peer_requests(key, data, peer), strict=True)) for key in PEER_SCENARIOS}

    assert first["S0"][1] == ("GET", "/api/health", None)

    (_, flux_path, _), (method, path, body) = first["S1"]
    assert (method, body) == ("GET", None)
    assert path == f"/api/collections/tasks/records/{peer.ids[UUID(flux_path.rsplit('/', 1)[1])]}"

    (_, flux_path, _), (_, path, _) = first["S2"]
    query = parse_qs(urlsplit(path).query)
    user = parse_qs(urlsplit(flux_path).query)["user_id"][0]
    assert query == {"filter": [f"user_id='{peer.ids[UUID(user)]}'"], "perPage": ["20"], "sort": ["-created_at,-id"]}

    (_, _, flux_body), (method, path, body) = first["S3"]
    sent, created = json.loads(flux_body), json.loads(body)
    assert (method, path) == ("POST", "/api/collections/tasks/records")
    assert created["user_id"] == peer.ids[UUID(sent["user_id"])]
    assert created["scheduled_at"] == pocketbase_time(datetime.fromisoformat(sent["scheduled_at"]))
    assert (created["status"], created["trigger_type"], created["title"]) == ("pending", "time", sent["title"])
    assert created["created_at"] == pocketbase_time(data.start)

    (_, flux_path, flux_body), (method, path, body) = first["S4"]
    assert (method, body) == ("PATCH", flux_body)
    assert path.endswith(peer.ids[UUID(flux_path.rsplit("/", 1)[1])])

    (_, flux_path, _), (_, path, _) = first["S5"]
    asked = parse_qs(urlsplit(flux_path).query)
    query = parse_qs(urlsplit(path).query)
    start, end = (pocketbase_time(datetime.fromisoformat(asked[name][0])) for name in ("start_at", "end_at"))
    user = peer.ids[UUID(asked["user_id"][0])]
    assert query["filter"] == [f"user_id='{user}' && scheduled_at>='{start}' && scheduled_at<='{end}'"]
    assert (query["sort"], query["skipTotal"]) == (["scheduled_at,id"], ["1"])
