"""``GET /changes`` (pages, long polls) and ``GET /changes/stream`` (Server-Sent Events): the change feed.

Both read the change log from a position on; neither holds changes in memory beyond one page, so a reader that falls
behind costs the service nothing but its place in the log. A stream whose client stops taking events (one send
blocked for ``SLOW_SEND`` seconds) is ended with a final ``dropped`` event saying where to resume; one that takes
nothing at all for ``SEND_DEADLINE`` seconds is cut.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import HeaderParameter, Parameter
from litestar.response import Stream
from litestar.types import Message, Receive, Scope, Send

from flux_dao.errors import FieldError, ForbiddenError, InvalidInputError
from flux_dao.http.auth import KEY_STATE
from flux_dao.http.keys import ServiceKey, required_scope
from flux_dao.http.openapi import FluxOperation, streaming, with_patterns
from flux_dao.http.problems import problem_responses
from flux_dao.logs import CUT_ON_PURPOSE
from flux_dao.schema.resources import Resource
from flux_dao.store.changes import Change as LoggedChange
from flux_dao.store.changes import ChangeLog

__all__ = ("HEARTBEAT", "changes_handlers", "parse_position")

logger = logging.getLogger("flux_dao")

MAX_LIMIT: Final = 1000
MAX_WAIT: Final = 30.0
HEARTBEAT: Final = 15.0
"""Seconds of silence after which a stream sends a comment line, so proxies and clients know it is alive."""
SLOW_SEND: Final = 5.0
"""A stream send blocked this long (the client's socket stayed full) ends the stream with a ``dropped`` event."""
SEND_DEADLINE: Final = 30.0
"""A stream send blocked this long is abandoned and the connection closed: the client takes nothing."""
_MAX_POSITION: Final = 2**63 - 1
_NOW: Final = "now"
_POSITION_PATTERN: Final = r"^([0-9]{1,19}|now)$"


class Change(msgspec.Struct, kw_only=True):
    """One committed change (the document's view of what ``flux_dao.store.changes.Change`` sends)."""

    position: Annotated[int, msgspec.Meta(description="Grows with every change; pass it as `after` to go on.")]
    resource: str
    op: Literal["insert", "update", "delete"]
    id: str
    committed_at: datetime
    row: Annotated[
        dict[str, Any],
        msgspec.Meta(description="The row after the change (a delete: before it), as `GET /{resource}/{id}` shows it."),
    ]


class ChangesPage(msgspec.Struct, kw_only=True):
    """Changes in commit order, and where to go on from."""

    items: list[Change]
    next: Annotated[
        int, msgspec.Meta(description="Pass as `after` next time (unchanged when nothing is new; it never goes back).")
    ]


class _Page(msgspec.Struct):
    items: list[LoggedChange]
    next: int


_ENCODE: Final = msgspec.json.Encoder().encode


def parse_position(raw: str | None, field: str) -> int | Literal["now"] | None:
    """A position as a client sends it: digits, ``now`` (the head), or nothing (from the oldest kept).

    Raises:
        InvalidInputError: anything else, naming ``field``.
    """
    if raw is None:
        return None
    text = raw.strip()
    if text == _NOW:
        return _NOW
    if not text.isascii() or not text.isdigit() or int(text) > _MAX_POSITION:
        message = f"must be a position from the feed (digits, at most {_MAX_POSITION}) or 'now'"
        raise InvalidInputError([FieldError(field, message)])
    return int(text)


class _Feed:
    """What both routes share: the log, and the resources a request may follow."""

    def __init__(self, log: ChangeLog, resources: Iterable[Resource]) -> None:
        self.log = log
        self.names: dict[str, str] = {}
        for resource in resources:
            entity = resource.entity
            if entity.changes:
                self.names[entity.name] = entity.name
                self.names.setdefault(entity.path or entity.name, entity.name)

    def resources_parameter(self) -> Any:
        """The ``resources`` query parameter, its pattern listing the names and paths the feed records."""
        return Parameter(
            description="Comma-separated resource names (or paths) to follow; default: every resource the key may "
            "read. Each needs its read scope.",
            pattern=self.resources_pattern(),
        )

    def resources_pattern(self) -> str:
        """A comma-separated list of the names and paths the feed records (letters, digits, ``_`` and ``-`` only)."""
        one = "|".join(sorted(self.names))
        return f"^({one})(,({one}))*$"

    def operation(self, base: type[FluxOperation]) -> type[FluxOperation]:
        """``base`` documenting the patterns ``after``, ``resources`` and ``Last-Event-ID`` are checked against."""
        patterns = {
            "after": _POSITION_PATTERN,
            "resources": self.resources_pattern(),
            "Last-Event-ID": r"^[0-9]{1,19}$",
        }
        return with_patterns(base, patterns)

    def followed(self, request: Request[Any, Any, Any], raw: str | None) -> frozenset[str]:
        """The resources asked for (default: every recorded one the key may read), each checked against the key."""
        key: ServiceKey | None = request.scope.get("state", {}).get(KEY_STATE)
        if raw is None:
            readable = frozenset(n for n in self.log.resources if key is None or key.allows(required_scope(n, "GET")))
            if not readable and key is not None:
                raise ForbiddenError(key.name, f"{min(self.log.resources, default='<resource>')}:read")
            return readable
        chosen = set()
        for part in raw.split(","):
            name = self.names.get(part)
            if name is None:
                known = ", ".join(sorted(self.log.resources))
                message = f"{part!r} is not a resource the feed records (it records: {known})"
                raise InvalidInputError([FieldError("resources", message)])
            if key is not None and not key.allows(needed := required_scope(name, "GET")):
                raise ForbiddenError(key.name, needed)
            chosen.add(name)
        return frozenset(chosen)

    async def start(self, raw: str | None, field: str) -> int:
        """The position to read after: a given one, the head for ``now``, or before the oldest kept."""
        position = parse_position(raw, field)
        if position == _NOW:
            return await self.log.settled_head()
        if position is None:
            return await self.log.oldest_after()
        return position


def changes_handlers(log: ChangeLog, resources: Iterable[Resource]) -> list[HTTPRouteHandler]:
    """The feed's two routes; each checks the read scope of every resource it follows."""
    feed = _Feed(log, resources)
    return [_page_handler(feed), _stream_handler(feed)]


def _after(now: str) -> Any:
    return Parameter(
        description=f"Read the changes after this position (a `next`, or an event's `id`); `now`: {now}; absent: "
        "from the oldest change kept.",
        pattern=_POSITION_PATTERN,
    )


def _page_handler(feed: _Feed) -> HTTPRouteHandler:
    log = feed.log

    async def read_changes(
        request: Request[Any, Any, Any],
        after: Annotated[str | None, _after("just the head as `next` (with `wait`: the changes from now on)")] = None,
        resources: Annotated[str | None, feed.resources_parameter()] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="At most this many changes.")] = 500,
        wait: Annotated[
            float,
            Parameter(ge=0, le=MAX_WAIT, description="When nothing is new, wait up to this many seconds for a change."),
        ] = 0,
    ) -> Response[ChangesPage]:
        names = feed.followed(request, resources)
        start = await feed.start(after, "after")
        if parse_position(after, "after") == _NOW and not wait:
            return _json(_Page([], start))
        page = await log.page(start, await log.settled_head(), names, limit)
        deadline = time.monotonic() + wait
        while not page.items and not log.closing and (left := deadline - time.monotonic()) > 0:
            head = await log.wait_beyond(page.next, left)
            if head > page.next:
                page = await log.page(page.next, head, names, limit)
        return _json(_Page(page.items, page.next))

    return get(
        "/changes",
        operation_id="read_changes",
        summary="Read committed changes after a position",
        description="Every committed insert, update and delete of the resources followed (including cascades, bulk "
        "writes and plain SQL), in commit order, after `after`. Pass `next` as `after` to go on: no change is ever "
        "skipped or repeated. With `wait`, an empty answer waits for the next change (a long poll).",
        tags=["changes"],
        responses=problem_responses(401, 403, 410, 422, 503),
        operation_class=feed.operation(FluxOperation),
        opt={"resource": None},  # the handler checks the read scope of each resource it follows
    )(read_changes)


