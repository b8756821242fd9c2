"""The ``X-Flux-Consistency`` header: taken from each request, given on each answer to a write.

The wrapper is installed only when reads may go to a standby (``DATABASE_READ_URL``): only then do writes answer a
token. A token sent is checked always, so a request is refused or accepted alike whatever the service's layout:
a malformed one is refused (422 naming the header) by the API's ``before_request``, after the key check, so a
request without a valid key still gets its 401. ``flux_dao.store.consistency`` says what the token is,
``flux_dao.store.standby`` how reads use it.
"""

from typing import Any, Final

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from flux_dao.errors import FieldError, InvalidInputError
from flux_dao.store.consistency import CONSISTENCY, Consistency, format_position, parse_position

__all__ = ("CONSISTENCY_HEADER", "ConsistencyHeader", "refuse_malformed_token")

CONSISTENCY_HEADER: Final = "X-Flux-Consistency"
_RAW_NAME: Final = CONSISTENCY_HEADER.lower().encode()


class ConsistencyHeader:
    """ASGI wrapper: the request's token into ``CONSISTENCY``, the position after its writes into the answer."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        consistency = Consistency()
        for name, value in scope["headers"]:
            if name == _RAW_NAME:
                consistency.seen = parse_position(value.decode("latin-1"))
                consistency.malformed = consistency.seen is None

        async def send_with_token(message: Message) -> None:
            if message["type"] == "http.response.start" and consistency.written is not None:
                token = (_RAW_NAME, format_position(consistency.written).encode())
                message["headers"] = [*message.get("headers", ()), token]
            await send(message)

        reset = CONSISTENCY.set(consistency)
        try:
            await self.app(scope, receive, send_with_token)
        finally:
            CONSISTENCY.reset(reset)


def refuse_malformed_token(request: Request[Any, Any, Any]) -> None:
    """422 naming the header when the request's token is not one a write answered (whether or not reads use it)."""
    consistency = CONSISTENCY.get()
    if consistency is None:  # no standby, no wrapper: the header is only checked
        malformed = any(name == _RAW_NAME and parse_position(value.decode("latin-1")) is None
                        for name, value in request.scope["headers"])  # fmt: skip
    else:
        malformed = consistency.malformed
    if malformed:
        raise InvalidInputError([FieldError(CONSISTENCY_HEADER, "must be a token a write answered, such as 0/16B3748")])
