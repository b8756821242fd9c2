"""Settings read once from the environment.

Every knob flux-dao has lives here, as a frozen dataclass per concern with a typed default, so that
``Settings.from_env()`` is the only place that touches ``os.environ`` and tests can build settings directly.
"""

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

__all__ = (
    "DEFAULT_DATABASE_URL",
    "DatabaseSettings",
    "Exposure",
    "Settings",
    "default_manifest_path",
    "parse_api_keys",
)

DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///./flux_dao.db"
_PACKAGE_DIR: Final = Path(__file__).resolve().parent
_CHECKOUT_MANIFEST: Final = _PACKAGE_DIR.parent / "resources.yaml"
_BUNDLED_MANIFEST: Final = _PACKAGE_DIR / "_bundled" / "resources.yaml"


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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        msg = f"{name} must be an integer, got {raw!r}"
        raise ValueError(msg) from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        msg = f"{name} must be a number, got {raw!r}"
        raise ValueError(msg) from exc


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())


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
    raw = (env.get(name) or Exposure.AUTO.value).strip().lower()
    try:
        return Exposure(raw)
    except ValueError as exc:
        allowed = "|".join(e.value for e in Exposure)
        msg = f"{name} must be one of {allowed}, got {raw!r}"
        raise ValueError(msg) from exc


@dataclass(frozen=True)
class DatabaseSettings:
    """How to reach the database."""

    url: str = DEFAULT_DATABASE_URL
    """SQLAlchemy URL: ``postgresql+asyncpg://user@host/db`` or ``sqlite+aiosqlite:///path`` (env ``DATABASE_URL``)."""
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
    (env ``DB_STATEMENT_TIMEOUT``; 0 disables)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "DatabaseSettings":
        """Read the ``DATABASE_URL`` and ``DB_*`` variables."""
        return cls(
            url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            pool_size=_int(env, "DB_POOL_SIZE", cls.pool_size),
            pool_timeout=_float(env, "DB_POOL_TIMEOUT", cls.pool_timeout),
            connect_timeout=_float(env, "DB_CONNECT_TIMEOUT", cls.connect_timeout),
            pool_recycle=_int(env, "DB_POOL_RECYCLE", cls.pool_recycle),
            statement_timeout=_float(env, "DB_STATEMENT_TIMEOUT", cls.statement_timeout),
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
    """YAML file of named keys with scopes (env ``FLUX_DAO_KEYS_FILE``); see ``flux_dao.web.keys``."""
    rate_limit: float = 0.0
    """Requests per second each key may make, per worker; 0 turns the limit off (env ``FLUX_DAO_RATE_LIMIT``)."""
    rate_burst: int = 0
    """Requests a key may make at once before the rate applies; 0 means one second's worth
    (env ``FLUX_DAO_RATE_BURST``)."""
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
    log_format: str = "json"
    """``json`` (one object per line) or ``text`` (env ``FLUX_DAO_LOG_FORMAT``)."""
    max_body: int = 1024 * 1024
    """Largest request body accepted, in bytes; larger bodies are answered 413 (env ``FLUX_DAO_MAX_BODY``)."""
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
        manifest = env.get("FLUX_DAO_MANIFEST")
        return cls(
            database=DatabaseSettings.from_env(env),
            manifest_path=Path(manifest).resolve() if manifest else default_manifest_path(),
            api_keys=parse_api_keys(env.get("SERVICE_API_KEYS")),
            keys_file=Path(keys_file).resolve() if (keys_file := env.get("FLUX_DAO_KEYS_FILE")) else None,
            rate_limit=_at_least_zero("FLUX_DAO_RATE_LIMIT", _float(env, "FLUX_DAO_RATE_LIMIT", cls.rate_limit)),
            rate_burst=int(_at_least_zero("FLUX_DAO_RATE_BURST", _int(env, "FLUX_DAO_RATE_BURST", cls.rate_burst))),
            cors_origins=_list(env, "FLUX_DAO_CORS_ORIGINS"),
            docs=_exposure(env, "FLUX_DAO_DOCS"),
            metrics=_exposure(env, "FLUX_DAO_METRICS"),
            shutdown_grace=_int(env, "FLUX_DAO_SHUTDOWN_GRACE", cls.shutdown_grace),
            schema_recheck=_at_least_zero(
                "FLUX_DAO_SCHEMA_RECHECK", _float(env, "FLUX_DAO_SCHEMA_RECHECK", cls.schema_recheck)
            ),
            max_body=_int(env, "FLUX_DAO_MAX_BODY", cls.max_body),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
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


def _log_format(env: Mapping[str, str]) -> str:
    raw = (env.get("FLUX_DAO_LOG_FORMAT") or "json").strip().lower()
    if raw not in {"json", "text"}:
        msg = f"FLUX_DAO_LOG_FORMAT must be json or text, got {raw!r}"
        raise ValueError(msg)
    return raw
