"""Request heads are bounded, and protocol-level errors are problem+json, on both HTTP parsers uvicorn may run.

A real ``flux-dao serve`` per parser, spoken to over raw sockets: the requests here are ones an HTTP client library
would refuse to send.
"""

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from flux_dao.config import Settings
from flux_dao.ops.cli import main
from tests.live import LiveServer, live_server

HEAD_TIMEOUT = 1.0
"""``FLUX_DAO_HEADER_TIMEOUT`` of the servers here; uvicorn's keep-alive timeout stays at its 5 s."""
MAX_HEADER_BYTES = 16384
"""The default ``FLUX_DAO_MAX_HEADER_BYTES``."""


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, object]:
        assert self.headers["content-type"] == "application/problem+json", self
        body: dict[str, object] = json.loads(self.body)
        assert body["status"] == self.status
        assert isinstance(body["detail"], str)
        assert body["detail"]
        return body


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return RawResponse(int(status_line.split()[1]), headers, body)


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_one_response(sock: socket.socket) -> RawResponse:
    """One response with a Content-Length, leaving the connection open."""
    sock.settimeout(5.0)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    response = parse_response(data)
    while len(response.body) < int(response.headers["content-length"]):
        response.body += sock.recv(65536)
    return response


def exchange(server: LiveServer, request: bytes) -> RawResponse:
    """Send ``request`` whole, then read the answer until the server closes the connection."""
    with socket.create_connection(address(server)) as sock:
        sock.sendall(request)
        return parse_response(read_until_closed(sock))


def address(server: LiveServer) -> tuple[str, int]:
    host, port = server.base.removeprefix("http://").split(":")
    return host, int(port)


