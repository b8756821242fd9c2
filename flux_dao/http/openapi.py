"""The OpenAPI document: 3.1, named components, the service-key scheme, and problem+json errors only.

Browsable at ``/schema`` (``/docs`` redirects there) with Swagger UI, whose files come from the
``swagger-ui-bundle-v2`` package and are served under ``/schema/assets``: the page loads nothing from outside the
service, so the docs work offline and behind a firewall.
"""

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final

from litestar import Router, get
from litestar.datastructures import ResponseHeader
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.params import FromPath
from litestar.response import File, Redirect
from swagger_ui_bundle import swagger_ui_path

from flux_dao.http.auth import SERVICE_KEY_HEADER

__all__ = (
    "DOCS_PATH",
    "ETAG_HEADER",
    "IDEMPOTENCY_KEY",
    "IF_MATCH",
    "IF_NONE_MATCH",
    "REPLAYED_HEADER_DOC",
    "SCHEMA_PATH",
    "SECURITY_SCHEME",
    "FluxOperation",
    "docs_redirect",
    "list_body",
    "openapi_config",
    "streaming",
    "with_headers",
    "with_patterns",
    "with_request_body",
)

SECURITY_SCHEME: Final = "ServiceKey"
SCHEMA_PATH: Final = "/schema"
"""The docs UI, with the document at ``/schema/openapi.json`` (and ``.yaml``)."""
DOCS_PATH: Final = "/docs"
"""A short, conventional address that redirects to the docs UI."""
_ASSETS: Final = f"{SCHEMA_PATH}/assets"
_ASSET_TYPES: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
"""The files the docs page loads, and only those: the bundle's folder also holds a demo page that loads an example
API from the internet."""


_ACCESS_RESPONSES: Final = {
    "403": "The service key lacks the scope this operation needs (named in `scope`).",
    "429": "Over the key's request rate (FLUX_DAO_RATE_LIMIT); retry after the Retry-After delay.",
}


_BODY_TOO_LARGE: Final = "The body is larger than FLUX_DAO_MAX_BODY bytes (1 MiB by default)."
_HEAD_TOO_LARGE: Final = (
    "The request line and headers together are larger than FLUX_DAO_MAX_HEADER_BYTES (a long query string with "
    "the usual headers): answered by the HTTP layer, which then closes the connection."
)
_URI_TOO_LONG: Final = (
    "The request line is longer than FLUX_DAO_MAX_HEADER_BYTES (say, thousands of `in` values): answered by the "
    "HTTP layer, which then closes the connection."
)


@dataclass
class FluxOperation(Operation):
    """An operation without Litestar's automatic 400 response, and with the access problems of the key check.

    flux-dao answers every validation failure with a 422 problem (declared per operation); the automatic 400 entry
    would document a status the service never sends, with a schema generated clients cannot parse. Every operation
    behind the key check (it declares 401) can also answer 403 (scope) and 429 (rate limit), with the same problem
    body as its 401; one that takes query parameters can also answer 414 (a request line over the head limit) and
    431 (the whole head over it); one that takes a body, 413. An optional query parameter is documented without the
    ``null`` alternative Litestar derives from ``X | None``: it is left out, never sent as null (``?goal_id=null`` is
    a 422), and a generated client that accepted None would drop it, silently turning a filter off.
    """

    extra_parameters: ClassVar[tuple[Parameter, ...]] = ()
    """Parameters the handler parses itself (``flux_dao.http.request``), documented beside Litestar's own."""
    documented_body: ClassVar[RequestBody | None] = None
    """A body the handler reads itself, documented as Litestar would document a ``data`` parameter."""
    patterns: ClassVar[dict[str, str]] = {}
    """Patterns of parameters (query or header) that Litestar leaves out of the document, by name."""
    streamed: ClassVar[str | None] = None
    """The media type of a 200 whose body is a stream of text (Server-Sent Events), not JSON."""

    def __post_init__(self) -> None:
        if self.documented_body is not None:
            self.request_body = self.documented_body
        if self.extra_parameters:
            self.parameters = [*(self.parameters or []), *self.extra_parameters]
        if self.parameters:
            self.parameters = [_not_null(p) if isinstance(p, Parameter) else p for p in self.parameters]
            self.parameters = [self._patterned(p) for p in self.parameters]
        if not self.responses:
            return
        ok = self.responses.get("200")
        if self.streamed is not None and isinstance(ok, OpenAPIResponse):
            ok.content = {self.streamed: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))}
        self.responses.pop("400", None)
        unauthorized = self.responses.get("401")
        if isinstance(unauthorized, OpenAPIResponse):
            for status, description in _ACCESS_RESPONSES.items():
                self.responses.setdefault(status, replace(unauthorized, description=description))
            if any(isinstance(p, Parameter) and p.param_in == "query" for p in self.parameters or ()):
                self.responses.setdefault("414", replace(unauthorized, description=_URI_TOO_LONG))
                self.responses.setdefault("431", replace(unauthorized, description=_HEAD_TOO_LARGE))
            if self.request_body is not None:
                self.responses.setdefault("413", replace(unauthorized, description=_BODY_TOO_LARGE))

    def _patterned(self, parameter: Parameter | Reference) -> Parameter | Reference:
        pattern = self.patterns.get(parameter.name) if isinstance(parameter, Parameter) else None
        if pattern is None or not isinstance(parameter, Parameter) or not isinstance(parameter.schema, Schema):
            return parameter
        return replace(parameter, schema=replace(parameter.schema, pattern=pattern))


