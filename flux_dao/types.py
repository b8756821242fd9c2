"""Type aliases shared across the layers."""

from typing import Any, TypeAlias

import msgspec

__all__ = ("Row", "StructType")

Row: TypeAlias = dict[str, Any]
"""Column name to Python value, as read from or written to one table row."""

StructType: TypeAlias = type[msgspec.Struct]
"""A generated msgspec Struct class (Create, Update, Read, Page, ...)."""