def get(path: str = "/health", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n".encode() + extra + b"\r\n"


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per parser, with a short head timeout."""
    workdir = tmp_path_factory.mktemp(f"protocol-{request.param}")
    env = {"FLUX_DAO_HTTP_PARSER": request.param, "FLUX_DAO_HEADER_TIMEOUT": str(HEAD_TIMEOUT)}
    with live_server(f"sqlite+aiosqlite:///{workdir / 'flux_dao.db'}", workdir, env=env) as running:
        yield running


# --- size and count -------------------------------------------------------------------------------------------------


def test_a_plain_request_is_served(server):
    assert exchange(server, get(extra=b"Connection: close\r\n")).status == 200


def test_too_many_headers_is_431(server):
    fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(101))
    response = exchange(server, get(extra=fields))
    assert response.status == 431
    problem = response.problem()
    assert problem["type"] == "urn:flux-dao:problem:request-header-too-large"
    assert "100 header fields" in str(problem["detail"])


def test_a_hundred_headers_are_fine(server):
    fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(98)) + b"Connection: close\r\n"  # + Host: 100
    assert exchange(server, get(extra=fields)).status == 200


def test_one_huge_header_value_is_431(server):
    response = exchange(server, get(extra=b"X-Big: " + b"a" * (1 << 20) + b"\r\n"))
    assert response.status == 431
    problem = response.problem()
    assert problem["type"] == "urn:flux-dao:problem:request-header-too-large"
    assert str(MAX_HEADER_BYTES) in str(problem["detail"])


def test_a_100_kb_query_string_is_414(server):
    response = exchange(server, get("/health?q=" + "a" * 100_000))
    assert response.status == 414
    assert response.problem()["type"] == "urn:flux-dao:problem:uri-too-long"


# --- malformed requests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "detail"),
    [
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", "Content-Length", id="cl-minus-1"
        ),
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "Transfer-Encoding",
            id="cl-with-te",
        ),
        pytest.param(b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n", "", id="field-without-colon"),
    ],
)
def test_malformed_requests_are_400_problems(server, request_bytes, detail):
    response = exchange(server, request_bytes)
    assert response.status == 400
    problem = response.problem()
    assert problem["type"] == "urn:flux-dao:problem:bad-request"
    assert str(problem["detail"]).startswith("malformed HTTP request: ")
    assert detail in str(problem["detail"])


def test_an_unknown_method_is_a_4xx_problem(server):
    # httptools refuses the method itself (400); h11 lets it through and the app answers 405 for /health
    response = exchange(server, b"FOO /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert response.status in {400, 405}
    assert response.problem()["type"] in {"urn:flux-dao:problem:bad-request", "urn:flux-dao:problem:method-not-allowed"}


# --- time -----------------------------------------------------------------------------------------------------------


def test_a_half_sent_head_is_answered_408_and_closed_at_the_timeout(server):
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        response = parse_response(read_until_closed(sock))
        elapsed = time.monotonic() - started
    assert response.status == 408
    assert response.problem()["type"] == "urn:flux-dao:problem:request-timeout"
    assert HEAD_TIMEOUT * 0.8 <= elapsed <= HEAD_TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed_at_the_timeout(server):
    with socket.create_connection(address(server)) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        elapsed = time.monotonic() - started
    assert HEAD_TIMEOUT * 0.8 <= elapsed <= HEAD_TIMEOUT + 2


def test_a_trickled_head_is_cut_at_the_timeout_for_the_whole_head(server):
    with socket.create_connection(address(server)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
        while not select.select([sock], [], [], 0.1)[0]:  # one byte per 100 ms until the server answers
            assert time.monotonic() - started < HEAD_TIMEOUT + 3, "the trickle was never cut"
            sock.sendall(b"a")
        elapsed = time.monotonic() - started
        response = parse_response(read_until_closed(sock))
    assert response.status == 408
    assert HEAD_TIMEOUT * 0.8 <= elapsed <= HEAD_TIMEOUT + 2


@pytest.mark.slow  # idles past the head timeout on purpose
def test_keep_alive_idle_time_and_slow_bodies_are_not_head_time(server):
    with socket.create_connection(address(server)) as sock:
        sock.sendall(get())
        assert read_one_response(sock).status == 200
        time.sleep(HEAD_TIMEOUT * 2)  # idle between requests: uvicorn's keep-alive (5 s) applies, not the head clock
        sock.sendall(get())
        assert read_one_response(sock).status == 200
        # a complete head stops the clock: a body that takes longer than the head timeout is still read
        sock.sendall(b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n")
        sock.sendall(b"Content-Type: application/json\r\n\r\n")
        time.sleep(HEAD_TIMEOUT * 1.5)
        sock.sendall(b"{}")
        assert read_one_response(sock).status == 422  # the body was read and validated: email is missing
        # the next head gets a clock of its own, started by its first byte
        time.sleep(HEAD_TIMEOUT * 0.5)
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        response = parse_response(read_until_closed(sock))
        elapsed = time.monotonic() - started
    assert response.status == 408
    assert HEAD_TIMEOUT * 0.8 <= elapsed <= HEAD_TIMEOUT + 2


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_shutdown_closes_refused_connections_and_exits_0(parser, tmp_path):
    env = {"FLUX_DAO_HTTP_PARSER": parser}
    with (
        live_server(f"sqlite+aiosqlite:///{tmp_path / 'flux_dao.db'}", tmp_path, env=env) as running,
        ExitStack() as sockets,
    ):
        for _ in range(2):  # refused, and still open for the client to read the answer
            sock = sockets.enter_context(socket.create_connection(address(running)))
            sock.sendall(get(extra=b"".join(b"X-Field-%d: 1\r\n" % i for i in range(101))))
            assert parse_response(sock.recv(65536)).status == 431
        assert running.stop() == 0, running.output


# --- memory ---------------------------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.fail(f"no VmRSS for {pid}")


def flood_one_head(server: LiveServer, total: int, results: list[tuple[bytes, int | None]]) -> None:
    """Send ``total`` bytes of one header value in 64 KiB pieces, as an attacker would: on, whatever the answer.

    Records what the server answered and how many bytes were sent when that answer could first be read.
    """
    chunk = b"a" * 65536
    sent = 0
    answer = b""
    answered_at: int | None = None
    with socket.create_connection(address(server)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # no megabytes parked in the client's kernel
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Fill: ")
        try:
            while sent < total:
                if answered_at is None and select.select([sock], [], [], 0)[0]:
                    answered_at = sent
                    answer = sock.recv(65536)
                sock.sendall(chunk)
                sent += len(chunk)
            answer += read_until_closed(sock)
        except OSError:
            pass  # the server closed before the client was done
    results.append((answer, answered_at))


def test_fifty_connections_sending_4_mb_heads_are_refused_and_hold_no_memory(server):
    pid = server.process.pid
    for _ in range(5):
        assert exchange(server, get(extra=b"Connection: close\r\n")).status == 200
    before = rss_bytes(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(pid))
            time.sleep(0.01)

    results: list[tuple[bytes, int | None]] = []
    sampler = threading.Thread(target=sample)
    sampler.start()
    floods = [threading.Thread(target=flood_one_head, args=(server, 4 << 20, results)) for _ in range(50)]
    for flood in floods:
        flood.start()
    for flood in floods:
        flood.join(timeout=60)
    done.set()
    sampler.join()
    peak = max(peak, rss_bytes(pid))
    assert len(results) == 50
    assert {parse_response(answer).status for answer, _ in results} == {431}
    answered_at = [sent for _, sent in results]
    assert all(sent is not None and sent < 1 << 20 for sent in answered_at), answered_at  # ~16 KiB + socket buffers
    assert peak - before < 30 << 20, f"RSS grew from {before >> 20} MB to {peak >> 20} MB"
    assert exchange(server, get(extra=b"Connection: close\r\n")).status == 200
    assert '"level":"ERROR"' not in server.output


@pytest.mark.slow  # starts two worker processes
def test_worker_processes_get_the_limits(tmp_path):
    env = {"FLUX_DAO_MAX_HEADERS": "5", "FLUX_DAO_HTTP_PARSER": "h11"}
    url = f"sqlite+aiosqlite:///{tmp_path / 'flux_dao.db'}"
    with live_server(url, tmp_path, env=env, args=("--workers", "2")) as running:
        fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(5))
        for _ in range(4):  # whichever worker takes the connection
            assert exchange(running, get(extra=fields)).status == 431
        assert exchange(running, get(extra=b"Connection: close\r\n")).status == 200


# --- settings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLUX_DAO_MAX_HEADER_BYTES", "100"),
        ("FLUX_DAO_MAX_HEADER_BYTES", "16k"),
        ("FLUX_DAO_MAX_HEADERS", "0"),
        ("FLUX_DAO_HEADER_TIMEOUT", "0"),
        ("FLUX_DAO_HEADER_TIMEOUT", "nan"),
        ("FLUX_DAO_HTTP_PARSER", "zttp"),
    ],
)
def test_nonsense_protocol_settings_stop_the_cli_naming_the_variable(variable, value):
    with pytest.raises(ValueError, match=variable):
        Settings.from_env({variable: value})
    result = CliRunner().invoke(main, ["check"], env={variable: value})
    assert result.exit_code == 1
    assert variable in result.output
