"""Settings read once from the environment.

Every knob flux-dao has lives here, as a frozen dataclass per concern with a typed default, so that
``Settings.from_env()`` is the only place that touches ``os.environ`` and tests can build settings directly.

One prefix: every setting reads as ``FLUX_DAO_<NAME>`` (:func:`env_setting`). The older bare names
(``DATABASE_URL``, ``SERVICE_API_KEYS``, ``DB_POOL_SIZE``, ``LOG_LEVEL``...) keep working; when both are set the
prefixed one wins.
"""

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = (
    "DATABASE_SCHEMES",
    "DEFAULT_DATABASE_URL",
    "ENV_PREFIX",
    "DatabaseSettings",
    "Exposure",
    "HttpParser",
    "PreparedStatements",
    "Settings",
    "default_manifest_path",
    "env_setting",
    "normalize_database_url",
    "parse_api_keys",
    "redact_url",
)

DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///./flux_dao.db"
ENV_PREFIX: Final = "FLUX_DAO_"
DATABASE_SCHEMES: Final = {
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "sqlite": "sqlite+aiosqlite",
}
"""The URL schemes flux-dao accepts, each mapped to the async driver it runs on."""
_URL_EXAMPLES: Final = "postgresql://user:password@host:5432/db or sqlite:///path/to/file.db"
_PASSWORD_PARAMETER: Final = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_PACKAGE_DIR: Final = Path(__file__).resolve().parent
_CHECKOUT_MANIFEST: Final = _PACKAGE_DIR.parent / "resources.yaml"
_BUNDLED_MANIFEST: Final = _PACKAGE_DIR / "_bundled" / "resources.yaml"
_Choice = TypeVar("_Choice", bound=StrEnum)


def default_manifest_path() -> Path:
    """Where the manifest is found when neither ``--manifest`` nor ``FLUX_DAO_MANIFEST`` names one.

    ``./resources.yaml`` in the working folder first (a checkout), then the checkout this package was imported from,
    then the copy the wheel ships; its ``migrations/`` folder always sits beside it.
    """
    for candidate in (Path.cwd() / "resources.yaml", _CHECKOUT_MANIFEST, _BUNDLED_MANIFEST):
        if candidate.is_file():
            return candidate
    return _BUNDLED_MANIFEST


def parse_api_keys(raw: str | None) -> tuple[str, ...]:
    """Read ``SERVICE_API_KEYS``: a JSON list of strings, or a comma-separated list."""
    if raw is None or not raw.strip():
        return ()
    text = raw.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"SERVICE_API_KEYS is not a valid JSON list: {exc}"
            raise ValueError(msg) from exc
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            msg = "SERVICE_API_KEYS must be a JSON list of strings"
            raise ValueError(msg)
        keys = values
    else:
        keys = text.split(",")
    return tuple(k.strip() for k in keys if k.strip())


