"""Value conversions both backends' drivers are given."""

from typing import Any

import msgspec

__all__ = ("json_text",)


def json_text(value: Any) -> str:
    """Encode JSON columns with msgspec, which handles the UUIDs of ``list`` of uuid fields that ``json`` cannot."""
    return msgspec.json.encode(value).decode()
