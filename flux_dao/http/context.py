"""What the handlers tell the request wrapper (``observability``) about the request being served.

The request lives in ``flux_dao.logs``' context variable (the log lines read its id from there too), so ``problems``
can note the problem it answers with without importing the wrapper.
"""

from flux_dao.logs import CURRENT_REQUEST

__all__ = ("note_problem",)


def note_problem(slug: str) -> str | None:
    """Record that the current request is answered with the problem ``slug``; returns the request's id.

    Called by ``problem_response``; outside a request (no wrapper) it does nothing and returns None.
    """
    info = CURRENT_REQUEST.get()
    if info is None:
        return None
    info.problem = slug
    return info.request_id
