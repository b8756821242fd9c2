"""JSON request bodies decoded with their real types: a value of the wrong JSON type is a 422, never coerced.

Litestar converts a decoded body into the handler's ``data`` type in msgspec's lax mode, the mode made for query
strings: ``"5"`` passes as the integer 5, ``"true"`` and ``1`` as booleans, ``"NaN"`` as a float and any number as a
datetime (seconds since 1970, so ``{"scheduled_at": 12345}`` would store 1970-01-01T03:25:45Z). A JSON body carries
real types, and the OpenAPI document promises them, so the write handlers take the body from here instead. The API's
request check (``flux_dao.http.request_checks``) decodes it strictly before Litestar's lax pass, so a refused body
names every problem it has; the handler then takes the struct decoded there.
"""

from typing import Annotated, Any, Final, Self, cast

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.exceptions import SerializationException, ValidationException
from litestar.params import Body

from flux_dao.http.body_problems import BodyFields, decode_locating_out_of_range, is_out_of_range, unlocated

__all__ = (
    "STRICT_BODY_OPT",
    "BodyProblem",
    "StrictBody",
    "StrictList",
    "json_body",
    "strict_body",
    "strict_list",
)

BodyProblem = dict[str, str]
"""One problem, shaped as Litestar's own validation errors are (``message``, ``key``, ``source``)."""

STRICT_BODY_OPT: Final = "flux_dao_strict_body"
"""The handler ``opt`` key holding its ``StrictBody``, for the API's request check."""

_DECODED: Final = "flux_dao.strict_body"  # scope key of the struct the request check decoded
_NO_BODY: Final = "a JSON object body is required"


class StrictBody:
    """The request body as one struct type under msgspec's strict rules.

    One lax conversion is kept: a float with no fractional part (``5.0``) is the integer it names, as JSON Schema's
    ``integer`` says. Problems leave as Litestar's own body validation errors do (``key`` ``data``, ``source``
    ``body``), so each names its field exactly as it would for any other invalid value.
    """

    __slots__ = ("_fields", "_integers", "struct_type")

    def __init__(self, struct_type: type[msgspec.Struct]) -> None:
        self.struct_type = struct_type
        self._integers = _integer_fields(struct_type)
        self._fields = BodyFields(struct_type)

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """Shared, not copied: Litestar deep-copies handler ``opt`` as it registers routers, and this never changes."""
        return self

    async def __call__(self, request: Request[Any, Any, Any]) -> Any:
        """The body as the struct: decoded by the request check already, or here (raising every problem)."""
        scope = cast("dict[str, Any]", request.scope)
        if _DECODED not in scope and (problems := await self.problems(request)):
            raise ValidationException(detail="; ".join(p["message"] for p in problems), extra=problems)
        return scope[_DECODED]

    async def problems(self, request: Request[Any, Any, Any]) -> list[BodyProblem]:
        """Every problem of the request's body; none means the struct is decoded and kept for the handler."""
        if not await request.body():
            return [{"message": _NO_BODY, "source": "body"}]
        try:
            raw = await request.json()  # decoded once, cached for Litestar's own pass
        except SerializationException as exc:
            located = decode_locating_out_of_range(await request.body()) if is_out_of_range(str(exc)) else None
            if located is None or not isinstance(located[0], dict):
                return [{"message": unlocated(str(exc)), "source": "body"}]
            return self._every_problem(*located, first=str(exc))
        try:
            value = msgspec.convert(self._lax_integers(raw), self.struct_type, strict=True)
        except msgspec.ValidationError as exc:
            return self._every_problem(raw, {}, first=str(exc))
        cast("dict[str, Any]", request.scope)[_DECODED] = value
        return []

    def convert(self, raw: Any, at: str) -> tuple[Any, list[BodyProblem]]:
        """An already decoded JSON value as the struct, or every problem with its location under ``at``."""
        try:
            return msgspec.convert(self._lax_integers(raw), self.struct_type, strict=True), []
        except msgspec.ValidationError as exc:
            problems = self._every_problem(raw, {}, first=str(exc))
        for problem in problems:
            message = problem["message"]
            head, sep, path = message.rpartition(" - at `$")
            problem["message"] = f"{head} - at `${at}{path}" if sep else f"{message} - at `${at}`"
        return None, problems

    def _lax_integers(self, raw: Any) -> Any:
        return _whole_floats_as_ints(raw, self._integers) if self._integers and isinstance(raw, dict) else raw

    def _every_problem(self, raw: Any, out_of_range: dict[str, list[str]], first: str) -> list[BodyProblem]:
        """Each field checked on its own; ``first`` (the error that stopped the decoder) when that finds nothing."""
        found = self._fields.problems(self._lax_integers(raw), out_of_range) if isinstance(raw, dict) else []
        return [_data_problem(message) for message in found or [first]]


