"""The ``X-Flux-Service-Key`` guard.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured key (no early exit), so
neither the comparison time nor the loop length tells an attacker how close a guess was. Keys are never logged.
"""

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

__all__ = ("SERVICE_KEY_HEADER", "service_key_guard")

SERVICE_KEY_HEADER: Final = "X-Flux-Service-Key"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def service_key_guard(keys: Iterable[str]) -> Guard:
    """A guard accepting any of ``keys``; 401 for a missing or unknown key."""
    digests = tuple(_digest(k) for k in keys)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        supplied = connection.headers.get(SERVICE_KEY_HEADER)
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

    return guard