def _json(page: _Page) -> Response[Any]:
    return Response(_ENCODE(page), media_type="application/json")


def _event(change: LoggedChange) -> bytes:
    return b"id: %d\nevent: change\ndata: %s\n\n" % (change.position, _ENCODE(change))


def _stream_handler(feed: _Feed) -> HTTPRouteHandler:
    log = feed.log

    async def stream_changes(
        request: Request[Any, Any, Any],
        after: Annotated[
            str | None, _after("from the next change on; a reconnecting client's `Last-Event-ID` takes its place")
        ] = None,
        resources: Annotated[str | None, feed.resources_parameter()] = None,
        last_event_id: Annotated[
            str | None,
            HeaderParameter(name="Last-Event-ID", description="The `id` of the last event received."),
        ] = None,
    ) -> Stream:
        names = feed.followed(request, resources)
        start = await feed.start(last_event_id, "Last-Event-ID") if last_event_id else await feed.start(after, "after")
        await log.page(start, start, names, 1)  # 410 now, while an answer can still say so
        return EventStream(_events(log, names, start), media_type="text/event-stream", headers=_STREAM_HEADERS)

    return get(
        "/changes/stream",
        operation_id="stream_changes",
        summary="Follow committed changes as Server-Sent Events",
        description="One `change` event per committed change, in commit order, its `id` the position and its "
        "`data` the change as `GET /changes` lists it; a comment line every 15 s of silence. Reconnect with "
        "`Last-Event-ID` to resume where the stream stopped. A client that stops reading gets a final `dropped` "
        "event whose data names the position to resume after.",
        tags=["changes"],
        responses=problem_responses(401, 403, 410, 422, 503),
        response_description="A text/event-stream of change events.",
        operation_class=streaming(feed.operation(FluxOperation), "text/event-stream"),
        opt={"resource": None},
    )(stream_changes)