def with_patterns(base: type[FluxOperation], patterns: dict[str, str]) -> type[FluxOperation]:
    """``base`` documenting the ``pattern`` of each parameter named in ``patterns``."""
    return type(base.__name__, (base,), {"patterns": {**base.patterns, **patterns}})


def streaming(base: type[FluxOperation], media_type: str) -> type[FluxOperation]:
    """``base`` documenting its 200 as a stream of ``media_type`` text."""
    return type(base.__name__, (base,), {"streamed": media_type})


def _header(name: str, description: str, pattern: str, max_length: int | None = None) -> Parameter:
    """An optional header the handler reads itself; with ``max_length``, also 1 to that many characters."""
    min_length = 1 if max_length is not None else None  # lengths beside a pattern only where they add to it
    schema = Schema(type=OpenAPIType.STRING, pattern=pattern, min_length=min_length, max_length=max_length)
    return Parameter(name=name, param_in="header", required=False, schema=schema, description=description)


_TAG: Final = r'(W/)?"[\x21\x23-\x7e]*"'
"""An entity tag (RFC 9110 8.8.3); the value of an If-Match that flux-dao honours is one such tag, or ``*``."""


IF_MATCH: Final = _header(
    "If-Match",
    'The version the change is made against, as the ETag read: `"3"`. A row at another version refuses the change '
    "with 412 (its current `version` in the problem); `*` accepts any version.",
    rf"^\s*(\*|{_TAG})\s*$",
)
IF_NONE_MATCH: Final = _header(
    "If-None-Match",
    'The ETag of the copy the client holds (`"3"`): 304 with no body while the row is at it. (The 304 is not listed '
    "among the responses: generated clients would type every read's result as untyped for it.)",
    rf"^\s*(\*|{_TAG}(\s*,\s*{_TAG})*)\s*$",
)
IDEMPOTENCY_KEY: Final = _header(
    "Idempotency-Key",
    "1-255 printable characters naming this write: a repeat with the same key and request replays the first answer "
    "(`Idempotent-Replayed: true`) and writes nothing; the same key on another request is 422 "
    "`idempotency-key-reused`; a repeat while the first runs is 409 `idempotency-in-progress`. Kept "
    "FLUX_DAO_IDEMPOTENCY_TTL (24 h), per service key.",
    r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$",
    255,
)
CONSISTENCY_TOKEN: Final = _header(
    "X-Flux-Consistency",
    "The `X-Flux-Consistency` a write answered: the read then reflects that write (and everything before it), "
    "however far behind a standby is. Sent only when reads may go to a standby (DATABASE_READ_URL).",
    r"^\s*[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}\s*$",
)
CONSISTENCY_HEADER_DOC: Final = ResponseHeader(
    name="X-Flux-Consistency",
    documentation_only=True,
    description="Only when reads may go to a standby (DATABASE_READ_URL): the primary's WAL position after this "
    "write; send it back on reads to read your own writes.",
)
REPLAYED_HEADER_DOC: Final = ResponseHeader(
    name="Idempotent-Replayed",
    documentation_only=True,
    description="`true` when this is the stored answer of an earlier request with the same Idempotency-Key.",
)
ETAG_HEADER: Final = ResponseHeader(
    name="ETag",
    documentation_only=True,
    description='The row\'s `version` as a strong entity tag, `"<version>"`: send it back in If-Match.',
)


