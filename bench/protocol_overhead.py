"""The bounded-head protocol's own cost: uvicorn's httptools protocol against flux-dao's subclass of it.

No network, no database: one connection object per class, fed the same keep-alive PATCH request 20,000 times, each
answered by a trivial ASGI app, on uvloop. What differs between the two figures is the protocol's per-request work.

    python -m bench.protocol_overhead
"""

import asyncio
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from flux_dao.http.protocols.httptools_protocol import FluxHttpToolsProtocol

REQUEST = (
    b"PATCH /api/v1/tasks/0190f4d2-0000-7000-8000-000000000000 HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
    b"X-Flux-Service-Key: k1\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n"
    b'{"status": "done"}\n'
)
REQUESTS = 20_000


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


class Transport(asyncio.Transport):
    """Takes what the protocol writes and drops it."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8001)}.get(name, default)

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


async def microseconds_per_request(protocol_class: type[HttpToolsProtocol], requests: int) -> float:
    config = Config(app=app, log_level="warning", lifespan="off")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Transport())

    async def answer() -> None:
        protocol.data_received(REQUEST)
        while protocol.cycle is not None and not protocol.cycle.response_complete:  # noqa: ASYNC110 (the app task runs)
            await asyncio.sleep(0)

    for _ in range(200):  # warm-up
        await answer()
    began = time.perf_counter()
    for _ in range(requests):
        await answer()
    elapsed = time.perf_counter() - began
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


def main() -> None:
    for _ in range(3):  # alternated, so drift of the machine cancels
        for protocol_class in (HttpToolsProtocol, FluxHttpToolsProtocol):
            figure = uvloop.run(microseconds_per_request(protocol_class, REQUESTS))
            print(f"{protocol_class.__name__:24s} {figure:6.2f} us per request")


if __name__ == "__main__":
    main()
