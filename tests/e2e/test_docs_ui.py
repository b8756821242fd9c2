"""The docs UI works offline (every file it loads is served by flux-dao), ``/docs`` leads to it, ``/metrics`` is
plain Prometheus text with one charset."""

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from swagger_ui_bundle import swagger_ui_path

BASE = "http://testserver.local"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _Links(HTMLParser):
    """Every ``src`` and ``href`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links.extend(value for name, value in attrs if name in {"src", "href"} and value)


def page_links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.links


def test_docs_redirects_to_the_docs_ui(client):
    response = client.get("/docs", follow_redirects=False)
    assert response.status_code in {301, 302, 307, 308}
    assert response.headers["location"] == "/schema"
    assert client.get("/docs").url.path == "/schema"


def test_the_docs_ui_loads_nothing_from_outside_the_service(client):
    page = client.get("/schema")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    links = page_links(page.text)
    assert {urlsplit(link).path.rsplit(".", 1)[-1] for link in links} >= {"js", "css", "png"}  # scripts, style, icon
    for link in links:
        absolute = urljoin(f"{BASE}/schema", link)
        assert urlsplit(absolute).netloc == urlsplit(BASE).netloc, f"{link} is not served by flux-dao"
        asset = client.get(urlsplit(absolute).path)
        assert asset.status_code == 200, link
        suffix = "." + link.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), (link, asset.headers["content-type"])
        assert len(asset.content) > 0


def test_the_docs_ui_is_swagger_ui_5_which_renders_openapi_3_1(client):
    bundle = client.get("/schema/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    document = client.get("/schema/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "swagger-ui-5." in str(swagger_ui_path)  # 4.x cannot render an OpenAPI 3.1 document


@pytest.mark.parametrize("path", ["/schema/redoc", "/schema/elements", "/schema/rapidoc"])
def test_only_one_docs_ui_is_served(client, path):
    assert client.get(path).status_code == 404


def test_metrics_send_one_charset(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.lower().count("charset") == 1, content_type


@pytest.mark.parametrize("name", ["index.html", "swagger-initializer.js", "swagger-ui.js.map", "..%2F__init__.py"])
def test_only_the_files_the_page_loads_are_served(client, name):
    """The bundle's folder also holds a demo page that loads an example API from the internet: not served."""
    assert client.get(f"/schema/assets/{name}").status_code == 404