def list_body(struct_type: type[Any], max_items: int) -> RequestBody:
    """A required JSON body: an array of 1 to ``max_items`` ``struct_type`` objects (its component, by reference)."""
    items = Reference(ref=f"#/components/schemas/{struct_type.__name__}")
    schema = Schema(type=OpenAPIType.ARRAY, items=items, min_items=1, max_items=max_items)
    return RequestBody(content={"application/json": OpenAPIMediaType(schema=schema)}, required=True)


def with_request_body(base: type[FluxOperation], body: RequestBody) -> type[FluxOperation]:
    """``base`` documenting ``body``, which its handler reads itself (no ``data`` parameter for Litestar to decode)."""
    return type(base.__name__, (base,), {"documented_body": body})


def with_headers(base: type[FluxOperation], *headers: Parameter) -> type[FluxOperation]:
    """``base`` documenting the request ``headers`` its handler reads itself (Litestar never parses them)."""
    return type(base.__name__, (base,), {"extra_parameters": (*base.extra_parameters, *headers)})


def _not_null(parameter: Parameter) -> Parameter:
    schema = parameter.schema
    if parameter.required or not isinstance(schema, Schema):
        return parameter
    if isinstance(schema.type, list) and OpenAPIType.NULL in schema.type and schema.enum:  # an optional enum
        types = [t for t in schema.type if t != OpenAPIType.NULL]
        enum = [value for value in schema.enum if value is not None]
        return replace(parameter, schema=replace(schema, type=types[0] if len(types) == 1 else types, enum=enum))
    if not schema.one_of:
        return parameter
    kept = [s for s in schema.one_of if not (isinstance(s, Schema) and s.type == OpenAPIType.NULL)]
    if len(kept) != 1 or len(kept) == len(schema.one_of):
        return parameter
    only = kept[0]
    if isinstance(only, Schema):
        only = replace(only, description=schema.description)
    return replace(parameter, schema=only)


def _swagger_ui() -> SwaggerRenderPlugin:
    """Swagger UI at the root of ``/schema``, every file it loads (scripts, styles, favicon) from ``/schema/assets``."""
    return SwaggerRenderPlugin(
        path="/",
        js_url=f"{_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{_ASSETS}/favicon-32x32.png'>",
    )


def docs_redirect(middleware: list[Any] | None = None) -> HTTPRouteHandler:
    """``GET /docs``: a redirect to the docs UI, behind the same ``middleware`` (the docs exposure) as ``/schema``."""

    @get(DOCS_PATH, include_in_schema=False, middleware=middleware or [], sync_to_thread=False)
    def docs() -> Redirect:
        return Redirect(SCHEMA_PATH)

    return docs


@get(f"{_ASSETS.removeprefix(SCHEMA_PATH)}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
def _asset(name: FromPath[str]) -> File:
    """One file of the docs page, from the installed Swagger UI bundle (cached by browsers for a day)."""
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        msg = f"No docs asset {name!r}."
        raise NotFoundException(msg)
    return File(
        path=f"{swagger_ui_path}/{name}",
        media_type=media_type,
        content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def openapi_config(version: str, middleware: list[Any] | None = None) -> OpenAPIConfig:
    """Served at ``/schema`` (browsable) and ``/schema/openapi.json``, behind ``middleware`` (the docs exposure)."""
    return OpenAPIConfig(
        title="flux-dao",
        version=version,
        openapi_router=Router(
            SCHEMA_PATH, route_handlers=[_asset], middleware=middleware or [], include_in_schema=False
        ),
        render_plugins=[_swagger_ui(), YamlRenderPlugin()],
        description="Canonical data for Flux's agents: users, goals, tasks, conversations, patterns and the "
        "notification log. Every /api/v1 route needs the `X-Flux-Service-Key` header; errors are RFC 9457 "
        "problem documents.",
        use_handler_docstrings=False,
        create_examples=False,
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="apiKey",
                    name=SERVICE_KEY_HEADER,
                    security_scheme_in="header",
                    description="A key from SERVICE_API_KEYS (full access) or FLUX_DAO_KEYS_FILE (scoped).",
                )
            }
        ),
    )
