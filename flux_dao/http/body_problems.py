"""Every problem of a JSON body that does not fit its struct, not only the first.

msgspec stops at the first error it meets, in the order the client sent the keys. A client fixing its request one
round trip per field deserves better, so when a body fails, each field is checked again on its own, under the same
strict rules, against the decoded object: fields in the order the struct declares them (missing, wrong type, out of
range), unknown keys after. A number too large for a float or an integer (``1e400``) fails the JSON decoder itself,
which cannot say where; ``decode_locating_out_of_range`` decodes once more to find the keys.

Problems are msgspec's own messages with its ``- at `$.path``` location, so ``flux_dao.http.problems`` turns them into
field names exactly as it does a single msgspec error.
"""

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec

__all__ = ("OUT_OF_RANGE", "BodyFields", "decode_locating_out_of_range", "is_out_of_range", "unlocated")

OUT_OF_RANGE: Final = "number out of range"
_DECODER_OUT_OF_RANGE: Final = ("Number out of range", "Integer value out of range")
_LOCATION: Final = re.compile(r" - at `\$(?P<rest>[^`]*)`$")


class _OutOfRange:
    """Stands in for a number the JSON decoder could not hold."""


_OUT: Final = _OutOfRange()


def is_out_of_range(decoder_message: str) -> bool:
    """Whether the JSON decoder failed on a number too large to hold (its message cannot say where)."""
    return decoder_message.startswith(_DECODER_OUT_OF_RANGE)


def unlocated(decoder_message: str) -> str:
    """The JSON decoder's message without its location, which names no field (``$[...]`` is "some value")."""
    match = _LOCATION.search(decoder_message)
    return decoder_message[: match.start()] if match else decoder_message


def decode_locating_out_of_range(body: bytes) -> tuple[Any, dict[str, list[str]]] | None:
    """The body decoded with each number out of range marked, and the locations of those numbers per top-level key.

    ``None`` when the body is not JSON for another reason too (the decoder's first message then stands).
    """

    def parse_float(text: str) -> Any:
        value = float(text)
        return value if math.isfinite(value) else _OUT

    def parse_int(text: str) -> Any:
        try:
            return int(text)
        except ValueError:  # beyond Python's digit limit for int()
            return _OUT

    def refuse_constant(text: str) -> Any:
        raise ValueError(text)  # NaN and Infinity are not JSON

    try:
        decoded = json.loads(body, parse_float=parse_float, parse_int=parse_int, parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        return None
    located: dict[str, list[str]] = {}
    if isinstance(decoded, dict):
        for key, value in decoded.items():
            if paths := list(_marked_paths(value, f".{key}")):
                located[key] = paths
    return decoded, located


def _marked_paths(value: Any, path: str) -> Iterator[str]:
    if value is _OUT:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _marked_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _marked_paths(item, f"{path}[{index}]")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    annotation: Any
    required: bool


class BodyFields:
    """The fields of one body struct, checked one by one; built once per operation."""

    __slots__ = ("_closed", "_fields", "_names")

    def __init__(self, struct_type: type[msgspec.Struct]) -> None:
        self._fields = tuple(_Field(f.encode_name, f.type, f.required) for f in msgspec.structs.fields(struct_type))
        self._names = frozenset(f.name for f in self._fields)
        self._closed = bool(struct_type.__struct_config__.forbid_unknown_fields)

    def problems(self, raw: dict[str, Any], out_of_range: dict[str, list[str]]) -> list[str]:
        """Each problem of ``raw`` as a located msgspec message: declared fields in order, then unknown keys."""
        found: list[str] = []
        for field in self._fields:
            if field.name in out_of_range:
                found += [f"{OUT_OF_RANGE} - at `${path}`" for path in out_of_range[field.name]]
            elif field.name not in raw:
                if field.required:
                    found.append(f"Object missing required field `{field.name}`")
            elif message := _conversion_problem(raw[field.name], field.annotation):
                found.append(_located(message, field.name))
        if self._closed:
            found += [f"Object contains unknown field `{key}`" for key in raw if key not in self._names]
        return found


def _conversion_problem(value: Any, annotation: Any) -> str | None:
    try:
        msgspec.convert(value, annotation, strict=True)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def _located(message: str, name: str) -> str:
    """The message msgspec gave about a field's value, located as if the whole struct had been converted."""
    match = _LOCATION.search(message)
    if match is None:
        return f"{message} - at `$.{name}`"
    return f"{message[: match.start()]} - at `$.{name}{match['rest']}`"