_STREAM_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _events(log: ChangeLog, names: frozenset[str], start: int) -> AsyncIterator[bytes]:
    """The stream's body: pages of events as the head moves, heartbeats in the silences, a ``dropped`` at the end."""
    position = start  # every change up to here was sent (or is not followed)
    yield b"retry: 1000\n\n"
    head = await log.settled_head()
    quiet_since = time.monotonic()
    while True:
        page = await log.page(position, head, names, MAX_LIMIT)
        if page.items:
            sent = time.monotonic()
            yield b"".join(_event(change) for change in page.items)
            position = page.next
            if time.monotonic() - sent > SLOW_SEND:
                last = page.items[-1].position
                yield b'event: dropped\ndata: {"reason":"slow consumer","resume_after":%d}\n\n' % last
                logger.warning("change stream: dropped a client that did not keep up (resume after %d)", last)
                return
            quiet_since = time.monotonic()
            if len(page.items) == MAX_LIMIT:
                continue
        position = max(position, page.next)
        if log.closing:
            yield b'event: closing\ndata: {"reason":"server shutting down","resume_after":%d}\n\n' % position
            return
        left = HEARTBEAT - (time.monotonic() - quiet_since)
        if left <= 0:
            yield b": heartbeat\n\n"
            quiet_since = time.monotonic()
            continue
        head = await log.wait_beyond(position, left)


class EventStream(Stream):
    """A streamed response whose every send must complete within ``SEND_DEADLINE`` seconds, else it is abandoned."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return _SendDeadline(super().to_asgi_response(*args, **kwargs))


class _SendDeadline:
    """Calls the response with a ``send`` that gives up after ``SEND_DEADLINE`` (the server closes the connection)."""

    def __init__(self, response: Any) -> None:
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def bounded(message: Message) -> None:
            await asyncio.wait_for(send(message), SEND_DEADLINE)

        try:
            await self.response(scope, receive, bounded)
        except* TimeoutError:  # raised inside the response's task group
            CUT_ON_PURPOSE.set(True)  # uvicorn's "returned without completing response" is this, logged here
            logger.warning("change stream: cut a client that took nothing for %.0f s", SEND_DEADLINE)
