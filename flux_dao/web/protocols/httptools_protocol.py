"""uvicorn's httptools protocol with flux-dao's head limits (see ``head``)."""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flux_dao.web.protocols.head import HeadGuard, too_many_headers

__all__ = ("FluxHttpToolsProtocol",)


class FluxHttpToolsProtocol(HeadGuard, HttpToolsProtocol):
    """httptools has no limits of its own: the meter bounds the bytes, ``on_header`` counts the fields.

    An error raised in a parser callback comes back out of ``feed_data`` as its context, and uvicorn answers it
    through ``send_400_response``.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._header_count = 0

    def reading_head(self) -> bool:
        return self._in_head

    def on_message_begin(self) -> None:
        self._header_count = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise too_many_headers(self.limits.max_headers)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.head_done()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()
