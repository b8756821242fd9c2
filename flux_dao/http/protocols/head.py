"""Bounds on request heads, shared by flux-dao's two uvicorn HTTP/1.1 protocols.

A request head (request line plus header fields) is read by uvicorn before the app sees anything, so its limits live
here, below Litestar: at most ``FLUX_DAO_MAX_HEADER_BYTES`` bytes (431, or 414 while the request line is still
unfinished), ``FLUX_DAO_MAX_HEADERS`` fields (431), and ``FLUX_DAO_HEADER_TIMEOUT`` seconds from its first byte (408).
Refusals and parser errors are answered with a problem+json body, then the connection is closed.
"""

import asyncio
import functools
import http
import logging
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec
from uvicorn.server import ServerState

from flux_dao.config import Settings
from flux_dao.http.problems import PROBLEM_MEDIA_TYPE, problem_body

__all__ = (
    "HeadGuard",
    "HeadLimits",
    "HeadMeter",
    "HeadRefusedError",
    "head_limits",
    "on_draining",
    "problem_bytes",
)

_DRAINING: list[weakref.WeakMethod[Callable[[], None]]] = []


def on_draining(callback: Callable[[], None]) -> None:
    """Call ``callback`` when this process's server starts its graceful shutdown, before the grace period runs.

    Answers that would otherwise run on to the end of the grace period (a change stream, a long poll) end at once,
    so a rolling restart is not held up by them. ``callback`` is a bound method, held weakly: an app that is gone
    (tests build many) is not kept alive by it.
    """
    _DRAINING.append(weakref.WeakMethod(callback))


logger = logging.getLogger(__name__)

LINGER_SECONDS: Final = 2.0
"""How long a refused connection keeps reading (and dropping) what its client still sends after the error response,
so that the client reads the response instead of a reset. Nothing read then is kept."""
_DETAIL_LIMIT: Final = 200
"""Parser messages may quote the offending bytes; the problem detail keeps this many characters of them."""


@dataclass(frozen=True)
class HeadLimits:
    """The limits of one process, from its settings."""

    max_bytes: int
    max_headers: int
    timeout: float


@functools.cache
def head_limits() -> HeadLimits:
    """The limits from the environment, read once per process.

    uvicorn builds a protocol per connection, in each worker process; the workers inherit the environment
    ``flux-dao serve`` checked at start, so reading it here needs no other channel.
    """
    settings = Settings.from_env()
    return HeadLimits(settings.max_header_bytes, settings.max_headers, settings.header_timeout)


class HeadRefusedError(Exception):
    """A request head flux-dao will not serve: the status, problem slug and detail to answer with."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail


class HeadMeter:
    """Counts the bytes of one request head as they arrive, before the parser buffers them."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.seen = 0
        self.line_done = False
        """Whether the request line has ended (a line feed arrived): beyond it, the head is too long, not the URI."""

    def room(self) -> int:
        """How many more bytes the parser may be given: one past the limit, so that going over is noticed."""
        return self.max_bytes + 1 - self.seen

    def count(self, piece: bytes) -> None:
        self.seen += len(piece)
        if not self.line_done and b"\n" in piece:
            self.line_done = True

    @property
    def over(self) -> bool:
        return self.seen > self.max_bytes

    def reset(self) -> None:
        self.seen = 0
        self.line_done = False

    def refusal(self) -> HeadRefusedError:
        """The answer to a head over the limit: 414 if its request line alone is too long, else 431."""
        if not self.line_done:
            return HeadRefusedError(
                414,
                "uri-too-long",
                f"the request line is longer than {self.max_bytes} bytes (FLUX_DAO_MAX_HEADER_BYTES)",
            )
        return HeadRefusedError(
            431,
            "request-header-too-large",
            f"the request head is larger than {self.max_bytes} bytes (FLUX_DAO_MAX_HEADER_BYTES)",
        )


def too_many_headers(limit: int) -> HeadRefusedError:
    return HeadRefusedError(
        431, "request-header-too-large", f"the request has more than {limit} header fields (FLUX_DAO_MAX_HEADERS)"
    )


def malformed(exc: BaseException) -> HeadRefusedError:
    """A parser error as a 400 whose detail is the parser's own message (cut short: it may quote the request)."""
    message = str(exc) or type(exc).__name__
    if len(message) > _DETAIL_LIMIT:
        message = message[:_DETAIL_LIMIT] + "..."
    return HeadRefusedError(400, "bad-request", f"malformed HTTP request: {message}")


