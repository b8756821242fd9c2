"""Logging, configured in one place for ``flux-dao serve``, the other commands, and uvicorn's own lines.

``json`` (``serve``'s default, ``FLUX_DAO_LOG_FORMAT``) writes one JSON object per line to stderr: ``ts`` (UTC,
ISO 8601, milliseconds), ``level``, ``logger``, ``message``, then the record's structured ``fields`` (the request
log's method, route, status...) and ``exc_info`` when there is a traceback. ``text`` writes the same as one readable
line. ``cli`` (the other commands' default) writes only the message, prefixed with the level from WARNING up. The
level is ``LOG_LEVEL``. uvicorn gets the same configuration as a ``log_config`` dict, so that every worker it starts
logs the same way. Alembic's start-up chatter (its plugins, "Context impl", "Will assume ... DDL") is dropped below
DEBUG; its "Running upgrade" lines and every warning are kept.
"""

import logging
import logging.config
import re
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final, Protocol

import msgspec

__all__ = (
    "CURRENT_REQUEST",
    "CUT_ON_PURPOSE",
    "FIELDS_ATTR",
    "LOG_FORMATS",
    "REQUEST_ID_ATTR",
    "ChatterFilter",
    "JsonFormatter",
    "LineSink",
    "RequestInfo",
    "RequestLine",
    "StderrHandler",
    "TextFormatter",
    "configure_logging",
    "line_sink",
    "logging_config",
)

CUT_ON_PURPOSE: ContextVar[bool] = ContextVar("flux_dao_cut_on_purpose", default=False)
"""Set by a response that abandons its client on purpose (a change stream nobody reads), having logged why."""

FIELDS_ATTR: Final = "fields"
"""A record attribute holding a mapping of structured fields (``logger.info(..., extra={"fields": {...}})``)."""


