"""Handler signatures built as data.

A handler whose query parameters come from the manifest takes ``**params``; giving it a real ``__signature__`` and
``__annotations__`` lets Litestar validate, convert and document each parameter as if it had been written out
(the technique advanced-alchemy's ``providers.py`` uses for its filter dependencies).
"""

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ("keyword", "set_signature")

_EMPTY = inspect.Parameter.empty


def keyword(name: str, annotation: Any, default: Any = _EMPTY) -> inspect.Parameter:
    """A keyword-only parameter; without ``default`` it is required."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def set_signature(fn: Callable[..., Any], parameters: list[inspect.Parameter], returns: Any) -> None:
    """Set both ``__signature__`` and ``__annotations__``: Litestar reads the first, type hints the second."""
    fn.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
