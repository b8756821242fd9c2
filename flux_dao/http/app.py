"""The application factory: settings -> manifest -> generated resources -> Litestar app."""

from litestar import Litestar
from litestar.config.cors import CORSConfig

from flux_dao import __version__
from flux_dao.config import Exposure, Settings
from flux_dao.http.auth import SERVICE_KEY_HEADER, exposure_middleware
from flux_dao.http.consistency import CONSISTENCY_HEADER, ConsistencyHeader
from flux_dao.http.keys import build_keyring
from flux_dao.http.openapi import docs_redirect, openapi_config
from flux_dao.http.openapi_schemas import openapi_schema_plugins
from flux_dao.http.plugin import FluxDaoPlugin
from flux_dao.manifest import load_manifest
from flux_dao.schema import build_resources
from flux_dao.store.db import Database
from flux_dao.store.migrations import migration_heads

__all__ = ("create_app",)


def cors_config(origins: tuple[str, ...]) -> CORSConfig | None:
    """CORS for the configured browser origins only; no origins, no CORS headers at all."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=[SERVICE_KEY_HEADER, "Content-Type", "X-Request-ID", CONSISTENCY_HEADER],
        expose_headers=["Location", "Retry-After", "X-Request-ID", CONSISTENCY_HEADER],
        max_age=600,
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app for ``settings`` (default: from the environment). Used by ``flux-dao serve`` as a factory."""
    settings = settings or Settings.from_env()
    manifest = load_manifest(settings.manifest_path)
    resources = build_resources(manifest)
    keyring = build_keyring(settings.api_keys, settings.keys_file, frozenset(e.name for e in manifest.entities))
    db = Database(settings.database)
    plugin = FluxDaoPlugin(settings, resources, db, migration_heads(settings.migrations_dir), keyring)
    docs, docs_handlers = None, []
    if settings.docs is not Exposure.OFF:
        docs_access = exposure_middleware(settings.docs, keyring)
        docs, docs_handlers = openapi_config(__version__, docs_access), [docs_redirect(docs_access)]
    app = Litestar(
        route_handlers=docs_handlers,
        plugins=[plugin, *openapi_schema_plugins()],
        openapi_config=docs,
        cors_config=cors_config(settings.cors_origins),
        request_max_body_size=settings.max_body,
        logging_config=None,  # logging is flux_dao.logs' (flux-dao serve); Litestar's default would replace it
    )
    # outermost, around Litestar's whole handler: app-level middleware runs only for matched routes
    if plugin.standby is not None:  # reads may go to a standby: tokens in and out (a wrapper costs every request)
        app.asgi_handler = ConsistencyHeader(app.asgi_handler)
    app.asgi_handler = plugin.observability.wrap(app.asgi_handler)
    return app
