"""The ``X-Flux-Service-Key`` check, as ASGI middleware on the API router.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured key (no early exit), so
neither the comparison time nor the loop length tells an attacker how close a guess was. Keys are never logged.
Middleware rather than a guard: Litestar runs a synchronous guard in a worker thread and copies the route handler
for every call, which cost a third of a simple GET's time.
"""

import hashlib
import hmac
from collections.abc import Iterable
from typing import Final

from litestar.exceptions import NotAuthorizedException
from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ("SERVICE_KEY_HEADER", "service_key_middleware")

SERVICE_KEY_HEADER: Final = "X-Flux-Service-Key"
_HEADER: Final = SERVICE_KEY_HEADER.lower().encode("latin-1")


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def service_key_middleware(keys: Iterable[str]) -> "type":
    """A middleware class accepting any of ``keys``; 401 for a missing or unknown key."""
    digests = tuple(_digest(k.encode("utf-8")) for k in keys)

    class ServiceKeyMiddleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            supplied = next((value for name, value in scope["headers"] if name == _HEADER), None)
            if not supplied:
                msg = f"Missing {SERVICE_KEY_HEADER} header."
                raise NotAuthorizedException(msg)
            candidate = _digest(supplied)
            matched = False
            for digest in digests:
                matched |= hmac.compare_digest(candidate, digest)
            if not matched:
                msg = f"Unknown {SERVICE_KEY_HEADER}."
                raise NotAuthorizedException(msg)
            await self.app(scope, receive, send)

    return ServiceKeyMiddleware
