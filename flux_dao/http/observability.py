"""Operations: one outermost ASGI wrapper for the request log, ``X-Request-ID`` and the Prometheus metrics.

The wrapper sits around Litestar's whole ASGI handler (``create_app`` installs it), not in Litestar's middleware
stack: Litestar runs app-level middleware per route, after routing, so it never sees a 404 for an unknown path or a
405, and it would sit inside the API router's access check. Around the handler it sees every HTTP request and every
answer, the 401/403/429 of the access check and the 404 of the router included.

Per request it:

- takes the client's ``X-Request-ID`` if it is 1-128 characters of ``A-Za-z0-9._:/+=-``, else makes one (32 random hex
  digits), and echoes it on the response; problem+json bodies carry it as ``request_id`` and every log line written
  while the request runs has it;
- counts the request and its duration by route *template* (``/api/v1/tasks/{task_id}``; ``<unmatched>`` when no
  route matched the path and method), method and status, and each problem+json answer by problem type;
- writes one log line (logger ``flux_dao.access``, INFO): method, route, path (no query string), status,
  duration_ms, key_name (the name of the service key the access check accepted, never the key), request_id,
  client (peer address), and problem (the problem type, on errors). Request bodies and headers are never logged.

Metrics (``GET /metrics``, Prometheus text format; who may read it: ``FLUX_DAO_METRICS``):
``flux_dao_http_requests_total`` and ``flux_dao_http_request_duration_seconds`` {route, method, status},
``flux_dao_problems_total`` {type}, ``flux_dao_db_statements_total`` (SQL statements sent), and the database pool:
``flux_dao_db_pool_connections`` (open), ``flux_dao_db_pool_in_use``, ``flux_dao_db_pool_max`` and, on PostgreSQL,
``flux_dao_db_pool_waiting`` (requests waiting for a connection). With ``--workers N > 1`` ``flux-dao serve``
points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder and every figure is the sum over the live workers, whichever
worker answers the scrape; each worker refreshes its pool gauges and statement count once a second (the worker
answering refreshes its own first).
"""

import asyncio
import atexit
import contextlib
import logging
import os
import re
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from time import perf_counter, time
from typing import Any, Final

import msgspec
from litestar import Response, get
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Middleware, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from flux_dao.config import Exposure, Settings
from flux_dao.http.auth import KEY_NAME_STATE
from flux_dao.http.problems import PROBLEM_MEDIA_TYPE, problem_body
from flux_dao.logs import CURRENT_REQUEST, LineSink, RequestInfo, RequestLine, line_sink
from flux_dao.store.db import Database

__all__ = (
    "REQUEST_ID_HEADER",
    "UNMATCHED_ROUTE",
    "Metrics",
    "Observability",
    "share_metrics",
)

REQUEST_ID_HEADER: Final = "X-Request-ID"
UNMATCHED_ROUTE: Final = "<unmatched>"
"""The ``route`` label of requests no route matched (unknown path, or a method the path does not have)."""
ACCESS_LOGGER: Final = "flux_dao.access"

_REQUEST_ID_HEADER: Final = REQUEST_ID_HEADER.lower().encode("latin-1")
_VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}").fullmatch
"""UUIDs, hex, base64 and dotted or colon-separated trace ids; no spaces or controls that could forge log fields."""
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_NAMES: Final = (*(floatToGoString(bound) for bound in _BUCKETS), "+Inf")  # type: ignore[no-untyped-call]
_REQUESTS_NAME: Final = "flux_dao_http_requests"
_REQUESTS_HELP: Final = "HTTP requests answered, by route template, method and status."
_DURATION_NAME: Final = "flux_dao_http_request_duration_seconds"
_DURATION_HELP: Final = (
    "Time from the request's arrival to the end of its response, by route template, method and status."
)
_LABELS: Final = ("route", "method", "status")
_POOL_REFRESH_SECONDS: Final = 1.0
_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_METRICS_MEDIA_TYPE: Final = CONTENT_TYPE_LATEST.split("; charset=")[0]
"""Prometheus' content type without its charset: Litestar adds ``; charset=utf-8`` to every ``text/`` type."""

