"""Request headers read straight from the ASGI scope, for the few a hot handler looks at.

Litestar's ``request.headers`` builds a multi-dict of every header on first use; a GET by id that only asks whether
``If-None-Match`` was sent does better with one scan of the raw list.
"""

from typing import Any

__all__ = ("RawHeaders",)


class RawHeaders:
    """``get(name)`` over the request's raw headers (names are lower-case bytes in ASGI)."""

    __slots__ = ("_raw",)

    def __init__(self, scope: Any) -> None:
        self._raw: list[tuple[bytes, bytes]] = scope["headers"]

    def get(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        wanted = name.lower().encode("latin-1")
        for key, value in self._raw:
            if key == wanted:
                return value.decode("latin-1")
        return None
