"""Strict requests: an API operation refuses what it would otherwise silently ignore, and names every problem at once.

Litestar reads only the query parameters a handler declares and keeps the last of repeated values, so
``?sort=-scheduled_at`` or ``?status=pending&status=missed`` would be answered as if unsent. ``StrictRequestsPlugin``
learns each handler's declared query parameters once, as Litestar registers the route (from the kwargs model it
built from the signature, so nothing can drift), and its ``before_request`` hook on the API router refuses an
undeclared name or a repeated single-valued one with a 422 naming it. The same hook decodes a JSON body strictly
(``StrictBody``) before Litestar's lax pass, so every problem of a body is listed. When anything is refused, the hook
also runs Litestar's own parameter validation, so a 422 lists the request's problems together: declared parameters
(path and query), then unknown or repeated query parameters, then the body.

Only the hot path's cost is a lookup in the handler's ``opt`` and, with a query string, one set comparison.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from litestar import Request
from litestar.datastructures import MultiDict
from litestar.enums import HttpMethod, ParamType
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from flux_dao.http.bodies import STRICT_BODY_OPT, StrictBody
from flux_dao.http.request import OWN_QUERY_OPT, QueryParser
from flux_dao.http.signatures import query_arg

if TYPE_CHECKING:
    from litestar._kwargs import KwargsModel

__all__ = ("REPEATED", "StrictRequestsPlugin")

REPEATED: Final = "given more than once"
_MISSING: Final = "required query parameter missing"
_EXPECTED: Final = "flux_dao_expected_input"  # handler opt key

Problem = dict[str, str]


@dataclass(frozen=True, slots=True)
class _ExpectedInput:
    """What one operation takes besides its path."""

    query: frozenset[str]
    required: tuple[str, ...]
    repeatable: frozenset[str]
    """Query parameters declared as lists."""
    unknown_message: str
    body: StrictBody | None
    own_query: QueryParser | None
    """The parser of the handler's query string, when it reads the query language (``flux_dao.http.request``)."""
    parameters: "KwargsModel"
    """Litestar's model of the handler's parameters, for validating the declared ones on the error path."""


class StrictRequestsPlugin(ReceiveRoutePlugin):
    """Learns each route's declared input; ``before_request`` (set on the API router) enforces it."""

    def receive_route(self, route: BaseRoute) -> None:
        """Precompute, per handler, the query names it declares and its strict body reader."""
        if not isinstance(route, HTTPRoute):
            return
        for handler, parameters in route.route_handler_map.values():
            if HttpMethod.OPTIONS in handler.http_methods or "query" in parameters.expected_reserved_kwargs:
                continue  # OPTIONS answers any URL; a handler taking the whole ``query`` takes any name
            handler.opt[_EXPECTED] = _expected_input(handler, parameters)

    @staticmethod
    async def before_request(request: Request[Any, Any, Any]) -> None:
        """Refuse unknown, repeated or missing query parameters and invalid bodies, naming every problem."""
        expected: _ExpectedInput | None = request.route_handler.opt.get(_EXPECTED)
        if expected is None:
            return
        if expected.own_query is not None:  # a read route: the query language's parser names its problems
            query = request.query_params
            problems = [_problem(name, _MISSING) for name in expected.required if name not in query]
            problems += [_problem(e.field, e.message) for e in expected.own_query.check(request)]
        elif request.scope["query_string"] or expected.required:
            problems = _query_problems(request.query_params, expected)
        else:
            problems = []
        if expected.body is not None:
            problems += await expected.body.problems(request)
        if problems:
            problems = [*_declared_problems(request, expected), *problems]
            raise ValidationException(detail="; ".join(p["message"] for p in problems), extra=problems)


def _expected_input(handler: HTTPRouteHandler, parameters: "KwargsModel") -> _ExpectedInput:
    order = list(handler.parsed_fn_signature.parameters)
    declared = sorted(
        (p for p in parameters.expected_query_params if p.param_type is ParamType.QUERY),
        key=lambda p: order.index(p.field_name) if p.field_name in order else len(order),  # dependencies' last
    )
    names = [p.field_alias for p in declared]
    body = handler.opt.get(STRICT_BODY_OPT)
    return _ExpectedInput(
        query=frozenset(names),
        required=tuple(p.field_alias for p in declared if p.is_required),
        repeatable=frozenset(p.field_alias for p in declared if p.is_sequence),
        unknown_message="unknown query parameter; "
        + (f"known: {', '.join(names)}" if names else "this operation takes none"),
        body=body if isinstance(body, StrictBody) else None,
        own_query=parser if isinstance(parser := handler.opt.get(OWN_QUERY_OPT), QueryParser) else None,
        parameters=parameters,
    )


def _query_problems(query: MultiDict[Any], expected: _ExpectedInput) -> list[Problem]:
    """Missing required parameters, then undeclared and repeated single-valued ones in the order they appear."""
    distinct = query.keys()  # each name once, in order; ``len(query)`` counts every value
    missing = [name for name in expected.required if name not in query]
    if len(distinct) == len(query) and expected.query.issuperset(distinct) and not missing:
        return []
    problems = [_problem(name, _MISSING) for name in missing]
    for name in distinct:
        if not name:
            continue  # ``?=x``: nothing a client could mean by it, and nothing to name
        if name not in expected.query:
            problems.append(_problem(name, expected.unknown_message))
        elif name not in expected.repeatable and len(query.getall(name)) > 1:
            problems.append(_problem(name, REPEATED))
    return problems


def _problem(name: str, message: str) -> Problem:
    # keyed as Litestar keys a declared parameter's error, so flux_dao.http.problems names it the same way
    return {"message": message, "key": query_arg(name), "source": "query"}


def _declared_problems(request: Request[Any, Any, Any], expected: _ExpectedInput) -> list[Problem]:
    """What Litestar finds wrong with the path and declared query parameters the request did send.

    Litestar would report these next, had the hook not refused the request; its own pass stops at the first missing
    parameter, so the values sent are validated here through the handler's signature model, alone.
    """
    query = request.query_params
    sent = {
        p.field_name: query.getall(p.field_alias) if p.is_sequence else query.getall(p.field_alias)[-1]
        for p in expected.parameters.expected_query_params
        if p.field_alias in query
    }
    sent |= {
        p.field_name: request.path_params[p.field_alias]
        for p in expected.parameters.expected_path_params
        if p.field_alias in request.path_params
    }
    try:
        request.route_handler.signature_model.parse_values_from_connection_kwargs(connection=request, kwargs=sent)
    except ValidationException as exc:
        found = exc.extra if isinstance(exc.extra, list) else []
        return [p for p in found if isinstance(p, dict) and str(p.get("key", "")).split(".")[0] in sent]
    except HTTPException:  # only dependencies failed: they are not validated here
        return []
    return []
