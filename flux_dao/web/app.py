"""The application factory: settings -> manifest -> generated resources -> Litestar app."""

from litestar import Litestar

from flux_dao import __version__
from flux_dao.config import Settings
from flux_dao.db import Database
from flux_dao.generator import build_resources
from flux_dao.manifest import load_manifest
from flux_dao.migrations import migration_heads
from flux_dao.web.openapi import openapi_config
from flux_dao.web.plugin import FluxDaoPlugin

__all__ = ("create_app",)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app for ``settings`` (default: from the environment). Used by ``flux-dao serve`` as a factory."""
    settings = settings or Settings.from_env()
    manifest = load_manifest(settings.manifest_path)
    resources = build_resources(manifest)
    db = Database(settings.database)
    plugin = FluxDaoPlugin(settings, resources, db, migration_heads(settings.migrations_dir))
    return Litestar(
        plugins=[plugin], openapi_config=openapi_config(__version__), request_max_body_size=settings.max_body
    )