class RequestInfo:
    """The request being served: its id, and once it is answered with a problem, the problem's type."""

    __slots__ = ("problem", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.problem: str | None = None


REQUEST_ID_ATTR: Final = "request_id"
"""A record attribute holding the id of the request it was logged in, when it is formatted outside that request
(``flux_dao.ops.log_writer`` formats on its own thread)."""
CURRENT_REQUEST: Final[ContextVar[RequestInfo | None]] = ContextVar("flux_dao_request", default=None)
"""The request being served (set by the request wrapper, ``flux_dao.http.observability``): every line logged meanwhile
carries its id, and the problem handlers note its problem type there. One variable for both: each costs a set and a
reset per request."""

_FORMATTERS: Final[dict[str, dict[str, Any]]] = {
    "json": {"()": "flux_dao.logs.JsonFormatter"},
    "text": {"()": "flux_dao.logs.TextFormatter"},
    "cli": {"()": "flux_dao.logs.TextFormatter", "brief": True},
}
LOG_FORMATS: Final = tuple(_FORMATTERS)
_encoder: Final = msgspec.json.Encoder(enc_hook=str)


def _request_id(record: logging.LogRecord) -> str | None:
    """The id of the request ``record`` was logged in: stamped on it, or the request being served now."""
    stamped: str | None = getattr(record, REQUEST_ID_ATTR, None)
    if stamped is not None:
        return stamped
    request = CURRENT_REQUEST.get()
    return request.request_id if request is not None else None


class _UtcTimestamps:
    """``2026-11-26T08:53:55.123Z``, with the part before the milliseconds reused within a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamp = _UtcTimestamps()

    def format(self, record: logging.LogRecord) -> str:
        fields: Mapping[str, Any] | None = getattr(record, FIELDS_ATTR, None)
        out: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if fields:
            out.update(fields)
        elif (request_id := _request_id(record)) is not None:
            out["request_id"] = request_id
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return _encoder.encode(out).decode()

    def format_line(self, created: float, line: "RequestLine") -> bytes:
        """``line`` as ``format`` writes a record holding the same (the request log's, without its record)."""
        line.ts = self._timestamp(created)
        return _encoder.encode(line)


class RequestLine(msgspec.Struct, gc=False):
    """One line of the request log: the JSON format's keys in its order (``ts`` is set when it is written).

    A struct encodes in a third of the time of the dict a record's line is built from.
    """

    ts: str
    level: str
    logger: str
    message: str
    pid: int
    method: str
    route: str | None
    path: str
    status: int
    duration_ms: float
    key_name: str | None
    request_id: str
    client: str | None
    problem: str | None

    def fields(self) -> dict[str, Any]:
        """The structured fields, as a record of this line carries them (``FIELDS_ATTR``)."""
        return {name: getattr(self, name) for name in self.__struct_fields__[5:]}


class LineSink(Protocol):
    """A handler that takes request lines without a ``LogRecord`` (``flux_dao.ops.log_writer``'s)."""

    def put_line(self, line: RequestLine) -> None:
        """Queue one request line, logged now."""
        ...


def line_sink(logger: logging.Logger) -> LineSink | None:
    """The handler ``logger``'s INFO lines reach, when it is the only one and takes lines without records.

    The request log writes one line per request; building a record and passing it through the loggers and handlers
    costs the request more than the rest of the line. Where logging is configured as ``serve`` configures it (one
    queued handler), the line goes to that handler directly; anywhere else (tests capturing records, a second
    handler) it goes through logging as usual.
    """
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    if len(handlers) != 1 or not hasattr(handlers[0], "put_line"):
        return None
    sink: LineSink = handlers[0]
    return sink


_CONTROLS: Final = {code: f"\\x{code:02x}" for code in (*range(32), 127)}
"""Control characters as escapes: a request path holding a newline cannot start a forged line."""
_BARE_VALUE: Final = re.compile(r"[A-Za-z0-9._:/+=<>{}@-]+").fullmatch


def _text_value(value: Any) -> str:
    """A field value as-is when it is one plain word, else JSON-quoted, so it cannot pass for further fields."""
    text = str(value)
    return text if _BARE_VALUE(text) else _encoder.encode(text).decode()


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> [<pid>] <logger>: <message> key=value ...``, then the traceback if any.

    ``brief`` (the CLI's lines) leaves out the timestamp, pid and logger, and the level below WARNING:
    ``warning: <message> key=value ...``.
    """

    def __init__(self, *, brief: bool = False) -> None:
        super().__init__()
        self._timestamp = _UtcTimestamps()
        self._brief = brief

    def _prefix(self, record: logging.LogRecord) -> str:
        if not self._brief:
            return f"{self._timestamp(record.created)} {record.levelname} [{record.process}] {record.name}: "
        return f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""

    def format(self, record: logging.LogRecord) -> str:
        line = self._prefix(record) + record.getMessage().translate(_CONTROLS)
        fields: Mapping[str, Any] | None = getattr(record, FIELDS_ATTR, None)
        if fields:
            line += "".join(f" {k}={_text_value(v)}" for k, v in fields.items() if v is not None)
        elif (request_id := _request_id(record)) is not None:
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class ChatterFilter(logging.Filter):
    """Drops the libraries' notes about their own set-up below WARNING; their warnings and real news pass.

    Alembic's plugin list, its per-run "Context impl SQLiteImpl." / "Will assume transactional DDL." and its
    comparison's "Detected sequence ... assuming SERIAL" (the change log's position) go, its "Running upgrade" lines
    stay; advanced-alchemy's INFO lines go. uvicorn's warning "Invalid HTTP request
    received." goes too: flux-dao's own protocols log one line for each refused request head, saying what was wrong.
    So does its error "ASGI callable returned without completing response." for a response that set
    ``CUT_ON_PURPOSE`` (a change stream whose client took nothing for half a minute: flux-dao logged a warning).
    A filter on the handler (not on the loggers), so that configuring logging again (``LOG_LEVEL=DEBUG`` keeps
    everything) leaves nothing behind.
    """

    _QUIET_LOGGERS: Final = ("alembic.runtime.plugins", "alembic.ddl.postgresql", "advanced_alchemy")
    _CHATTER: Final = ("Context impl ", "Will assume ")
    _INVALID_REQUEST: Final = "Invalid HTTP request received."
    _INCOMPLETE: Final = "ASGI callable returned without completing response."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and record.msg == self._INVALID_REQUEST:
            return False
        if record.name == "uvicorn.error" and record.msg == self._INCOMPLETE and CUT_ON_PURPOSE.get():
            return False
        if record.levelno >= logging.WARNING:
            return True
        if record.name.startswith(self._QUIET_LOGGERS):
            return False
        return not (record.name == "alembic.runtime.migration" and str(record.msg).startswith(self._CHATTER))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record is written, not as it was when logging was configured.

    So a process that swaps ``sys.stderr`` (a test runner capturing output, click's ``CliRunner``) never leaves the
    handler writing to a stream that has since been closed.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def logging_config(level: str, log_format: str, handler_class: str = "flux_dao.logs.StderrHandler") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: one stderr handler on the root logger; uvicorn's loggers propagate to it.

    ``handler_class`` is that handler's dotted name: ``serve`` passes ``flux_dao.ops.log_writer.QueuedStderrHandler``,
    which writes from a thread of its own.

    Raises:
        ValueError: ``level`` is not a logging level name, or ``log_format`` is not one of :data:`LOG_FORMATS`.
    """
    if log_format not in _FORMATTERS:
        msg = f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}"
        raise ValueError(msg)
    if not isinstance(logging.getLevelName(level), int):
        msg = f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {level!r}"
        raise ValueError(msg)
    inherit = {"level": level, "handlers": [], "propagate": True}
    handler: dict[str, Any] = {"()": handler_class, "formatter": "default"}
    if logging.getLevelName(level) > logging.DEBUG:
        handler["filters"] = ["chatter"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": dict(_FORMATTERS[log_format])},
        "filters": {"chatter": {"()": "flux_dao.logs.ChatterFilter"}},
        "handlers": {"default": handler},
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {name: dict(inherit) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def configure_logging(level: str, log_format: str) -> dict[str, Any]:
    """Configure this process's logging; returns the dict, for uvicorn's ``log_config`` (its workers apply it too)."""
    config = logging_config(level, log_format)
    logging.config.dictConfig(config)
    return config
