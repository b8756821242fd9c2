"""Handler signatures built as data.

A handler whose query parameters come from the manifest takes ``**params``; giving it a real ``__signature__`` and
``__annotations__`` lets Litestar validate, convert and document each parameter as if it had been written out
(the technique advanced-alchemy's ``providers.py`` uses for its filter dependencies).
"""

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Final

from litestar.params import QueryParameter

__all__ = ("QUERY_ARG_PREFIX", "keyword", "query", "query_arg", "set_signature")

_EMPTY = inspect.Parameter.empty
QUERY_ARG_PREFIX: Final = "q_"


def keyword(name: str, annotation: Any, default: Any = _EMPTY) -> inspect.Parameter:
    """A keyword-only parameter; without ``default`` it is required."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def query_arg(name: str) -> str:
    """The handler's keyword for query parameter ``name``.

    Prefixed, because Litestar reserves some keyword names (``state``, ``data``, ``query``, ``headers``...) that a
    manifest may well use for a field; the public name is set with ``QueryParameter(name=name)``.
    """
    return QUERY_ARG_PREFIX + name


def query(name: str, python_type: Any, default: Any = _EMPTY, **meta: Any) -> inspect.Parameter:
    """A query parameter called ``name`` on the wire, validated as ``python_type`` with ``QueryParameter(**meta)``."""
    marker = QueryParameter(name=name, required=True if default is _EMPTY else None, **meta)
    return keyword(query_arg(name), Annotated[python_type, marker], default)


def set_signature(fn: Callable[..., Any], parameters: list[inspect.Parameter], returns: Any) -> None:
    """Set both ``__signature__`` and ``__annotations__``: Litestar reads the first, type hints the second."""
    fn.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