def env_setting(env: Mapping[str, str], name: str) -> tuple[str, str | None]:
    """The variable that sets ``name`` and its value: ``FLUX_DAO_<NAME>`` first, then the bare ``<NAME>``.

    ``name`` is the setting's historical name: a bare one (``DATABASE_URL``) is also read with the prefix, and the
    prefixed variable wins when both are set; a name that already has the prefix (``FLUX_DAO_MAX_BODY``) is read
    only as it is, so no generic bare name (``DOCS``) is ever picked up. An empty value counts as unset. The
    variable name returned is the one error messages should name.
    """
    candidates = (name,) if name.startswith(ENV_PREFIX) else (ENV_PREFIX + name, name)
    for candidate in candidates:
        value = env.get(candidate)
        if value:
            return candidate, value
    return candidates[0], None


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env_setting(env, name)[1]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    name, raw = env_setting(env, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        msg = f"{name} must be an integer, got {raw!r}"
        raise ValueError(msg) from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    name, raw = env_setting(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        msg = f"{name} must be a number, got {raw!r}"
        raise ValueError(msg) from exc


_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST_DURATION: Final = 3650 * 86400


def _duration(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds, from ``90``, ``90s``, ``15m``, ``24h`` or ``7d``; more than zero."""
    name, raw = env_setting(env, name)
    if raw is None:
        return default
    match = _DURATION.match(raw)
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]] if match else 0.0
    if not 0 < seconds <= _LONGEST_DURATION:
        msg = f"{name} must be a duration above zero and at most 3650d, such as 90, 90s, 15m, 24h or 7d, got {raw!r}"
        raise ValueError(msg)
    return seconds


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (_text(env, name) or "").split(",") if item.strip())


class Exposure(StrEnum):
    """Who may read an operational endpoint (the OpenAPI document and docs UI, or ``/metrics``)."""

    AUTO = "auto"
    """Clients on a loopback address without a key, everyone else with a valid service key."""
    PUBLIC = "public"
    """Everyone, without a key."""
    KEY = "key"
    """Only requests carrying a valid service key (any scope)."""
    OFF = "off"
    """Not served at all."""


def _exposure(env: Mapping[str, str], name: str) -> Exposure:
    return _choice(env, name, Exposure.AUTO)


def _choice(env: Mapping[str, str], name: str, default: _Choice) -> _Choice:
    """One member of ``default``'s enum, by its value (case-insensitive)."""
    kind = type(default)
    name, value = env_setting(env, name)
    raw = (value or default.value).strip().lower()
    try:
        return kind(raw)
    except ValueError as exc:
        allowed = "|".join(e.value for e in kind)
        msg = f"{name} must be one of {allowed}, got {raw!r}"
        raise ValueError(msg) from exc


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for logs and error messages (even a malformed one).

    A URL SQLAlchemy can parse is rendered by it with the password hidden, so whatever it would connect with (a
    password holding ``/`` or ``@``, or given as a ``password`` query parameter) is what is hidden. Of a malformed
    one, everything between ``user:`` and the last ``@`` goes, and any ``password=`` value.
    """
    try:
        parsed = make_url(url)
        if parsed.host is not None and "@" in parsed.host:  # an unescaped "@" in the password: the rest is in host
            raise ValueError(url)
    except (ArgumentError, ValueError):
        scheme, separator, rest = url.partition("://")
        userinfo, at, host = rest.rpartition("@")
        shown = f"{scheme}{separator}{userinfo.split(':', 1)[0]}:***@{host}" if at else url
        return _PASSWORD_PARAMETER.sub(r"\1***", shown)
    return _PASSWORD_PARAMETER.sub(r"\1***", parsed.render_as_string(hide_password=True))


def normalize_database_url(url: str, name: str = "DATABASE_URL") -> str:
    """``url`` on the async driver flux-dao runs (``postgres://`` -> ``postgresql+asyncpg://`` and so on).

    ``postgres://`` and ``postgresql://`` (what most tools print) become ``postgresql+asyncpg://``, ``sqlite://``
    becomes ``sqlite+aiosqlite://``; URLs that already name those drivers are kept as they are.

    Raises:
        ValueError: one line naming ``name`` (the variable the URL came from) and what is wrong: an unknown scheme
            (listing the accepted ones) or a malformed URL. The password is never part of it.
    """
    scheme, separator, rest = url.strip().partition("://")
    if not separator or not scheme:
        msg = f"{name} is malformed: it is not <scheme>://... (e.g. {_URL_EXAMPLES})"  # not echoed: a password?
        raise ValueError(msg)
    driver = DATABASE_SCHEMES.get(scheme.lower())
    if driver is None:
        accepted = ", ".join(f"{s}://" for s in DATABASE_SCHEMES)
        msg = f"{name} has an unknown scheme {scheme + '://'!r}: use one of {accepted}"
        raise ValueError(msg)
    normalized = f"{driver}://{rest}"
    try:
        _check_url_parts(make_url(normalized))
    except (ArgumentError, ValueError) as exc:
        reason = "the port is not a number" if "invalid literal for int" in str(exc) else str(exc)
        msg = f"{name} is malformed ({reason}): {redact_url(normalized)}"
        raise ValueError(msg) from None
    return normalized


def _check_url_parts(url: URL) -> None:
    """What ``make_url`` lets through: an ``@`` left in the host (an unescaped one in the password) or a bad port."""
    if url.host is not None and "@" in url.host:
        msg = "an '@' in the user or password must be written %40"
        raise ValueError(msg)
    if url.port is not None and not 0 < url.port < 65536:
        msg = f"port {url.port} is out of range"
        raise ValueError(msg)


class HttpParser(StrEnum):
    """Which of uvicorn's HTTP/1.1 parsers ``flux-dao serve`` runs."""

    AUTO = "auto"
    """httptools when it is installed (the faster one), else h11."""
    HTTPTOOLS = "httptools"
    """httptools (llhttp, in C)."""
    H11 = "h11"
    """h11 (pure Python)."""


class SqliteSync(StrEnum):
    """SQLite's ``synchronous`` mode under WAL: when a committed write reaches the disk (``flux_dao.store.sqlite``)."""

    NORMAL = "normal"
    """Commits are atomic and survive a crash of the process; a power loss can undo the last few (no fsync each)."""
    FULL = "full"
    """Every answered write survives a power loss too, at one fsync per write."""


class PreparedStatements(StrEnum):
    """Whether asyncpg keeps named prepared statements per connection (``DB_PREPARED_STATEMENTS``).

    A transaction pooler (pgbouncer in ``transaction`` mode, before 1.21) hands each transaction to any server
    connection, so a statement prepared on one is missing on the next. Without named statements asyncpg sends each
    statement unnamed (parse and execute in one exchange), which any pooler passes through.
    """

    AUTO = "auto"
    """Named statements, until the server shows a pooler is in between (a prepared statement missing or already
    there, or a startup setting refused); then off for that worker, and the statement is sent again unnamed."""
    ON = "on"
    """Named statements, parsed once per connection (fastest; connect straight to PostgreSQL or a session pooler)."""
    OFF = "off"
    """Unnamed statements only, and only the startup settings a pooler tracks (behind a transaction pooler)."""


@dataclass(frozen=True)
class DatabaseSettings:
    """How to reach the database."""

    url: str = DEFAULT_DATABASE_URL
    """SQLAlchemy URL: ``postgresql+asyncpg://user@host/db`` or ``sqlite+aiosqlite:///path`` (env ``DATABASE_URL``).
    Normalised on construction (:func:`normalize_database_url`), so the app, migrations and workers use the same."""
    pool_size: int = 10
    """Connections kept open per worker (env ``DB_POOL_SIZE``). Overflow is off: a steady pool avoids connect churn."""
    pool_timeout: float = 10.0
    """Seconds a request waits for a free pooled connection before failing with 503 (env ``DB_POOL_TIMEOUT``)."""
    connect_timeout: float = 5.0
    """Seconds to establish a new database connection (env ``DB_CONNECT_TIMEOUT``)."""
    pool_recycle: int = 3600
    """Seconds after which a pooled connection is replaced (env ``DB_POOL_RECYCLE``)."""
    statement_timeout: float = 5.0
    """Seconds one SQL statement may run on PostgreSQL before it is cancelled and answered with 503
    (env ``DB_STATEMENT_TIMEOUT``; 0 disables). On SQLite a statement running longer is interrupted (503) too."""
    sqlite_synchronous: SqliteSync = SqliteSync.NORMAL
    """SQLite only: ``normal`` or ``full`` (env ``DB_SQLITE_SYNCHRONOUS``); the durability trade is in the README."""
    prepared_statements: PreparedStatements = PreparedStatements.AUTO
    """PostgreSQL only: named prepared statements ``on``, ``off`` (behind pgbouncer's transaction mode) or ``auto``
    (env ``DB_PREPARED_STATEMENTS``)."""
    direct_url: str | None = None
    """PostgreSQL reached without a pooler, for migrations (env ``DATABASE_DIRECT_URL``): their advisory lock is a
    session's, which a transaction pooler does not keep. None: migrations use ``url``."""
    read_url: str | None = None
    """A streaming standby (usually through its own pooler) that plain reads go to (env ``DATABASE_READ_URL``).
    None: every read goes to ``url``."""
    read_wait: float = 1.0
    """Seconds a read carrying a consistency token waits for the standby to replay that far before the primary
    serves it instead (env ``FLUX_DAO_READ_WAIT``)."""
    max_replica_lag: float = 5.0
    """Seconds the standby may trail the primary and still serve reads without a token (env
    ``FLUX_DAO_MAX_REPLICA_LAG``); further behind, or down, it is bypassed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", normalize_database_url(self.url))
        for name, extra in (("DATABASE_DIRECT_URL", self.direct_url), ("DATABASE_READ_URL", self.read_url)):
            if extra is None:
                continue
            normalized = normalize_database_url(extra, name)
            if make_url(normalized).get_backend_name() != "postgresql" or not self.is_postgres:
                msg = f"{name} needs PostgreSQL, both in it and in DATABASE_URL"
                raise ValueError(msg)
            object.__setattr__(self, "direct_url" if name == "DATABASE_DIRECT_URL" else "read_url", normalized)

    @property
    def is_postgres(self) -> bool:
        """Whether ``url`` is PostgreSQL."""
        return make_url(self.url).get_backend_name() == "postgresql"

    def for_migrations(self) -> "DatabaseSettings":
        """These settings pointed at ``direct_url`` (when set): what migrations and their advisory lock use."""
        return replace(self, url=self.direct_url) if self.direct_url else self

    def for_standby(self) -> "DatabaseSettings | None":
        """These settings pointed at the standby, or None without ``read_url``."""
        return replace(self, url=self.read_url, direct_url=None, read_url=None) if self.read_url else None

    @property
    def display_url(self) -> str:
        """The URL with its password hidden, for logs and messages."""
        return redact_url(self.url)

    @property
    def command_timeout(self) -> float | None:
        """Client-side limit on one PostgreSQL statement: ``statement_timeout`` plus a connect timeout's margin.

        The server cancels a slow statement itself (a clear 57014); this limit only bites when no answer can come
        at all (a stalled network, a frozen server), which would otherwise hold the caller forever.
        """
        return self.statement_timeout + self.connect_timeout if self.statement_timeout > 0 else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "DatabaseSettings":
        """Read the ``DATABASE_URL`` and ``DB_*`` variables (each also as ``FLUX_DAO_...``)."""
        name, url = env_setting(env, "DATABASE_URL")
        return cls(
            url=normalize_database_url(url, name) if url else DEFAULT_DATABASE_URL,
            pool_size=_int(env, "DB_POOL_SIZE", cls.pool_size),
            pool_timeout=_float(env, "DB_POOL_TIMEOUT", cls.pool_timeout),
            connect_timeout=_float(env, "DB_CONNECT_TIMEOUT", cls.connect_timeout),
            pool_recycle=_int(env, "DB_POOL_RECYCLE", cls.pool_recycle),
            statement_timeout=_float(env, "DB_STATEMENT_TIMEOUT", cls.statement_timeout),
            sqlite_synchronous=_choice(env, "DB_SQLITE_SYNCHRONOUS", cls.sqlite_synchronous),
            prepared_statements=_choice(env, "DB_PREPARED_STATEMENTS", cls.prepared_statements),
            direct_url=_text(env, "DATABASE_DIRECT_URL"),
            read_url=_text(env, "DATABASE_READ_URL"),
            read_wait=_at_least_zero("FLUX_DAO_READ_WAIT", _float(env, "FLUX_DAO_READ_WAIT", cls.read_wait)),
            max_replica_lag=_duration(env, "FLUX_DAO_MAX_REPLICA_LAG", cls.max_replica_lag),
        )


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    """Database connection settings."""
    manifest_path: Path = field(default_factory=default_manifest_path)
    """The resources manifest (env ``FLUX_DAO_MANIFEST``); its migrations live in ``migrations/`` beside it."""
    api_keys: tuple[str, ...] = ()
    """Accepted ``X-Flux-Service-Key`` values with full access (env ``SERVICE_API_KEYS``). With no keys at all (and no
    keys file) the API is open and ``flux-dao serve`` only binds loopback."""
    keys_file: Path | None = None
    """YAML file of named keys with scopes (env ``FLUX_DAO_KEYS_FILE``); see ``flux_dao.http.keys``."""
    rate_limit: float = 0.0
    """Requests per second each key may make, per worker; 0 turns the limit off (env ``FLUX_DAO_RATE_LIMIT``)."""
    rate_burst: int = 0
    """Requests a key may make at once before the rate applies; 0 means one second's worth
    (env ``FLUX_DAO_RATE_BURST``)."""
    cursor_secret: str = ""
    """Key of the MAC that seals list cursors (env ``FLUX_DAO_CURSOR_SECRET``); empty: derived from the service keys,
    so replicas sharing their keys accept each other's cursors. A changed or forged cursor is refused either way."""
    idempotency_ttl: float = 86400.0
    """Seconds an ``Idempotency-Key``'s answer is kept for its repeats, then purged (env
    ``FLUX_DAO_IDEMPOTENCY_TTL``: seconds, or ``24h``, ``7d``...)."""
    changes_retention: float = 7 * 86400.0
    """Seconds the change feed keeps each change, then purges it (env ``FLUX_DAO_CHANGES_RETENTION``: seconds, or
    ``24h``, ``7d``...); reading after a purged position is 410 ``changes-expired``."""
    cors_origins: tuple[str, ...] = ()
    """Origins browsers may call the API from (env ``FLUX_DAO_CORS_ORIGINS``, comma-separated); empty: CORS off."""
    docs: Exposure = Exposure.AUTO
    """Who may read ``/schema`` (env ``FLUX_DAO_DOCS``: auto, public, key or off)."""
    metrics: Exposure = Exposure.AUTO
    """Who may scrape ``/metrics`` (env ``FLUX_DAO_METRICS``: auto, public, key or off)."""
    shutdown_grace: int = 10
    """Seconds in-flight requests get to finish after SIGTERM (env ``FLUX_DAO_SHUTDOWN_GRACE``)."""
    schema_recheck: float = 60.0
    """Seconds after which ``/ready`` compares the live database with the manifest again; it also does when a worker
    starts and when the migration revision changes; 0: only then (env ``FLUX_DAO_SCHEMA_RECHECK``)."""
    log_format: str = "auto"
    """``json`` (one object per line), ``text``, or ``auto``: JSON for ``flux-dao serve``, plain lines for the other
    commands (env ``FLUX_DAO_LOG_FORMAT``)."""
    max_body: int = 1024 * 1024
    """Largest request body accepted, in bytes; larger bodies are answered 413 (env ``FLUX_DAO_MAX_BODY``)."""
    max_header_bytes: int = 16 * 1024
    """Largest request head (request line plus header fields) in bytes, and so what one connection can make the
    server hold before its request is read: 431 beyond it, 414 when the request line alone is longer
    (env ``FLUX_DAO_MAX_HEADER_BYTES``). 16 KiB, as h11's and Node.js's defaults: flux-dao's own clients send under
    1 KiB and its URIs carry only equality filters."""
    max_headers: int = 100
    """Most header fields one request may carry; 431 beyond (env ``FLUX_DAO_MAX_HEADERS``)."""
    header_timeout: float = 10.0
    """Seconds a client has to send a complete request head, from its first byte (or from connecting); then 408 and
    the connection is closed (env ``FLUX_DAO_HEADER_TIMEOUT``). Idle time between keep-alive requests is uvicorn's
    keep-alive timeout, not this."""
    http_parser: HttpParser = HttpParser.AUTO
    """uvicorn's HTTP/1.1 parser (env ``FLUX_DAO_HTTP_PARSER``: auto, httptools or h11)."""
    api_prefix: str = "/api/v1"
    """Path prefix of every resource route."""
    log_level: str = "INFO"
    """Python logging level name (env ``LOG_LEVEL``)."""

    @property
    def migrations_dir(self) -> Path:
        """The alembic folder belonging to the manifest."""
        return self.manifest_path.parent / "migrations"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read settings from the process environment (or from ``env`` in tests)."""
        env = os.environ if env is None else env
        manifest = _text(env, "FLUX_DAO_MANIFEST")
        return cls(
            database=DatabaseSettings.from_env(env),
            manifest_path=Path(manifest).resolve() if manifest else default_manifest_path(),
            api_keys=parse_api_keys(_text(env, "SERVICE_API_KEYS")),
            keys_file=Path(keys_file).resolve() if (keys_file := _text(env, "FLUX_DAO_KEYS_FILE")) else None,
            rate_limit=_at_least_zero("FLUX_DAO_RATE_LIMIT", _float(env, "FLUX_DAO_RATE_LIMIT", cls.rate_limit)),
            rate_burst=int(_at_least_zero("FLUX_DAO_RATE_BURST", _int(env, "FLUX_DAO_RATE_BURST", cls.rate_burst))),
            cursor_secret=_text(env, "FLUX_DAO_CURSOR_SECRET") or "",
            idempotency_ttl=_duration(env, "FLUX_DAO_IDEMPOTENCY_TTL", cls.idempotency_ttl),
            changes_retention=_duration(env, "FLUX_DAO_CHANGES_RETENTION", cls.changes_retention),
            cors_origins=_list(env, "FLUX_DAO_CORS_ORIGINS"),
            docs=_exposure(env, "FLUX_DAO_DOCS"),
            metrics=_exposure(env, "FLUX_DAO_METRICS"),
            shutdown_grace=_int(env, "FLUX_DAO_SHUTDOWN_GRACE", cls.shutdown_grace),
            schema_recheck=_at_least_zero(
                "FLUX_DAO_SCHEMA_RECHECK", _float(env, "FLUX_DAO_SCHEMA_RECHECK", cls.schema_recheck)
            ),
            max_body=_int(env, "FLUX_DAO_MAX_BODY", cls.max_body),
            max_header_bytes=_int_at_least(env, "FLUX_DAO_MAX_HEADER_BYTES", cls.max_header_bytes, 1024),
            max_headers=_int_at_least(env, "FLUX_DAO_MAX_HEADERS", cls.max_headers, 1),
            header_timeout=_above_zero(
                "FLUX_DAO_HEADER_TIMEOUT", _float(env, "FLUX_DAO_HEADER_TIMEOUT", cls.header_timeout)
            ),
            http_parser=_choice(env, "FLUX_DAO_HTTP_PARSER", HttpParser.AUTO),
            log_level=(_text(env, "LOG_LEVEL") or "INFO").upper(),
            log_format=_log_format(env),
        )

    @property
    def has_keys(self) -> bool:
        """Whether the API asks for a service key (``SERVICE_API_KEYS`` or a keys file is set)."""
        return bool(self.api_keys) or self.keys_file is not None


def _at_least_zero(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        msg = f"{name} must be a finite number >= 0, got {value!r}"
        raise ValueError(msg)
    return value


def _int_at_least(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    value = _int(env, name, default)
    if value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return value


def _above_zero(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        msg = f"{name} must be a finite number > 0, got {value!r}"
        raise ValueError(msg)
    return value


def _log_format(env: Mapping[str, str]) -> str:
    raw = (_text(env, "FLUX_DAO_LOG_FORMAT") or "auto").strip().lower()
    if raw not in {"auto", "json", "text"}:
        msg = f"FLUX_DAO_LOG_FORMAT must be auto, json or text, got {raw!r}"
        raise ValueError(msg)
    return raw
