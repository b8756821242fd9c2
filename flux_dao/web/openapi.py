"""The OpenAPI document: 3.1, named components, the service-key scheme, and problem+json errors only."""

from dataclasses import dataclass, replace
from typing import Any, Final

from litestar import Router
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, OpenAPIResponse, OpenAPIType, Operation, Parameter, Schema, SecurityScheme

from flux_dao.web.auth import SERVICE_KEY_HEADER

__all__ = ("SECURITY_SCHEME", "FluxOperation", "openapi_config")

SECURITY_SCHEME: Final = "ServiceKey"


_ACCESS_RESPONSES: Final = {
    "403": "The service key lacks the scope this operation needs (named in `scope`).",
    "429": "Over the key's request rate (FLUX_DAO_RATE_LIMIT); retry after the Retry-After delay.",
}


@dataclass
class FluxOperation(Operation):
    """An operation without Litestar's automatic 400 response, and with the access problems of the key check.

    flux-dao answers every validation failure with a 422 problem (declared per operation); the automatic 400 entry
    would document a status the service never sends, with a schema generated clients cannot parse. Every operation
    behind the key check (it declares 401) can also answer 403 (scope) and 429 (rate limit), with the same problem
    body as its 401. An optional query parameter is documented without the ``null`` alternative Litestar derives
    from ``X | None``: it is left out, never sent as null (``?goal_id=null`` is a 422), and a generated client that
    accepted None would drop it, silently turning a filter off.
    """

    def __post_init__(self) -> None:
        if self.parameters:
            self.parameters = [_not_null(p) if isinstance(p, Parameter) else p for p in self.parameters]
        if not self.responses:
            return
        self.responses.pop("400", None)
        unauthorized = self.responses.get("401")
        if isinstance(unauthorized, OpenAPIResponse):
            for status, description in _ACCESS_RESPONSES.items():
                self.responses.setdefault(status, replace(unauthorized, description=description))


def _not_null(parameter: Parameter) -> Parameter:
    schema = parameter.schema
    if parameter.required or not isinstance(schema, Schema) or not schema.one_of:
        return parameter
    kept = [s for s in schema.one_of if not (isinstance(s, Schema) and s.type == OpenAPIType.NULL)]
    if len(kept) != 1 or len(kept) == len(schema.one_of):
        return parameter
    only = kept[0]
    if isinstance(only, Schema):
        only = replace(only, description=schema.description)
    return replace(parameter, schema=only)


def openapi_config(version: str, middleware: list[Any] | None = None) -> OpenAPIConfig:
    """Served at ``/schema`` (browsable) and ``/schema/openapi.json``, behind ``middleware`` (the docs exposure)."""
    return OpenAPIConfig(
        title="flux-dao",
        version=version,
        openapi_router=Router("/schema", route_handlers=[], middleware=middleware or [], include_in_schema=False),
        description="Canonical data for Flux's agents: users, goals, tasks, conversations, patterns and the "
        "notification log. Every /api/v1 route needs the `X-Flux-Service-Key` header; errors are RFC 9457 "
        "problem documents.",
        use_handler_docstrings=False,
        create_examples=False,
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="apiKey",
                    name=SERVICE_KEY_HEADER,
                    security_scheme_in="header",
                    description="A key from SERVICE_API_KEYS (full access) or FLUX_DAO_KEYS_FILE (scoped).",
                )
            }
        ),
    )
