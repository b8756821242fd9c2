"""The one start-up summary ``flux-dao serve`` logs: what is served, from where, to whom."""

from typing import Any

from flux_dao import __version__
from flux_dao.config import Exposure, Settings

__all__ = ("auth_mode", "base_url", "startup_summary")


def auth_mode(settings: Settings) -> str:
    """``open`` (no keys), ``keys`` (SERVICE_API_KEYS, full access) or ``scoped`` (a keys file names scopes)."""
    if settings.keys_file is not None:
        return "scoped"
    return "keys" if settings.api_keys else "open"


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def startup_summary(
    settings: Settings, resources: int, *, host: str, port: int, workers: int, migrations: str
) -> dict[str, Any]:
    """Every fact an operator checks first, as the fields of one log line; the database password is hidden.

    ``migrations`` says what start-up did to the schema (``database upgraded from a to b``, ``already at head (b)``).
    """
    base = base_url(host, port)
    return {
        "version": __version__,
        "manifest": str(settings.manifest_path),
        "resources": resources,
        "database": settings.database.display_url,
        "migrations": migrations,
        "bind": base,
        "workers": workers,
        "auth": auth_mode(settings),
        "docs": "off" if settings.docs is Exposure.OFF else f"{base}/docs",
        "metrics": "off" if settings.metrics is Exposure.OFF else f"{base}/metrics",
    }