def _data_problem(message: str) -> BodyProblem:
    return {"message": message, "key": "data", "source": "body"}


class StrictList(StrictBody):
    """A JSON array of 1 to ``max_items`` bodies of one struct type, each under the strict rules, named by index."""

    __slots__ = ("_decoder", "max_items")

    def __init__(self, struct_type: type[msgspec.Struct], max_items: int) -> None:
        super().__init__(struct_type)
        self.max_items = max_items
        bounded = Annotated[list[struct_type], msgspec.Meta(min_length=1, max_length=max_items)]  # type: ignore[valid-type]
        self._decoder = msgspec.json.Decoder(bounded)

    async def problems(self, request: Request[Any, Any, Any]) -> list[BodyProblem]:
        """Every problem of every element (``[5].title``); none means the list is decoded and kept for the handler.

        A body that fits is decoded straight into the structs, in one pass; only one that does not (or that needs
        the whole-float leniency) is decoded as plain JSON and checked element by element, to name every problem.
        """
        body = await request.body()
        if not body:
            return [{"message": "a JSON array body is required", "source": "body"}]
        try:
            cast("dict[str, Any]", request.scope)[_DECODED] = self._decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            return []
        try:
            raw = await request.json()
        except SerializationException as exc:
            return [{"message": unlocated(str(exc)), "source": "body"}]
        if not isinstance(raw, list) or not 0 < len(raw) <= self.max_items:
            return [{"message": f"must be a JSON array of 1 to {self.max_items} objects", "source": "body"}]
        values, problems = [], []
        for index, item in enumerate(raw):
            value, found = self.convert(item, f"[{index}]")
            values.append(value)
            problems += found
        if problems:
            return problems
        cast("dict[str, Any]", request.scope)[_DECODED] = values
        return []


def strict_list(struct_type: type[msgspec.Struct], max_items: int) -> StrictList:
    """A reader of the request body as a list of ``struct_type``, each under msgspec's strict rules."""
    return StrictList(struct_type, max_items)


def strict_body(struct_type: type[msgspec.Struct]) -> StrictBody:
    """A reader of the request body as ``struct_type`` under msgspec's strict rules."""
    return StrictBody(struct_type)


def _integer_fields(struct_type: Any) -> frozenset[str]:
    """The fields of ``struct_type`` that take an integer (alone or in a union with null)."""

    def takes_int(info: msgspec.inspect.Type) -> bool:
        if isinstance(info, msgspec.inspect.Metadata):
            return takes_int(info.type)
        if isinstance(info, msgspec.inspect.UnionType):
            return any(takes_int(t) for t in info.types)
        return isinstance(info, msgspec.inspect.IntType)

    fields = msgspec.inspect.type_info(struct_type).fields  # type: ignore[attr-defined]
    return frozenset(f.encode_name for f in fields if takes_int(f.type))


def _whole_floats_as_ints(raw: dict[str, Any], integers: frozenset[str]) -> dict[str, Any]:
    whole = {
        name: int(value)
        for name in integers
        if type(value := raw.get(name)) is float and value.is_integer()  # inf and NaN are not
    }
    return {**raw, **whole} if whole else raw


def json_body(struct_type: Any) -> Any:
    """The ``data`` annotation of a handler taking ``struct_type`` as its JSON body.

    A struct that refuses unknown fields is documented with ``additionalProperties: false``, so the OpenAPI document
    says what the service does: an unknown key is a 422 naming it (generated clients and fuzzers then know too).
    """
    config = getattr(struct_type, "__struct_config__", None)  # a list of structs: its items say it themselves
    closed = config is not None and bool(config.forbid_unknown_fields)
    extra = {"additionalProperties": False} if closed else None
    return Annotated[struct_type, Body(media_type=RequestEncodingType.JSON, schema_extra=extra)]
