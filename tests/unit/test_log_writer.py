"""``serve``'s queued log handler: every record is written, whole, in order, with its request id, by shutdown."""

import json
import logging
import threading

import pytest

from flux_dao.logs import CURRENT_REQUEST, FIELDS_ATTR, JsonFormatter, RequestInfo
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
