"""msgspec Structs that mirror ``resources.yaml``.

Decoding into these gives the syntactic checks (unknown keys, wrong types) for free; ``checks.py`` adds the semantic
ones. Every struct is frozen: after loading, the manifest is a value that the generator only reads.
"""

from typing import Any, Final, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

__all__ = (
    "OPERATIONS",
    "OPERATORS",
    "VERSION",
    "BulkUpdateQuery",
    "Concurrency",
    "EntitySpec",
    "FieldSpec",
    "FieldType",
    "GroupedCountQuery",
    "IndexSpec",
    "ListShape",
    "ListSpec",
    "Manifest",
    "OnDelete",
    "Operation",
    "Operator",
    "QuerySpec",
    "RatioSpec",
    "TimeRangeQuery",
    "Timestamp",
)

FieldType: TypeAlias = Literal["string", "integer", "float", "boolean", "datetime", "uuid", "json", "enum", "list"]
ItemType: TypeAlias = Literal["string", "uuid"]
OnDelete: TypeAlias = Literal["cascade", "set null", "restrict"]
Operation: TypeAlias = Literal["list", "get", "create", "update", "delete"]
Concurrency: TypeAlias = Literal["optional", "required"]
"""Whether a PATCH or DELETE must name the version it changes (``If-Match``): ``required`` answers 428 without it."""
Operator: TypeAlias = Literal[
    "eq", "ne", "in", "gt", "gte", "lt", "lte", "isnull", "contains", "icontains", "startswith"
]
"""A list filter: ``field=v`` (``eq``) or ``field__<operator>=v``."""
Timestamp: TypeAlias = Literal["created_at", "updated_at"]
VERSION: Final = "version"
"""The server-set row version: 1 on create, one more on every change; a row's ETag."""
OPERATIONS: Final[tuple[Operation, ...]] = ("list", "get", "create", "update", "delete")
OPERATORS: Final[tuple[Operator, ...]] = (
    "eq",
    "ne",
    "in",
    "gt",
    "gte",
    "lt",
    "lte",
    "isnull",
    "contains",
    "icontains",
    "startswith",
)


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base: immutable, keyword-only, and strict about unknown keys so typos fail loudly."""


class FieldSpec(_Spec, frozen=True):
    """One column of an entity, as the manifest declares it."""

    type: FieldType
    """Value type; ``enum`` needs ``values``, ``list`` needs ``items``."""
    values: tuple[str, ...] | None = None
    """Allowed values of an ``enum`` (stored as text with a CHECK constraint)."""
    items: ItemType | None = None
    """Element type of a ``list``."""
    required: bool = False
    """Must be given on create; NOT NULL."""
    default: Any | UnsetType = UNSET
    """Value used when a create omits the field; NOT NULL."""
    unique: bool = False
    index: bool | None = None
    """Give the column its own index. Unset: indexed when it is a ``filter`` or a ``references`` field, unless it is
    ``unique`` or first in a declared index (those already serve lookups on it); ``false`` turns that off."""
    filter: bool | tuple[Operator, ...] = False
    """The list route's filters on this field: ``true`` is equality alone, a list picks operators
    (``[eq, in, gte, lt]``)."""
    sort: bool | None = None
    """Whether ``sort=`` takes this field; unset: every scalar field (not json or list)."""
    immutable: bool = False
    """Accepted on create only; a PATCH naming it is rejected."""
    min_length: int | None = None
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None
    references: str | None = None
    """Name of the entity whose ``id`` this field holds (a foreign key)."""
    on_delete: OnDelete = "restrict"
    """What deleting the referenced row does to this row."""
    description: str | None = None

    @property
    def operators(self) -> tuple[Operator, ...]:
        """The filter operators this field takes, in manifest order."""
        if self.filter is True:
            return ("eq",)
        return self.filter or ()

    @property
    def nullable(self) -> bool:
        """Fields that are neither required nor defaulted accept and store null."""
        return not self.required and self.default is UNSET


class IndexSpec(_Spec, frozen=True):
    """A composite index."""

    fields: tuple[str, ...]
    unique: bool = False


class RatioSpec(_Spec, frozen=True):
    """A ratio reported by a grouped count: count(group == value) / total."""

    name: str
    value: str
    digits: int = 4


class TimeRangeQuery(_Spec, frozen=True, tag="time_range", tag_field="kind"):
    """Rows of one scope whose ``field`` lies in [start, end], both inclusive, ascending, as a plain array."""

    field: str
    scope: tuple[str, ...] = ()
    start: str = "start"
    end: str = "end"
    operation_id: str | None = None
    description: str | None = None


class GroupedCountQuery(_Spec, frozen=True, tag="grouped_count", tag_field="kind"):
    """Counts of one scope's rows per ``group_by`` value, for rows whose ``time_field`` lies in [start, end]."""

    group_by: str
    time_field: str
    scope: tuple[str, ...] = ()
    start: str = "start"
    end: str = "end"
    total: str = "total"
    counts: str = "counts"
    ratio: RatioSpec | None = None
    operation_id: str | None = None
    description: str | None = None


