"""The line format: one row as the API's read shape, in canonical JSON, and back through the API's own structs.

Export: a row read from its table becomes the resource's Read struct (what ``GET /{resource}/{id}`` answers), and
is encoded with sorted keys and no whitespace, so the same data gives the same bytes on every backend and a
checksum over the lines compares databases. Import: a line decodes into a struct that *is* the resource's Create
struct (subclassed, so the same types, bounds, enums and unknown-key refusal, as strictly as the API reads a body)
plus what the server normally sets and an import keeps: ``id``, the timestamps and ``version``. A line that does not
fit raises ``FieldError`` naming the field (``row`` for the line as a whole).
"""

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec

from flux_dao.errors import FieldError, InvalidInputError
from flux_dao.manifest.spec import VERSION
from flux_dao.schema.resources import Resource
from flux_dao.store.repository import as_utc
from flux_dao.types import Row

__all__ = ("ROW_FIELD", "TOO_DEEP", "Envelope", "RowCodec", "printable", "wrap")

ROW_FIELD: Final = "row"
"""The name problems give a line as a whole (not JSON, not an object)."""
TOO_DEEP: Final = "nested too deeply (over about a thousand levels)"

_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_AT: Final = re.compile(r"^(?P<message>.*) - at `\$(?:\.(?P<field>[^.\[`]+))?[^`]*`$", re.DOTALL)
_NAMED: Final = re.compile(r"^Object (?P<message>missing required field|contains unknown field) `(?P<field>[^`]+)`$")
_STREAM_PREFIX: Final = b'{"resource":'


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A line of the single-stream form: the resource it belongs to and the row, decoded later by that resource."""

    resource: str
    row: msgspec.Raw


_ENVELOPE: Final = msgspec.json.Decoder(Envelope)


def wrap(resource: str, lines: bytes) -> bytes:
    """Bare row lines as stream lines, ``{"resource":...,"row":...}`` (keys sorted, as the canonical form has them)."""
    head = _STREAM_PREFIX + msgspec.json.encode(resource) + b',"row":'
    return b"".join(head + line + b"}\n" for line in lines.splitlines())


class RowCodec:
    """One resource's rows to lines and lines to rows (column name -> value, ready for the table)."""

    def __init__(self, resource: Resource) -> None:
        entity = resource.entity
        self.name = entity.name
        self.columns: tuple[str, ...] = entity.read_columns
        self._read = resource.schemas.read
        self._floats = tuple(i for i, name in enumerate(self.columns) if _field_type(resource, name) == "float")
        self._enums = tuple(resource.schemas.enums)
        self._datetimes = tuple(
            name for name in self.columns if name in entity.timestamps or _field_type(resource, name) == "datetime"
        )
        self._float_fields = tuple(self.columns[i] for i in self._floats)
        self._strings = tuple(name for name in entity.fields if _field_type(resource, name) == "string")
        self._documents = tuple(name for name in entity.fields if _field_type(resource, name) in {"json", "list"})
        kept: list[tuple[str, Any]] = [("id", UUID)]
        kept += [(stamp, datetime) for stamp in entity.timestamps]
        kept.append((VERSION, Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]))
        struct = msgspec.defstruct(
            f"{resource.schemas.create.__name__}Import",
            kept,
            bases=(resource.schemas.create,),
            kw_only=True,
            forbid_unknown_fields=True,
        )
        self._decoder = msgspec.json.Decoder(struct)
        self._names: tuple[str, ...] = struct.__struct_fields__

    def encode(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """Rows read from the table (columns in ``columns`` order) as canonical lines, each ending in a newline."""
        if self._floats:
            rows = [self._float_row(row) for row in rows]
        read = self._read
        return _ENCODER.encode_lines([read(*row) for row in rows])

    def _float_row(self, row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for position in self._floats:  # SQLite may hand back a whole REAL as an int
            if values[position] is not None:
                values[position] = float(values[position])
        return values

    def decode(self, line: bytes) -> Row:
        """One bare row line, validated, as column name -> value in the form the table stores.

        Raises:
            FieldError: the line is not JSON, not an object, or a field does not fit (the message names it).
        """
        try:
            decoded = self._decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise _located(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise FieldError(ROW_FIELD, f"not a JSON object ({exc})") from None
        except RecursionError:  # as the API answers such a body: invalid input, not a crash
            raise FieldError(ROW_FIELD, TOO_DEEP) from None
        values = dict(zip(self._names, msgspec.structs.astuple(decoded), strict=True))
        for name in self._enums:
            if values[name] is not None:
                values[name] = values[name].value
        self._normalise(values)
        return values

    def _normalise(self, values: Row) -> None:
        """What the repository does to a request's values before a write: UTC datetimes, finite floats, no NUL."""
        for name in self._datetimes:
            value = values[name]
            if value is not None:
                try:
                    values[name] = as_utc(value, name)
                except InvalidInputError as exc:
                    raise FieldError(name, exc.errors[0].message) from None
                if values[name] in _INFINITE:
                    raise FieldError(name, "must lie strictly between the years 1 and 9999")
        for name in self._float_fields:
            value = values[name]
            if value is not None and not math.isfinite(value):
                raise FieldError(name, "must be a finite number")
        for name in self._strings:
            value = values[name]
            if value is not None and "\x00" in value:
                raise FieldError(name, "must not contain NUL (U+0000) characters")
        for name in self._documents:  # PostgreSQL's jsonb refuses \u0000 too: the same answer on both backends
            if values[name] is not None and _holds_nul(values[name]):
                raise FieldError(name, "must not contain NUL (U+0000) characters")

    @staticmethod
    def envelope(line: bytes) -> Envelope:
        """A stream line's resource and raw row.

        Raises:
            FieldError: the line is not ``{"resource": ..., "row": {...}}``.
        """
        try:
            return _ENVELOPE.decode(line)
        except msgspec.ValidationError as exc:
            raise _located(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise FieldError(ROW_FIELD, f"not a JSON object ({exc})") from None
        except RecursionError:
            raise FieldError(ROW_FIELD, TOO_DEEP) from None


_INFINITE: Final = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _located(message: str) -> FieldError:
    """The field and message of msgspec's error: ``Expected `int`, got `str` - at `$.duration_minutes` ``.

    A field name comes from the input: its control characters are shown escaped, so a report stays one line.
    """
    if match := _NAMED.match(message):
        return FieldError(printable(match["field"]), match["message"])
    if match := _AT.match(message):
        return FieldError(printable(match["field"] or ROW_FIELD), printable(match["message"]))
    return FieldError(ROW_FIELD, printable(message))


def printable(text: str) -> str:
    """``text`` on one line: control characters (newlines included) written as Python escapes."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def _field_type(resource: Resource, name: str) -> str | None:
    spec = resource.entity.fields.get(name)
    return None if spec is None else spec.type
