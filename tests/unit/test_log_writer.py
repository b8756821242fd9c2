"""``serve``'s queued log handler: every record is written, whole, in order, with its request id, by shutdown."""

import json
import logging
import threading

import pytest

from flux_dao.logs import CURRENT_REQUEST, FIELDS_ATTR, JsonFormatter, RequestInfo, RequestLine, TextFormatter
from flux_dao.ops.log_writer import QueuedStderrHandler


@pytest.fixture
def handler(capsys: pytest.CaptureFixture[str]):
    handler = QueuedStderrHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.log_writer")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    handler.close()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_every_line_from_many_threads_is_written_whole_by_close(handler, capsys):
    logger = logging.getLogger("tests.log_writer")

    def log(thread: int) -> None:
        for n in range(500):
            logger.info("line %d of %d", n, thread, extra={FIELDS_ATTR: {"n": n, "thread": thread}})

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handler.close()  # what logging.shutdown does at exit
    written = lines(capsys)
    assert len(written) == 2000
    for thread in range(4):  # each thread's lines in the order it logged them
        assert [line["n"] for line in written if line["thread"] == thread] == list(range(500))


def test_flush_waits_for_what_was_queued(handler, capsys):
    logging.getLogger("tests.log_writer").info("before the flush")
    handler.flush()
    assert [line["message"] for line in lines(capsys)] == ["before the flush"]


def test_a_line_logged_in_a_request_carries_its_id(handler, capsys):
    token = CURRENT_REQUEST.set(RequestInfo("req-42"))
    try:
        logging.getLogger("tests.log_writer").warning("slow statement: %s", ["select"])
    finally:
        CURRENT_REQUEST.reset(token)
    handler.flush()
    (line,) = lines(capsys)
    assert (line["message"], line["request_id"], line["level"]) == ("slow statement: ['select']", "req-42", "WARNING")


def test_arguments_are_read_when_logged_not_when_written(handler, capsys):
    items = ["first"]
    logging.getLogger("tests.log_writer").info("items: %s", items)
    items.append("changed later")
    handler.flush()
    assert lines(capsys)[0]["message"] == "items: ['first']"


def test_a_record_after_close_is_written_at_once(handler, capsys):
    handler.close()
    logging.getLogger("tests.log_writer").error("late")
    assert [line["message"] for line in lines(capsys)] == ["late"]


def _request_line(n: int) -> RequestLine:
    return RequestLine(
        "",
        "INFO",
        "flux_dao.access",
        f"GET /x/{n} 200",
        7,
        "GET",
        "/x/{id}",
        f"/x/{n}",
        200,
        1.5,
        "k",
        f"r{n}",
        None,
        None,
    )


def test_a_request_line_without_a_record_is_written_as_its_record_would_be(handler, capsys):
    """The request log's fast path (``put_line``) writes the line the record path writes, in order with others."""
    logger = logging.getLogger("tests.log_writer")
    logger.info("before")
    handler.put_line(_request_line(1))
    logger.info("after")
    handler.close()
    before, line, after = lines(capsys)
    assert (before["message"], after["message"]) == ("before", "after")
    record = logging.makeLogRecord({"name": "flux_dao.access", "levelno": logging.INFO, "levelname": "INFO"})
    record.msg, record.process, record.created = "GET /x/1 200", 7, 0.0
    setattr(record, FIELDS_ATTR, _request_line(1).fields())
    expected = json.loads(JsonFormatter().format(record))
    assert {k: v for k, v in line.items() if k != "ts"} == {k: v for k, v in expected.items() if k != "ts"}
    assert list(line) == list(expected)  # the same keys in the same order
    assert line["ts"].endswith("Z")


def test_request_lines_in_the_text_format_go_through_a_record(capsys):
    handler = QueuedStderrHandler()
    handler.setFormatter(TextFormatter())
    handler.put_line(_request_line(2))
    handler.close()
    written = capsys.readouterr().err
    assert "GET /x/2 200" in written
    assert "request_id=r2" in written
    assert "route=/x/{id}" in written