class BulkUpdateQuery(_Spec, frozen=True, tag="bulk_update", tag_field="kind"):
    """Set one field to one value on every listed id, in one statement; unknown ids are ignored."""

    field: str
    ids: str = "ids"
    value: str = "value"
    max_items: int = 1000
    result: str = "updated_count"
    operation_id: str | None = None
    description: str | None = None


QuerySpec: TypeAlias = TimeRangeQuery | GroupedCountQuery | BulkUpdateQuery
ListShape: TypeAlias = Literal["page", "array"]
"""A list's answer: a page object (items, total, cursor...) or a plain JSON array of the rows."""


class ListSpec(_Spec, frozen=True):
    """How the list route answers: its shape, the filters it requires, its default order."""

    shape: ListShape = "page"
    """``array``: every matching row as a plain JSON array (``limit`` may bound it; no paging fields, no cursor)."""
    require: tuple[str, ...] = ()
    """Fields whose equality filter every list request must send (``?conversation_id=...``): one scope at a time."""
    order_by: tuple[str, ...] = ()
    """The list's default order, instead of the resource's ``order_by``."""


class EntitySpec(_Spec, frozen=True):
    """One resource: its table, its fields and what the API offers on it."""

    fields: dict[str, FieldSpec]
    name: str = ""
    """Filled in by the loader from the manifest key."""
    singular: str | None = None
    """Singular noun; default: the name without a trailing ``s``. Names classes and operation ids."""
    path: str | None = None
    """URL segment; default: the name with ``_`` turned into ``-``."""
    description: str | None = None
    timestamps: tuple[Timestamp, ...] = ("created_at",)
    """Server-set columns: ``created_at`` at creation, ``updated_at`` at creation and on every change. The loader
    always adds ``updated_at``: every row carries its last change and its ``version``."""
    order_by: tuple[str, ...] = ()
    """Default list order, e.g. ``created_at desc`` or ``sent_at desc nulls last``; ``id`` breaks ties."""
    operations: tuple[Operation, ...] = OPERATIONS
    indexes: tuple[IndexSpec, ...] = ()
    queries: dict[str, QuerySpec] = msgspec.field(default_factory=dict)
    filters: dict[str, tuple[Operator, ...]] = msgspec.field(default_factory=dict)
    """Filters on the columns the service owns (``id``, the timestamps and ``version``), e.g.
    ``{created_at: [gte, lt]}``."""
    concurrency: Concurrency = "optional"
    updates: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    """Field groups, each its own partial update: ``{voice: [voice_session_id, ended_at]}`` serves
    ``PATCH /{path}/{id}/voice``, which takes those fields only."""
    listing: ListSpec = msgspec.field(default_factory=ListSpec, name="list")
    """The list route's shape (``list:`` in the manifest)."""
    changes: bool = True
    """Whether the change feed records this resource's writes (``changes: false`` leaves it out)."""

    @property
    def read_columns(self) -> tuple[str, ...]:
        """Every column, in the order responses list them: ``id``, the fields, the timestamps, then ``version``."""
        return ("id", *self.fields, *self.timestamps, VERSION)


class Manifest(_Spec, frozen=True):
    """The whole manifest: entities in declaration order."""

    entities: tuple[EntitySpec, ...]
    source: str = "resources.yaml"
    """Where it was read from; quoted in every error message."""

    def entity(self, name: str) -> EntitySpec:
        """The entity called ``name``."""
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(name)