_access_log = logging.getLogger(ACCESS_LOGGER)
_STARTED: Final = time()
"""For the request records' ``relativeCreated`` (logging counts from its own import; this module comes soon after)."""
_logger = logging.getLogger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: they double the exposition and no dashboard reads them


class _RouteFigures:
    """One label set's request count, summed duration and per-bucket counts (not cumulative; the last is +Inf)."""

    __slots__ = ("buckets", "count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(_BUCKETS) + 1)


class _RequestFigures(Collector):
    """The request counter and duration histogram of a single-process server, kept as plain numbers.

    prometheus_client's own Counter and Histogram take a lock and walk the buckets in Python for every request
    (about 2.5 us of a 40 us request, a twentieth of the constant endpoint's throughput); here a request costs a dict
    lookup and three additions, and the exposition is built from these figures when ``/metrics`` is read. Only the
    event loop's thread writes them, and the scrape runs on that loop too.
    """

    def __init__(self) -> None:
        self.by_labels: dict[tuple[str, str, int], _RouteFigures] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        figures = self.by_labels.get(key)
        if figures is None:
            figures = self.by_labels[key] = _RouteFigures()
        figures.count += 1
        figures.seconds += seconds
        figures.buckets[bisect_left(_BUCKETS, seconds)] += 1  # the first bound >= seconds: Prometheus' ``le``

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(_REQUESTS_NAME, _REQUESTS_HELP, labels=_LABELS)
        duration = HistogramMetricFamily(_DURATION_NAME, _DURATION_HELP, labels=_LABELS)
        for (route, method, status), figures in list(self.by_labels.items()):
            labels = (route, method, str(status))
            requests.add_metric(labels, figures.count)
            cumulative, buckets = 0, []
            for name, count in zip(_BUCKET_NAMES, figures.buckets, strict=True):
                cumulative += count
                buckets.append((name, float(cumulative)))
            duration.add_metric(labels, buckets, figures.seconds)
        yield requests
        yield duration


class Metrics:
    """This app's Prometheus metrics, in their own registry (or, with several workers, in the shared folder)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.multiprocess = bool(os.environ.get(_MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        self.observe: Callable[[str, str, int, float], None]
        """Count one answered request: its route template, method, status and duration."""
        if self.multiprocess:  # every request goes to the shared folder at once, so any worker's scrape sums all
            self.requests = Counter(_REQUESTS_NAME, _REQUESTS_HELP, _LABELS, registry=self.registry)
            self.duration = Histogram(_DURATION_NAME, _DURATION_HELP, _LABELS, buckets=_BUCKETS, registry=self.registry)
            self.observe = self._observe_shared
        else:
            figures = _RequestFigures()
            self.registry.register(figures)
            self.observe = figures.observe
        self.problems = Counter(
            "flux_dao_problems",
            "problem+json responses, by problem type (the slug of urn:flux-dao:problem:<type>).",
            ("type",),
            registry=self.registry,
        )
        self.pool_connections = self._gauge("flux_dao_db_pool_connections", "Open database connections.")
        self.pool_in_use = self._gauge("flux_dao_db_pool_in_use", "Database connections serving a request.")
        self.pool_max = self._gauge("flux_dao_db_pool_max", "Most database connections the pool opens (DB_POOL_SIZE).")
        self.pool_waiting = (
            self._gauge("flux_dao_db_pool_waiting", "Requests waiting for a database connection.")
            if db.is_postgres
            else None
        )
        self.statements = Counter(
            "flux_dao_db_statements",
            "SQL statements sent to the database (a list with embeds costs one per embed level, whatever its size).",
            registry=self.registry,
        )
        self._statements_seen = 0
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _gauge(self, name: str, documentation: str) -> Gauge:
        # livesum: with several workers, the sum over the workers alive (a stopped worker removes its figures)
        return Gauge(name, documentation, multiprocess_mode="livesum", registry=self.registry)

    def _observe_shared(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            values = (route, method, str(status))
            children = self._children[key] = (self.requests.labels(*values), self.duration.labels(*values))
        children[0].inc()
        children[1].observe(seconds)

    def refresh_pool(self) -> None:
        """Read this worker's pool into the pool gauges."""
        stats = self.db.pool_stats()
        self.pool_connections.set(stats.connections)
        self.pool_in_use.set(stats.in_use)
        self.pool_max.set(stats.max_size)
        if self.pool_waiting is not None:
            self.pool_waiting.set(stats.waiting or 0)
        sent = self.db.statements.sent
        self.statements.inc(sent - self._statements_seen)
        self._statements_seen = sent

    def render(self) -> bytes:
        """The Prometheus text exposition: this worker's figures, or every worker's with several."""
        self.refresh_pool()
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class _ObservabilityMiddleware:
    """The outermost ASGI wrapper: request id, metrics, one log line per request."""

    __slots__ = ("app", "metrics", "sink")

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.sink: LineSink | None = None
        """Where request lines go without a record, once the app has started (``flux_dao.logs.line_sink``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        path = scope["path"]  # as asked: routing rewrites it (trailing slash, root path)
        request_id = _request_id(scope["headers"])
        header = (_REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status = 0  # 0 until the response starts; if the app fails before answering, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        info = RequestInfo(request_id)
        token = CURRENT_REQUEST.set(info)
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            if status:
                raise
            await _answer_cut_off(send_with_id, info)
        finally:
            status = status or 500
            seconds = perf_counter() - start
            CURRENT_REQUEST.reset(token)
            route = scope.get("path_template")
            method: str = scope["method"]
            if method not in _METHODS:
                method = "OTHER"
            self.metrics.observe(route or UNMATCHED_ROUTE, method, status, seconds)
            if info.problem is not None:
                self.metrics.problems.labels(info.problem).inc()
            if _access_log.isEnabledFor(logging.INFO):
                _log_request(scope, path, route, method, status, seconds, info, self.sink)


async def _answer_cut_off(send: Send, info: RequestInfo) -> None:
    """Answer a request the server cancelled (the shutdown grace period ran out) with a 503 problem.

    Without this the server answers a bare text 500. The statement running is cancelled with the request (see
    ``flux_dao.store.db``), but the cancellation may come after a write committed, so the problem says a read may be
    retried and a write's outcome is unknown, as for any 503 on a write.
    """
    info.problem = "shutting-down"
    detail = (
        "The service is shutting down and stopped this request before answering it: a read may be retried; "
        "a write may or may not have been applied, so read before retrying it."
    )
    body = msgspec.json.encode(problem_body("shutting-down", detail, request_id=info.request_id))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"retry-after", b"1")],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
    _logger.warning("request %s stopped by the shutdown: the grace period ran out", info.request_id)


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == _REQUEST_ID_HEADER:
            if _VALID_REQUEST_ID(value):
                return value.decode("ascii")
            break
    return os.urandom(16).hex()  # as random as a uuid4's hex, at a fifth of the cost


_ACCESS_RECORD: Final[dict[str, Any]] = {
    "name": ACCESS_LOGGER,
    "levelno": logging.INFO,
    "levelname": "INFO",
    "args": None,
    "pathname": __file__,
    "filename": "observability.py",
    "module": "observability",
    "lineno": 0,
    "funcName": "_log_request",
    "exc_info": None,
    "exc_text": None,
    "stack_info": None,
    "thread": None,
    "threadName": None,
    "processName": None,
    "taskName": None,
}
"""What every request record holds alike (in each record's ``__dict__``: %-style formats read it from there)."""


class _AccessRecord(logging.LogRecord):
    """The request log's record, built directly (the request log is half the cost of a simple request at INFO).

    ``LogRecord.__init__`` spends most of its ~2.5 us on what no request line needs: the caller's file and module
    names, the thread, the process name. Here the attributes every request record shares are copied in from one
    dict and the per-request ones set, so every handler and formatter finds each attribute a record has.
    """

    def __init__(self, message: str, fields: dict[str, Any]) -> None:
        self.__dict__.update(_ACCESS_RECORD)
        self.msg = message
        self.fields = fields
        self.created = created = time()
        self.msecs = (created - int(created)) * 1000
        self.relativeCreated = (created - _STARTED) * 1000
        self.process = os.getpid()


def _log_request(
    scope: Scope,
    path: str,
    route: str | None,
    method: str,
    status: int,
    seconds: float,
    info: RequestInfo,
    sink: LineSink | None,
) -> None:
    client = scope.get("client")
    state = scope.get("state")
    line = RequestLine(
        "",
        "INFO",
        ACCESS_LOGGER,
        f"{method} {path} {status}",
        os.getpid(),
        method,
        route,
        path,
        status,
        round(seconds * 1000, 3),
        state.get(KEY_NAME_STATE) if state else None,
        info.request_id,
        client[0] if client else None,
        info.problem,
    )
    if sink is not None:
        sink.put_line(line)
        return
    _access_log.handle(_AccessRecord(line.message, line.fields()))


class Observability:
    """Metrics, the ``/metrics`` route and the request wrapper of one app (one per worker)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.metrics = Metrics(db)
        self._refresher: asyncio.Task[None] | None = None
        self._wrapper: _ObservabilityMiddleware | None = None

    def route_handlers(self, middleware: Sequence[Middleware] = ()) -> list[HTTPRouteHandler]:
        """``GET /metrics`` behind ``middleware`` (the exposure check); none when metrics are off."""
        if self.settings.metrics is Exposure.OFF:
            return []
        metrics = self.metrics

        @get(
            "/metrics",
            operation_id="metrics",
            tags=["operations"],
            summary="Prometheus metrics (text exposition format).",
            include_in_schema=False,
            middleware=list(middleware),
        )
        async def metrics_endpoint() -> Response[bytes]:
            return Response(metrics.render(), media_type=_METRICS_MEDIA_TYPE)

        return [metrics_endpoint]

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` (Litestar's ASGI handler) inside the request-id, metrics and request-log wrapper."""
        self._wrapper = _ObservabilityMiddleware(app, self.metrics)
        return self._wrapper

    async def start(self) -> None:
        """Find where request lines go, logging being configured by now; with several workers, start refreshing.

        The refresher puts this worker's pool gauges in the shared folder once a second.
        """
        if self._wrapper is not None:
            self._wrapper.sink = line_sink(_access_log)
        if self.metrics.multiprocess and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_pool_forever())

    async def stop(self) -> None:
        """Stop refreshing; with several workers, take this worker's gauges out of the shared folder."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self.metrics.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    async def _refresh_pool_forever(self) -> None:
        while True:
            try:
                self.metrics.refresh_pool()
            except Exception:  # a failed refresh must not end the refreshing (the gauges would freeze)
                _logger.exception("could not refresh the pool gauges")
            await asyncio.sleep(_POOL_REFRESH_SECONDS)


def share_metrics(workers: int) -> str | None:
    """Before uvicorn starts ``workers`` > 1 processes: give them one metrics folder, removed when this process exits.

    Every worker then writes its figures there and ``/metrics`` sums them, whichever worker answers. A
    ``PROMETHEUS_MULTIPROC_DIR`` set by the operator is used as it is, with any number of workers (created if
    missing, never removed: empty it between runs). Returns the folder, or None when the figures stay in-process.
    """
    folder = os.environ.get(_MULTIPROC_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
    elif workers > 1:
        folder = tempfile.mkdtemp(prefix="flux-dao-metrics-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ[_MULTIPROC_ENV] = folder  # the workers inherit it
    else:
        return None
    _logger.info("metrics of the %d worker(s) are summed through %s", workers, folder)
    return folder
