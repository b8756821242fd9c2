"""uvicorn's httptools protocol with flux-dao's head limits (see ``head``)."""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flux_dao.http.protocols.head import HeadGuard, too_many_headers

__all__ = ("FluxHttpToolsProtocol",)


class FluxHttpToolsProtocol(HeadGuard, HttpToolsProtocol):
    """httptools has no limits of its own: the meter bounds the bytes, ``on_headers_complete`` counts the fields.

    The fields are counted once the head is complete rather than one call per field: the meter already bounds what
    a head can hold, and a Python call per header field is a measurable share of a request.

    An error raised in a parser callback comes back out of ``feed_data`` as its context, and uvicorn answers it
    through ``send_400_response``.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True

    def reading_head(self) -> bool:
        return self._in_head

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.limits.max_headers:
            raise too_many_headers(self.limits.max_headers)
        self._in_head = False
        self.head_done()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()
