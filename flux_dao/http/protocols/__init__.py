"""The HTTP/1.1 protocol classes ``flux-dao serve`` gives uvicorn: uvicorn's own, with bounded request heads.

One class per parser, importable by name, so that ``--workers N`` (which starts processes) finds them; each reads
its limits from the environment once per process (``head.head_limits``).
"""

import asyncio
import importlib.util

from flux_dao.config import HttpParser

__all__ = ("http_protocol",)


def http_protocol(parser: HttpParser) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.run(http=...)``; ``auto`` is httptools when it is installed, else h11."""
    if parser is HttpParser.HTTPTOOLS or (parser is HttpParser.AUTO and importlib.util.find_spec("httptools")):
        from flux_dao.http.protocols.httptools_protocol import FluxHttpToolsProtocol  # noqa: PLC0415 (needs httptools)

        return FluxHttpToolsProtocol
    from flux_dao.http.protocols.h11_protocol import FluxH11Protocol  # noqa: PLC0415 (same shape as above)

    return FluxH11Protocol
