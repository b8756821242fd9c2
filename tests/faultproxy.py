"""A TCP proxy in front of PostgreSQL that tests can break on purpose (the real server is never touched).

``FaultProxy`` listens on a free loopback port and forwards every connection to the target (127.0.0.1:5432 by
default). It runs its own asyncio loop in a daemon thread, so synchronous tests drive it directly:

- ``cut()``: reset every live connection and every new one as soon as it is accepted (the database "crashed");
- ``refuse()``: reset every live connection and stop listening, so connecting is refused (the host is up, the
  database is not);
- ``hold()``: a black hole: connections stay open, new ones are accepted, but no byte moves either way until
  ``restore()`` (a network partition; only timeouts notice it). Bytes held for a sender that closes its connection
  meanwhile are dropped, as an aborted TCP connection's unacknowledged data is: they never reach the other side;
- ``sever()``: the database restarted behind a silent network: live connections are dead, but a client only finds
  out (a reset) when it next sends something; new connections work;
- ``restore()``: forward again (held traffic then flows on).
"""

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import asyncpg

__all__ = ("FaultProxy",)

T = TypeVar("T")
Mode = Literal["forward", "cut", "refuse", "hold"]
_CHUNK = 65536


class FaultProxy:
    """A breakable TCP proxy; use as a context manager (``with FaultProxy() as proxy: ... proxy.port``)."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Mode = "forward"
        self.accepted = 0
        """How many client connections were accepted so far (a test can tell the service reconnected)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._dead: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control (any thread) -------------------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen)
        return self

    def cut(self) -> None:
        """Reset every live connection; new ones are accepted and reset at once."""
        self._call(self._set_mode, "cut")

    def refuse(self) -> None:
        """Reset every live connection and stop listening: connecting is refused until ``restore()``."""
        self._call(self._set_mode, "refuse")

    def hold(self) -> None:
        """Stall all traffic, live and new, without closing anything (a black hole)."""
        self._call(self._set_mode, "hold")

    def sever(self) -> None:
        """Kill every live connection silently: each client is reset only when it next sends."""
        self._call(self._sever)

    def restore(self) -> None:
        """Forward again: listen if refused, let held traffic through."""
        self._call(self._set_mode, "forward")

    def live_connections(self) -> int:
        """Client connections currently open through the proxy."""
        return len(self._live)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        coro: Coroutine[Any, Any, T] = func(*args)  # type: ignore[assignment]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- the loop's side ------------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = int(sock.getsockname()[1])
        self._server = await asyncio.start_server(self._accept, sock=sock, backlog=128)

    async def _set_mode(self, mode: Mode) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "hold":
            self._flowing.clear()
            return
        if mode in ("cut", "refuse"):
            self._reset_all()
            if mode == "refuse" and self._server is not None:
                self._server.close()  # stop accepting; live connections were reset above
                self._server = None
        if mode == "forward" and self._server is None:
            await self._listen()
        self._flowing.set()  # cut/refuse: let held pipes run into their reset connections and end

    async def _sever(self) -> None:
        self._dead.update(self._clients)

    def _reset_all(self) -> None:
        for writer in list(self._live):
            _reset(writer)
        self._live.clear()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.accepted += 1
        if self.mode in ("cut", "refuse"):
            _reset(client_writer)
            return
        self._live.add(client_writer)
        try:
            await self._flowing.wait()  # held: accepted, never answered
            if self.mode != "forward" or client_writer not in self._live or _gone(client_reader):
                _reset(client_writer)
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(client_writer)
                return
            await self._forward(client_reader, client_writer, upstream_reader, upstream_writer)
        finally:
            self._live.discard(client_writer)

    async def _forward(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        self._live.add(upstream_writer)
        self._clients.add(client_writer)
        pipes = [
            asyncio.create_task(self._pipe(client_reader, upstream_writer, client_writer)),
            asyncio.create_task(self._pipe(upstream_reader, client_writer, upstream_writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            self._live.discard(upstream_writer)
            self._clients.discard(client_writer)
            self._dead.discard(client_writer)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        """Copy one direction; when held, bytes wait here; when either side ends, both are reset."""
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if writer.is_closing() or _gone(reader):  # the sender gave up while held: its bytes are lost
                    break
                if other in self._dead:  # severed: the first bytes the client sends are answered with a reset
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            _reset(writer)
            _reset(other)


def _gone(reader: asyncio.StreamReader) -> bool:
    """Whether the peer has closed or reset its side (bytes it sent but nobody forwarded die with it, as in TCP)."""
    return reader.exception() is not None or reader.at_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once, without flushing (SO_LINGER 0 makes it a TCP RST, as when a server dies)."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def pg_direct(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement straight on PostgreSQL (never through the proxy or the service)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())
