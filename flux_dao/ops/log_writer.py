"""``serve``'s log handler: a record is queued on the request path; a thread formats and writes lines in batches.

With ``LOG_LEVEL=INFO`` every request writes a line. Formatted and written where it is logged, a line cost the
request a JSON encoding, a write system call and a flush under the handler's lock: 5-25% of the throughput of a
simple read. Here the request only stamps the record with its request id (the writer thread cannot read the
request's context variable) and puts it on a queue. A writer thread takes everything queued, formats it and writes
it to stderr in one call. While the event loop is busy, the thread runs when the interpreter hands it the GIL, so
its batches grow with the load.

No line is lost: ``flush`` waits until everything queued before it is written, and ``close`` (``logging.shutdown``,
which ``serve`` and every worker run before exiting) writes the rest and stops the thread. A record logged after
``close`` is written at once.
"""

import logging
import threading
import time
from queue import SimpleQueue
from typing import Any, Final

from flux_dao.logs import CURRENT_REQUEST, FIELDS_ATTR, REQUEST_ID_ATTR, JsonFormatter, RequestLine, StderrHandler

__all__ = ("QueuedStderrHandler",)

_BATCH: Final = 4096
"""Most records formatted into one write."""
_PAUSE: Final = 0.02
"""Seconds the writer rests after a write while records keep coming. Woken for every record, the thread and the
event loop would trade the GIL (and a futex wake) per line, which cost more than writing in place; resting, it
wakes at most 50 times a second and writes what accumulated. A line reaches stderr at most this much later."""
_FLUSH_TIMEOUT: Final = 5.0
"""Seconds ``flush`` and ``close`` wait for the writer thread; a stuck stderr must not hang the shutdown forever."""


_Line = tuple[float, RequestLine]
"""A request line queued without a record (``put_line``), with the time it was logged."""


def _line_record(created: float, line: RequestLine) -> logging.LogRecord:
    """A record of a line queued without one, for formatters other than JSON (built on the writer's thread)."""
    record = logging.makeLogRecord({"name": line.logger, "levelno": logging.INFO, "levelname": "INFO"})
    record.msg, record.process = line.message, line.pid
    record.created, record.msecs = created, (created - int(created)) * 1000
    setattr(record, FIELDS_ATTR, line.fields())
    return record


def _write_bytes(stream: Any, data: bytes) -> None:
    """Write UTF-8 lines to a text stream: to its bytes underneath when it has them (no decoding and re-encoding)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a stream swapped in for capturing (click's runner, a StringIO)
        stream.write(data.decode(errors="replace"))
        stream.flush()
        return
    stream.flush()  # what was written to the text layer goes first
    buffer.write(data)
    buffer.flush()


class _Stop:
    """Queued by ``close``: the writer writes what came before, then ends."""


class QueuedStderrHandler(logging.Handler):
    """Takes records on the caller's thread and leaves formatting and writing stderr to a writer thread.

    ``logging.config`` gives it the formatter and filters: the filters run on the caller's thread (a dropped record
    is never queued), the formatter on the writer's.
    """

    def __init__(self) -> None:
        self._target = StderrHandler()  # before ``super().__init__``: ``logging.shutdown`` closes this one last
        super().__init__()
        self._queue: SimpleQueue[logging.LogRecord | _Line | threading.Event | _Stop] = SimpleQueue()
        self._closed = False
        # No formatter of flux-dao's names a thread or process: not looking them up saves a request ~1 us per line.
        logging.logThreads = False
        logging.logMultiprocessing = False
        self._writer = threading.Thread(target=self._write_forever, name="flux-dao-log-writer", daemon=True)
        self._writer.start()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 (logging's name)
        """The writer formats: the formatter goes to the handler that writes."""
        self._target.setFormatter(fmt)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter, then queue; no lock: the queue is thread-safe and keeps the order of ``put``."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._closed:  # after shutdown (a late line of a library): written at once, never dropped
            self._target.handle(record)
            return
        if not hasattr(record, FIELDS_ATTR):  # structured records carry what they need, as immutable values
            try:
                record.msg = record.getMessage()  # the arguments may change once this call returns
            except Exception:  # noqa: BLE001 (a malformed call is reported as logging reports it)
                self.handleError(record)
                return
            record.args = None
            if (request := CURRENT_REQUEST.get()) is not None:  # the writer thread cannot read the request's context
                setattr(record, REQUEST_ID_ATTR, request.request_id)
        self._queue.put(record)

    def put_line(self, line: RequestLine) -> None:
        """A request line without a record (``flux_dao.logs.line_sink``): the writer formats it.

        The handler's filters are not asked: flux-dao's own (``ChatterFilter``) never drop a request line.
        """
        if self._closed:
            self._target.handle(_line_record(time.time(), line))
            return
        self._queue.put((time.time(), line))

    def flush(self) -> None:
        """Wait until every record queued so far is written."""
        if self._closed or not self._writer.is_alive():
            return
        written = threading.Event()
        self._queue.put(written)
        written.wait(_FLUSH_TIMEOUT)

    def close(self) -> None:
        """Write what is queued, stop the writer; later records are written directly."""
        if not self._closed:
            self._closed = True
            self._queue.put(_Stop())
            self._writer.join(_FLUSH_TIMEOUT)
        self._target.close()
        super().close()

    def _write_forever(self) -> None:
        queue = self._queue
        while True:
            batch: list[Any] = [queue.get()]  # idle: blocks until the next record, which is written at once
            while len(batch) < _BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            if self._write(batch):
                return
            time.sleep(_PAUSE)

    def _write(self, batch: list[Any]) -> bool:
        """Format and write the records of ``batch`` in one write; set the flush events once written before them."""
        lines: list[bytes] = []
        events: list[threading.Event] = []
        stop = False
        target = self._target
        formatter = target.formatter
        for item in batch:
            if isinstance(item, tuple):  # put_line
                if isinstance(formatter, JsonFormatter):
                    lines.append(formatter.format_line(*item))
                    continue
                item = _line_record(*item)  # noqa: PLW2901 (the other formats read a record)
            if isinstance(item, logging.LogRecord):
                try:
                    lines.append(target.format(item).encode(errors="backslashreplace"))
                except Exception:  # noqa: BLE001 (reported as logging reports it; the other lines are written)
                    target.handleError(item)
            elif isinstance(item, threading.Event):
                events.append(item)
            else:
                stop = True
        if lines:
            try:
                _write_bytes(target.stream, b"\n".join(lines) + b"\n")
            except Exception:  # noqa: BLE001 (stderr gone: logging's own policy, report and go on)
                target.handleError(batch[0])
        for event in events:
            event.set()
        return stop