def chained_refusal(exc: BaseException | None) -> HeadRefusedError | None:
    """The refusal a parser error carries: raised in a parser callback (its context) or chained by us (its cause)."""
    while exc is not None:
        if isinstance(exc, HeadRefusedError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def problem_bytes(refusal: HeadRefusedError, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 response carrying the refusal as problem+json, closing the connection."""
    body = msgspec.json.encode(problem_body(refusal.slug, refusal.detail, status=refusal.status))
    lines = [f"HTTP/1.1 {refusal.status} {http.HTTPStatus(refusal.status).phrase}".encode("ascii")]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: " + PROBLEM_MEDIA_TYPE.encode("ascii"),
        b"content-length: " + str(len(body)).encode("ascii"),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class HeadGuard(asyncio.Protocol):
    """The head limits for an uvicorn HTTP protocol class; put it before that class among the bases.

    Bytes: while a head is awaited, the parser is given at most one byte past the limit, so neither parser can
    buffer more (httptools would otherwise collect a header value of any length; h11 one read's worth past its
    limit). Time: a clock starts when the first bytes of a head arrive without completing it (or when the connection
    opens) and stops when the head is complete; it never runs while the app answers or while a keep-alive connection
    is idle (uvicorn's keep-alive timeout covers that).
    """

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    server_state: ServerState
    client: tuple[str, int] | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.limits = head_limits()
        self.meter = HeadMeter(self.limits.max_bytes)
        self._head_clock: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    # what each parser's subclass tells
    def reading_head(self) -> bool:
        """Whether the bytes arriving now belong to a request head."""
        raise NotImplementedError

    def answering(self) -> bool:
        """Whether the app is still answering a request of this connection.

        Both of uvicorn's protocols keep the request in flight as ``cycle``.
        """
        cycle = getattr(self, "cycle", None)
        return cycle is not None and not cycle.response_complete

    def describe(self, exc: BaseException | None) -> HeadRefusedError:
        """The answer to a parser error."""
        return chained_refusal(exc) or malformed(exc or ValueError("invalid HTTP request"))

    # asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_done()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self._done():  # once refused, what the client still sends is dropped
            if not self.reading_head():
                super().data_received(data)
                return
            room = self.meter.room()
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self.meter.count(piece)
            super().data_received(piece)
            if self.meter.seen and self.reading_head() and not self._done():  # an unfinished head
                if self.meter.over:
                    self.refuse(self.meter.refusal())
                    return
                self._start_head_clock()  # from its first bytes, which arrived now; a head read whole needs none

    def shutdown(self) -> None:
        """Server shutdown: the app hears of it first (``on_draining``).

        A refused connection just closes (h11 would refuse to record a close mid-request).
        """
        while _DRAINING:
            if (callback := _DRAINING.pop()()) is not None:
                callback()
        if self._linger is not None:
            self.transport.close()
            return
        super().shutdown()  # type: ignore[misc]  # uvicorn's protocols define it; asyncio.Protocol does not

    # uvicorn's protocols call this for every request their parser rejects, inside the ``except`` of that error
    def send_400_response(self, msg: str) -> None:
        """Answer the error being handled (``msg`` is uvicorn's fixed text; the error itself says more)."""
        self.refuse(self.describe(sys.exception()))

    # the head's life
    def head_done(self) -> None:
        """Stop the head clock and meter: the head is complete (or the connection gone)."""
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None
        self.meter.reset()

    def refuse(self, refusal: HeadRefusedError) -> None:
        """Answer with the refusal's problem, then close (after letting the client read it)."""
        self.head_done()
        if self._done():
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        logger.info("refused a request head from %s: %d %s: %s", peer, refusal.status, refusal.slug, refusal.detail)
        self.transport.write(problem_bytes(refusal, self.server_state.default_headers))
        self._close_softly()

    def _done(self) -> bool:
        """Whether this connection is refused or closing: nothing more is parsed or answered."""
        return self._linger is not None or self.transport.is_closing()

    def _close_softly(self) -> None:
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the client sees the response, then the end; its own close ends ours
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _start_head_clock(self) -> None:
        if self._head_clock is None:
            self._head_clock = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_clock = None
        if self._done():
            return
        if self.answering():  # a pipelined head while the app answers: it gets another full period
            self._start_head_clock()
            return
        if self.meter.seen == 0:  # nothing of a request came: just close, as for an idle keep-alive connection
            self.transport.close()
            return
        self.refuse(
            HeadRefusedError(
                408,
                "request-timeout",
                f"the request head was not complete within {self.limits.timeout:g} s (FLUX_DAO_HEADER_TIMEOUT)",
            )
        )
