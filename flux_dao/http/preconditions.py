"""Conditional requests (RFC 9110 §13): a row's ``version`` is its strong ETag, ``"<version>"``.

``If-Match`` on PATCH and DELETE names the version the change is made against; the repository checks it in the
write statement itself. ``If-None-Match`` on GET answers 304 when the client's copy is current. A malformed header is
a 422 naming it; a well-formed tag that cannot be one of ours (weak, or not a number) simply never matches, as the
RFC's strong comparison says, so such a write is refused 412.
"""

import re
from typing import Any, Final

from flux_dao.errors import FieldError, InvalidInputError, PreconditionRequiredError
from flux_dao.manifest.spec import EntitySpec

__all__ = ("NEVER", "etag", "expected_version", "if_match", "not_modified")

NEVER: Final = 0
"""A tag no row can carry (versions start at 1): the write is refused with the current version."""
_HIGHEST: Final = 2**31 - 1
"""The largest version the column holds (a 32-bit integer on PostgreSQL): a tag above it can be no row's."""

_TAG: Final = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')


def etag(version: int) -> str:
    """The ``ETag`` header value of a row at ``version``."""
    return f'"{version}"'


def _tags(header: str, name: str) -> list[tuple[bool, str]] | None:
    """``(weak, opaque)`` of each entity tag in ``header``, or None for ``*``; a malformed list is a 422."""
    if header.strip() == "*":
        return None
    found, position = [], 0
    while position < len(header):
        match = _TAG.match(header, position)
        if match is None or match.end() == position:
            raise InvalidInputError([FieldError(name, 'must be "*" or a list of entity tags such as "3"')])
        found.append((match[1] is not None, match[2]))
        position = match.end()
    if not found:
        raise InvalidInputError([FieldError(name, 'must be "*" or a list of entity tags such as "3"')])
    return found


def if_match(header: str, name: str = "If-Match") -> int | None:
    """The version an ``If-Match`` value names: None for ``*`` (any), ``NEVER`` when no tag can match.

    Only one version can be current, so a list of several tags is refused (422) rather than half honoured.
    """
    tags = _tags(header, name)
    if tags is None:
        return None
    if len(tags) > 1:
        raise InvalidInputError([FieldError(name, "name one version (one entity tag), or *")])
    weak, opaque = tags[0]
    if weak or not opaque.isdigit() or len(opaque) > len(str(_HIGHEST)):
        return NEVER
    return int(opaque) if int(opaque) <= _HIGHEST else NEVER


def expected_version(headers: Any, entity: EntitySpec) -> int | None:
    """The version a PATCH or DELETE must find, or None when any will do (``If-Match: *``, or none required).

    Raises:
        PreconditionRequiredError: the resource is declared ``concurrency: required`` and ``If-Match`` is missing.
    """
    header = headers.get("if-match")
    if header is not None:
        return if_match(header)
    if entity.concurrency == "required":
        detail = (
            f"{entity.name} are changed only at a known version (concurrency: required): send If-Match with the "
            "ETag of the row you read."
        )
        raise PreconditionRequiredError(detail, resource=entity.name)
    return None


def not_modified(headers: Any, version: int) -> bool:
    """Whether ``If-None-Match`` says the client holds ``version`` already (weak comparison, as GET allows)."""
    header = headers.get("if-none-match")
    if header is None:
        return False
    tags = _tags(header, "If-None-Match")
    return tags is None or any(opaque == str(version) for _, opaque in tags)
