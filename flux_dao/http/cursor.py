"""Keyset cursors: the position after a page's last row, sealed so a client can only hand it back unchanged.

A cursor holds the values of the page's order for its last row (the order always ends with ``id``, so the position
is exact), and a digest of the filters and the order it was made for. It is base64url of the JSON payload and a
truncated HMAC-SHA256. Reading it back checks the MAC (a changed or forged cursor is refused), the digest (a
cursor from another query is refused) and each value against its column's type: even a cursor sealed with a
leaked key cannot put an unexpected type into a query.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import msgspec

from flux_dao.manifest.columns import ColumnInfo, OrderTerm
from flux_dao.query.plans import Condition
from flux_dao.schema.typemap import INT32_MAX, INT32_MIN

__all__ = ("CursorError", "CursorSeal", "cursor_secret_from_keys", "query_digest")

_MAC_BYTES: Final = 16
_DIGEST_BYTES: Final = 12
_MAX_CURSOR: Final = 4096


class CursorError(ValueError):
    """The cursor cannot be used: why, in words for the client."""


def query_digest(conditions: Sequence[Condition], order: Sequence[OrderTerm]) -> str:
    """What a cursor is bound to: the filters (with their values, in any order) and the order."""
    filters = sorted(msgspec.json.encode([c.field, c.operator, c.value]) for c in conditions)
    canonical = msgspec.json.encode([filters, [[t.field, t.descending, t.nulls_first] for t in order]])
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()[:_DIGEST_BYTES]).decode()


def cursor_secret_from_keys(keys: Sequence[str]) -> str:
    """The default cursor secret: the service keys (shared by replicas), or a fixed text in open mode."""
    return "\x00".join(sorted(keys)) or "flux-dao open mode"


class CursorSeal:
    """Makes and opens cursors with one key."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"flux-dao cursor\x00" + secret.encode()).digest()

    def make(self, digest: str, values: Sequence[Any]) -> str:
        """The cursor for the position ``values`` of the query ``digest``."""
        payload = msgspec.json.encode([digest, list(values)])
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def open(
        self, cursor: str, digest: str, order: Sequence[OrderTerm], info: dict[str, ColumnInfo]
    ) -> tuple[Any, ...]:
        """The position a cursor holds, if it was made by this service for the query ``digest``.

        Raises:
            CursorError: malformed, changed, made for other filters or another order, or holding a wrong value.
        """
        if len(cursor) > _MAX_CURSOR:
            msg = "is not a cursor this service made"
            raise CursorError(msg)
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            msg = "is not a cursor this service made"
            raise CursorError(msg) from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            msg = "is not a cursor this service made, or was changed"
            raise CursorError(msg)
        try:
            made_for, values = msgspec.json.decode(payload, type=tuple[str, list[Any]])
        except msgspec.DecodeError:
            msg = "is not a cursor this service made"
            raise CursorError(msg) from None
        if made_for != digest:
            msg = "was made for other filters or another sort; send them unchanged with the cursor"
            raise CursorError(msg)
        if len(values) != len(order):
            msg = "does not fit this order"
            raise CursorError(msg)
        return tuple(_value(info[term.field], value) for term, value in zip(order, values, strict=True))


def _value(column: ColumnInfo, value: Any) -> Any:
    """A cursor value back in the column's Python type."""
    if value is None:
        if not column.nullable:
            msg = f"holds null for '{column.name}', which is never null"
            raise CursorError(msg)
        return None
    try:
        if column.type == "datetime" and type(value) is str:
            return datetime.fromisoformat(value)
        if column.type == "uuid" and type(value) is str:
            return UUID(value)
        if column.type == "integer" and type(value) is int and INT32_MIN <= value <= INT32_MAX:
            return value
        if column.type == "float" and type(value) in {int, float}:
            return float(value)
        if column.type == "boolean" and type(value) is bool:
            return value
        if column.type in {"string", "enum"} and type(value) is str:
            return value
    except (TypeError, ValueError):
        pass
    msg = f"holds a value of the wrong type for '{column.name}'"
    raise CursorError(msg)
