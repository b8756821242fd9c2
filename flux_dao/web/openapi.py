"""The OpenAPI document: 3.1, named components, the service-key scheme, and problem+json errors only."""

from dataclasses import dataclass
from typing import Final

from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, Operation, SecurityScheme

from flux_dao.web.auth import SERVICE_KEY_HEADER

__all__ = ("SECURITY_SCHEME", "FluxOperation", "openapi_config")

SECURITY_SCHEME: Final = "ServiceKey"


@dataclass
class FluxOperation(Operation):
    """An operation without Litestar's automatic 400 response.

    flux-dao answers every validation failure with a 422 problem (declared per operation); the automatic 400 entry
    would document a status the service never sends, with a schema generated clients cannot parse.
    """

    def __post_init__(self) -> None:
        if self.responses:
            self.responses.pop("400", None)


def openapi_config(version: str) -> OpenAPIConfig:
    """Served at ``/schema`` (browsable) and ``/schema/openapi.json``."""
    return OpenAPIConfig(
        title="flux-dao",
        version=version,
        description="Canonical data for Flux's agents: users, goals, tasks, conversations, patterns and the "
        "notification log. Every /api/v1 route needs the `X-Flux-Service-Key` header; errors are RFC 9457 "
        "problem documents.",
        path="/schema",
        use_handler_docstrings=False,
        create_examples=False,
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="apiKey",
                    name=SERVICE_KEY_HEADER,
                    security_scheme_in="header",
                    description="One of the keys configured in SERVICE_API_KEYS.",
                )
            }
        ),
    )
