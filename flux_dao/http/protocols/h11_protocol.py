"""uvicorn's h11 protocol with flux-dao's head limits (see ``head``)."""

from collections.abc import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from flux_dao.http.protocols.head import HeadGuard, HeadLimits, HeadRefusedError, too_many_headers

__all__ = ("FluxH11Protocol",)

_Received = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]


class CheckedConnection(h11.Connection):
    """An h11 server connection that shows each complete request head to ``check`` before uvicorn acts on it.

    A refusal leaves as the ``RemoteProtocolError`` uvicorn handles (it then calls ``send_400_response``), caused by
    the ``HeadRefusedError`` that says what to answer.
    """

    def __init__(self, limits: HeadLimits, check: Callable[[h11.Request], None]) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.max_bytes)
        self._check = check

    def next_event(self) -> _Received:
        event = super().next_event()
        if isinstance(event, h11.Request):
            try:
                self._check(event)
            except HeadRefusedError as refusal:
                raise h11.RemoteProtocolError(refusal.detail, error_status_hint=refusal.status) from refusal
        return event


class FluxH11Protocol(HeadGuard, H11Protocol):
    """h11 bounds a head it is still waiting for; the fields of a complete one are counted here.

    h11 also lets a request carry both Content-Length and Transfer-Encoding (the latter wins); that is a
    request-smuggling shape which httptools refuses, so it is refused here too.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.conn = CheckedConnection(self.limits, self._check_head)

    def reading_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def describe(self, exc: BaseException | None) -> HeadRefusedError:
        if isinstance(exc, h11.RemoteProtocolError) and exc.error_status_hint == 431 and exc.__cause__ is None:
            return self.meter.refusal()  # h11's own "Receive buffer too long"
        return super().describe(exc)

    def _check_head(self, request: h11.Request) -> None:
        names = [name for name, _ in request.headers]
        if len(names) > self.limits.max_headers:
            raise too_many_headers(self.limits.max_headers)
        if b"content-length" in names and b"transfer-encoding" in names:
            detail = "malformed HTTP request: Content-Length together with Transfer-Encoding"
            raise HeadRefusedError(400, "bad-request", detail)
        self.head_done()
