"""``FluxDaoPlugin``: the one place generated routers, the guard, the probes and the error handlers enter the app."""

import gc
from datetime import timedelta
from typing import Any

from litestar import Request, Router
from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin

from flux_dao.config import Settings
from flux_dao.http.auth import api_access_middleware, exposure_middleware, refuse_unscoped_embeds
from flux_dao.http.batch import batch_handler
from flux_dao.http.changes import changes_handlers
from flux_dao.http.consistency import refuse_malformed_token
from flux_dao.http.cursor import CursorSeal, cursor_secret_from_keys
from flux_dao.http.handlers import build_router
from flux_dao.http.health import health_handlers
from flux_dao.http.idempotency import Idempotency
from flux_dao.http.keys import KeyRing
from flux_dao.http.observability import Observability
from flux_dao.http.openapi import SECURITY_SCHEME
from flux_dao.http.problems import exception_handlers
from flux_dao.http.protocols.head import on_draining
from flux_dao.http.query_tables import build_resource_queries
from flux_dao.http.ratelimit import RateLimiter
from flux_dao.http.request import ReadContext
from flux_dao.http.request_checks import StrictRequestsPlugin
from flux_dao.http.schema_watch import SchemaWatch
from flux_dao.schema import Resources
from flux_dao.store import ResourceRepository
from flux_dao.store.changes import ChangeLog
from flux_dao.store.db import Database
from flux_dao.store.idempotency import IdempotencyRecords
from flux_dao.store.standby import Standby

__all__ = ("FluxDaoPlugin",)


def _freeze_startup_objects() -> None:
    """Keep the garbage collections that request traffic triggers short.

    Everything built at start-up (models, structs, routes) moves out of the collector's sight.
    """
    gc.collect()
    gc.freeze()


async def _api_checks(request: Request[Any, Any, Any]) -> None:
    """Every API request's own checks, once its key is accepted: token, query and body, then the embeds' scopes."""
    refuse_malformed_token(request)
    await StrictRequestsPlugin.before_request(request)
    refuse_unscoped_embeds(request)


class FluxDaoPlugin(InitPlugin):
    """Mounts every resource of ``resources`` under the API prefix, served by ``db``."""

    def __init__(
        self,
        settings: Settings,
        resources: Resources,
        db: Database,
        expected_heads: frozenset[str] | None,
        keyring: KeyRing,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.resources = resources
        self.db = db
        self.expected_heads = expected_heads
        self.observability = Observability(settings, db)
        self.schema_watch = SchemaWatch(settings, resources.metadata)
        catalog = resources.catalog
        standby_settings = settings.database.for_standby()
        self.standby = Standby(db, standby_settings) if standby_settings is not None else None
        self.repositories: dict[str, ResourceRepository] = {}
        for r in resources.items:  # each sees the others, for embeds
            self.repositories[r.entity.name] = ResourceRepository(
                r.entity, r.schemas.read, catalog, db, self.repositories, self.standby
            )
        self.idempotency = Idempotency(
            IdempotencyRecords(resources.metadata, db, timedelta(seconds=settings.idempotency_ttl)), db
        )
        self.changes = ChangeLog(db, resources.metadata, resources.items, settings.changes_retention)
        self.reads = ReadContext(
            build_resource_queries((r.entity for r in resources.items), resources.embeds),
            CursorSeal(settings.cursor_secret or cursor_secret_from_keys(settings.api_keys)),
        )

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Register routes, the access check, exception handlers and the pool lifecycle."""
        routers = [
            build_router(r, self.repositories[r.entity.name], self.settings.api_prefix, self.reads, self.idempotency)
            for r in self.resources.items
        ]
        settings = self.settings
        limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit > 0 else None
        guarded = bool(self.keyring) or limiter is not None
        batch = batch_handler(self.resources.items, self.repositories, self.db, self.idempotency)
        api = Router(
            path=settings.api_prefix,
            route_handlers=[*routers, batch, *changes_handlers(self.changes, self.resources.items)],
            middleware=[api_access_middleware(self.keyring, limiter)] if guarded else [],
            security=[{SECURITY_SCHEME: []}],
            before_request=_api_checks,
        )
        app_config.plugins.append(StrictRequestsPlugin())  # learns each route's declared input for before_request
        app_config.route_handlers.extend(
            [api, *health_handlers(self.db, self.expected_heads, self.schema_watch, self.standby)]
        )
        app_config.route_handlers.extend(
            self.observability.route_handlers(exposure_middleware(settings.metrics, self.keyring))
        )
        app_config.exception_handlers = {**exception_handlers(), **app_config.exception_handlers}
        app_config.on_startup.extend(
            [
                self.db.start,
                self.observability.start,
                self.schema_watch.start,
                self.idempotency.start,
                self.changes.start,
                *([self.standby.start] if self.standby is not None else []),
                lambda: on_draining(self.changes.close),
                _freeze_startup_objects,
            ]
        )
        app_config.on_shutdown.extend(
            [
                *([self.standby.stop] if self.standby is not None else []),
                self.changes.stop,
                self.idempotency.stop,
                self.schema_watch.stop,
                self.observability.stop,
                self.db.dispose,
            ]
        )
        return app_config
