"""Settings read once from the environment.

Every knob flux-dao has lives here, as a frozen dataclass per concern with a typed default, so that
``Settings.from_env()`` is the only place that touches ``os.environ`` and tests can build settings directly.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ("DEFAULT_DATABASE_URL", "DatabaseSettings", "Settings", "default_manifest_path", "parse_api_keys")

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
    """Accepted ``X-Flux-Service-Key`` values (env ``SERVICE_API_KEYS``). Empty means open: loopback only."""
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
            max_body=_int(env, "FLUX_DAO_MAX_BODY", cls.max_body),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
        )
