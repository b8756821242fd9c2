"""What the handlers tell the request wrapper (``observability``) about the request being served.

A context variable, so ``problems`` can note the problem it answers with without importing the wrapper.
"""

from contextvars import ContextVar
from typing import Final

__all__ = ("RequestInfo", "current_request", "note_problem")


class RequestInfo:
    """The request's id and, once answered with one, its problem type."""

    __slots__ = ("problem", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.problem: str | None = None


current_request: Final[ContextVar[RequestInfo | None]] = ContextVar("flux_dao_request", default=None)


def note_problem(slug: str) -> str | None:
    """Record that the current request is answered with the problem ``slug``; returns the request's id.

    Called by ``problem_response``; outside a request (no wrapper) it does nothing and returns None.
    """
    info = current_request.get()
    if info is None:
        return None
    info.problem = slug
    return info.request_id
