"""Log lines cannot be forged by what a client sends (paths, request ids), in either format."""

import json
import logging

from flux_dao.logs import JsonFormatter, TextFormatter

FORGED_PATH = "/api/v1/tasks/x\n2030-01-01T00:00:00.000Z INFO [1] flux_dao.access: GET /api/v1/users 200"


def access_record() -> logging.LogRecord:
    record = logging.LogRecord(
        "flux_dao.access", logging.INFO, __file__, 0, "%s %s %d", ("GET", FORGED_PATH, 404), None
    )
    record.fields = {"path": FORGED_PATH, "status": 404, "key_name": "scheduler", "client": "127.0.0.1"}
    return record


def test_text_lines_escape_controls_and_quote_values_with_spaces():
    line = TextFormatter().format(access_record())
    assert "\n" not in line
    assert "GET /api/v1/tasks/x\\x0a2030-01-01" in line
    assert f"path={json.dumps(FORGED_PATH)}" in line
    assert " status=404 key_name=scheduler client=127.0.0.1" in line


def test_json_lines_hold_the_path_as_one_value():
    line = JsonFormatter().format(access_record())
    assert "\n" not in line
    assert json.loads(line)["path"] == FORGED_PATH
