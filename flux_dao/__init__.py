"""flux-dao: a schema-driven data-access service. ``create_app`` builds the Litestar app from ``resources.yaml``."""

from typing import TYPE_CHECKING, Any

__all__ = ("__version__", "create_app")
__version__ = "1.0.0"

if TYPE_CHECKING:
    from flux_dao.http.app import create_app


def __getattr__(name: str) -> Any:
    """Import the app factory lazily, so ``flux-dao check`` and migrations never load Litestar."""
    if name == "create_app":
        from flux_dao.http.app import create_app  # noqa: PLC0415

        return create_app
    raise AttributeError(name)
