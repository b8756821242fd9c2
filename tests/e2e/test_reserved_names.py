"""Field names that Litestar reserves as handler keywords (state, data, query...) work as filters and bodies."""

from litestar.testing import TestClient

from flux_dao.http.app import create_app
from flux_dao.store.migrations import make_migration, upgrade
from tests.conftest import API_KEY, KEY_HEADER, make_settings

MANIFEST = """
version: 1
resources:
  jobs:
    fields:
      state: {type: enum, values: [new, done], default: new, filter: true}
      query: {type: string, filter: true}
      headers: {type: string, filter: true}
      data: {type: json}
"""


def test_fields_named_like_litestar_keywords_are_filters_and_body_fields(tmp_path):
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(MANIFEST)
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}", manifest_path=manifest)
    assert make_migration(settings, "jobs") is not None
    upgrade(settings)
    with TestClient(create_app(settings)) as client:
        client.headers[KEY_HEADER] = API_KEY
        made = client.post("/api/v1/jobs", json={"state": "done", "query": "q", "headers": "h", "data": {"a": 1}})
        assert made.status_code == 201, made.text
        client.post("/api/v1/jobs", json={"query": "other"})
        page = client.get("/api/v1/jobs", params={"state": "done", "query": "q", "headers": "h"}).json()
        assert [item["id"] for item in page["items"]] == [made.json()["id"]]
        bad = client.get("/api/v1/jobs", params={"state": "nope"})
        assert bad.status_code == 422
        assert [e["field"] for e in bad.json()["errors"]] == ["state"]
