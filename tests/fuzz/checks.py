"""Checks schemathesis runs on every response besides its own; loaded through ``SCHEMATHESIS_HOOKS`` (a file path).

The built-in ``content_type_conformance`` only compares a response with the media types its operation documents
for that status; this one holds every error, documented or not (404 on an unknown path, 405, 413...), to RFC 9457.
"""

import re
import uuid
from typing import Any

import schemathesis

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:flux-dao:problem:"
VALID_KEY = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$")


@schemathesis.check
def errors_are_problem_json(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx and 5xx answer is ``application/problem+json`` with the problem's ``type`` and ``status``."""
    if response.status_code < 400:
        return
    values = response.headers.get("content-type") or [""]
    content_type = (values[0] if isinstance(values, list) else str(values)).split(";")[0].strip().lower()
    if content_type != PROBLEM_MEDIA_TYPE:
        message = f"{response.status_code} answered as {content_type or '(no content-type)'}, not {PROBLEM_MEDIA_TYPE}"
        raise AssertionError(message)
    if case.method.upper() == "HEAD":  # no body to read
        return
    body = response.json()
    if not isinstance(body, dict) or body.get("status") != response.status_code:
        message = f"the problem document does not carry the response's status: {body!r}"
        raise AssertionError(message)
    if not str(body.get("type", "")).startswith(TYPE_PREFIX):
        message = f"the problem type is not a {TYPE_PREFIX}<slug>: {body!r}"
        raise AssertionError(message)


_EDGE_DAY = re.compile(r"^(0001-01-01|9999-12-31)(T.*[+-]\d\d:?\d\d)$")


def _inward(value: Any) -> Any:
    """``value`` with each datetime on the first or last day of the range, given with an offset, moved a day in.

    Such an instant can fall outside the years 1..9999 once converted to UTC, which the service refuses with a 422
    naming the field (README; ``tests/e2e/test_errors.py``) and JSON Schema cannot state for a ``date-time``.
    """
    if isinstance(value, str):
        match = _EDGE_DAY.match(value)
        if match is None:
            return value
        return ("0001-01-02" if match[1].startswith("0001") else "9999-12-30") + match[2]
    if isinstance(value, dict):
        return {key: _inward(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_inward(item) for item in value]
    return value


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    """Leave out the two list parameters whose valid values the document cannot describe; one key per request;
    datetimes at the very ends of the range moved inward (``_inward``).

    ``cursor`` holds only what the service itself made (any other string is rightly a 422 ``invalid-cursor``, which
    the positive-data check would call "valid data rejected"), and ``fields`` returns rows with fewer keys than the
    read schema lists, as documented, which the response-schema check would call a violation. Both are covered by
    ``tests/e2e/test_query_language.py``. (A case hook: the coverage phase does not run the query hooks.)
    """
    if case.query:
        case.query = {name: _inward(value) for name, value in case.query.items() if name not in {"cursor", "fields"}}
    if isinstance(case.body, dict | list):
        case.body = _inward(case.body)
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.match(key):
        # a fresh key per request: schemathesis draws the same few ("0") for requests that differ, and the service
        # rightly answers a key reused on another request with 422 (tests/e2e/test_idempotency.py covers keys)
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"
    return case
