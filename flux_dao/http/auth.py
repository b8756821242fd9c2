"""Access control as ASGI middleware: service key, scopes, rate limit, and who may read ``/schema`` and ``/metrics``.

Middleware rather than guards: Litestar runs a synchronous guard in a worker thread and copies the route handler for
every call, which cost a third of a simple GET's time. The caller's key NAME (never the key) is left in
``scope["state"]["key_name"]`` for the request log.
"""

import ipaddress
from typing import Any, Final

from litestar import Request
from litestar.exceptions import NotAuthorizedException
from litestar.types import ASGIApp, Receive, Scope, Send

from flux_dao.config import Exposure
from flux_dao.errors import ForbiddenError, RateLimitedError
from flux_dao.http.keys import KeyRing, ServiceKey, required_scope
from flux_dao.http.ratelimit import RateLimiter
from flux_dao.http.request import OWN_QUERY_OPT, QueryParser, embedded_resources

__all__ = (
    "KEY_NAME_STATE",
    "KEY_STATE",
    "SERVICE_KEY_HEADER",
    "api_access_middleware",
    "exposure_middleware",
    "is_loopback_client",
    "refuse_unscoped_embeds",
)

SERVICE_KEY_HEADER: Final = "X-Flux-Service-Key"
KEY_NAME_STATE: Final = "key_name"
KEY_STATE: Final = "service_key"
"""The calling ``ServiceKey`` (absent when the API runs without keys): routes that span resources check scopes."""
_HEADER: Final = SERVICE_KEY_HEADER.lower().encode("latin-1")
_CHALLENGE: Final = {"WWW-Authenticate": f'ApiKey realm="flux-dao", header="{SERVICE_KEY_HEADER}"'}
"""What a 401 must say (RFC 9110): how to authenticate."""


def _identify(scope: Scope, keyring: KeyRing) -> ServiceKey:
    """The calling key, or 401 (missing or unknown key)."""
    supplied = next((value for name, value in scope["headers"] if name == _HEADER), None)
    if not supplied:
        msg = f"Missing {SERVICE_KEY_HEADER} header."
        raise NotAuthorizedException(msg, headers=_CHALLENGE)
    key = keyring.identify(supplied)
    if key is None:
        msg = f"Unknown {SERVICE_KEY_HEADER}."
        raise NotAuthorizedException(msg, headers=_CHALLENGE)
    state = scope.setdefault("state", {})
    state[KEY_NAME_STATE] = key.name
    state[KEY_STATE] = key
    return key


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_loopback_client(scope: Scope) -> bool:
    """Whether the request comes from this machine (the peer address: flux-dao trusts no proxy headers)."""
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def refuse_unscoped_embeds(request: Request[Any, Any, Any]) -> None:
    """A read's embeds need the read scope of the resources they bring in: ``include=user`` reads users.

    The middleware checked the route's own resource; this runs once the query is parsed (``_api_checks``).
    """
    key = request.scope.get("state", {}).get(KEY_STATE)
    parser = request.route_handler.opt.get(OWN_QUERY_OPT)
    if not isinstance(key, ServiceKey) or not isinstance(parser, QueryParser) or not request.scope["query_string"]:
        return
    for resource in dict.fromkeys(embedded_resources(parser.resource, parser.of(request).read.embeds)):
        needed = required_scope(resource, "GET")
        if not key.allows(needed):
            raise ForbiddenError(key.name, needed)


def api_access_middleware(keyring: KeyRing, limiter: RateLimiter | None) -> type:
    """Middleware for the API router: key (401), scope (403), then rate (429).

    With an empty ``keyring`` the API is open (``flux-dao serve`` then binds loopback only) and the rate limit, if
    any, applies per client address.
    """

    class ApiAccessMiddleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if keyring:
                try:
                    key = _identify(scope, keyring)
                except NotAuthorizedException:
                    # failed attempts count against the client's address: guessing keys is throttled too
                    if limiter is not None and (wait := limiter.retry_after(_address(scope))) is not None:
                        raise RateLimitedError(_address(scope), wait) from None
                    raise
                resource = scope["route_handler"].opt.get("resource")
                if resource is not None:  # a route spanning resources (batch) checks each operation's scope itself
                    needed = required_scope(resource, str(scope.get("method", "GET")))
                    if not key.allows(needed):
                        raise ForbiddenError(key.name, needed)
                caller = key.name
            else:
                caller = _address(scope)
            if limiter is not None and (wait := limiter.retry_after(caller)) is not None:
                raise RateLimitedError(caller, wait)
            await self.app(scope, receive, send)

    return ApiAccessMiddleware


def exposure_middleware(exposure: Exposure, keyring: KeyRing) -> list[Any]:
    """Middleware for an operational route (docs, metrics): none when public, a key check otherwise.

    ``auto`` lets loopback clients in without a key (an operator on the host, a sidecar scraper) and asks everyone
    else for a valid key of any scope; ``key`` asks everyone.
    """
    if exposure is Exposure.PUBLIC or (exposure is Exposure.AUTO and not keyring):
        return []

    class ExposureMiddleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if not (exposure is Exposure.AUTO and is_loopback_client(scope)):
                _identify(scope, keyring)
            await self.app(scope, receive, send)

    return [ExposureMiddleware]
