"""SQLAlchemy Core tables built from the manifest, on a fresh ``MetaData`` per build.

A fresh ``MetaData`` per call keeps two builds in one process (tests, a second manifest) apart. Enums
are text columns with a CHECK constraint so the schema is the same on PostgreSQL and SQLite, and every default is
also a server default so a migration can add a NOT NULL column to a table that already has rows.
"""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from msgspec import UNSET
from uuid_utils.compat import uuid7

from flux_dao.manifest.names import NAMING_CONVENTION, index_name
from flux_dao.manifest.spec import VERSION, EntitySpec, FieldSpec, Manifest
from flux_dao.schema.system import add_system_tables
from flux_dao.schema.typemap import lookup
from flux_dao.server_defaults import random_uuid

__all__ = ("build_tables", "has_own_index", "utcnow")

_INDEXABLE = frozenset({"eq", "in", "gt", "gte", "lt", "lte", "isnull"})
"""Filters a B-tree index serves (a substring match or a list's contents it does not)."""
_ON_DELETE = {"cascade": "CASCADE", "set null": "SET NULL", "restrict": "RESTRICT"}


def utcnow() -> datetime:
    """The server clock in UTC; the single source of ``created_at`` / ``updated_at``."""
    return datetime.now(UTC)


def build_tables(manifest: Manifest) -> sa.MetaData:
    """One table per entity and the engine's own tables, sharing one new ``MetaData`` (keyed by name)."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    for entity in manifest.entities:
        _build_table(metadata, manifest, entity)
    add_system_tables(metadata)
    return metadata


def _build_table(metadata: sa.MetaData, manifest: Manifest, entity: EntitySpec) -> sa.Table:
    # the service makes time-ordered UUIDv7 ids; the database default serves rows inserted by SQL tools
    columns: list[Any] = [sa.Column("id", GUID(), primary_key=True, default=uuid7, server_default=random_uuid())]
    columns += [
        _column(manifest, name, spec, index=has_own_index(entity, name)) for name, spec in entity.fields.items()
    ]
    columns += [
        sa.Column(
            stamp,
            DateTimeUTC(timezone=True),
            nullable=False,
            default=utcnow,
            server_default=sa.text("CURRENT_TIMESTAMP"),
            index=has_own_index(entity, stamp) or None,
        )
        for stamp in entity.timestamps
    ]
    columns.append(sa.Column(VERSION, sa.Integer(), nullable=False, default=1, server_default=sa.text("1")))
    constraints: list[Any] = [
        sa.CheckConstraint(sa.column(name).in_(spec.values or ()), name=name)
        for name, spec in entity.fields.items()
        if spec.type == "enum"
    ]
    constraints += [
        sa.Index(index_name(entity.name, index.fields), *index.fields, unique=index.unique) for index in entity.indexes
    ]
    # the change triggers (installed by every migration) read which tables the feed records from here
    return sa.Table(entity.name, metadata, *columns, *constraints, info={"changes": entity.changes})


def has_own_index(entity: EntitySpec, name: str) -> bool:
    """Whether column ``name`` gets a single-column index.

    As the manifest says (``index``), else when lists filter on it with an operator an index serves, or it is a
    reference (joins, cascades and RESTRICT checks look it up), unless it is unique or a declared index starts with
    it: those serve the lookups.
    """
    spec = entity.fields.get(name)
    if spec is None:  # a timestamp: indexed when the entity's ``filters`` open operators on it
        wanted, unique = not _INDEXABLE.isdisjoint(entity.filters.get(name, ())), False
    elif spec.index is not None:
        return spec.index
    else:
        seeks = spec.type not in {"json", "list"} and not _INDEXABLE.isdisjoint(spec.operators)
        wanted, unique = seeks or spec.references is not None, spec.unique
    return wanted and not unique and all(index.fields[:1] != (name,) for index in entity.indexes)


def _column(manifest: Manifest, name: str, spec: FieldSpec, *, index: bool) -> Any:
    args: list[Any] = [lookup(spec).sql_type(spec)]
    if spec.references is not None:
        target = manifest.entity(spec.references).name
        args.append(sa.ForeignKey(f"{target}.id", ondelete=_ON_DELETE[spec.on_delete]))
    kwargs: dict[str, Any] = {"nullable": spec.nullable, "unique": spec.unique or None, "index": index or None}
    if spec.default is not UNSET:
        kwargs["default"] = spec.default
        kwargs["server_default"] = _server_default(spec)
    if spec.description:
        kwargs["comment"] = spec.description
    return sa.Column(name, *args, **kwargs)


def _server_default(spec: FieldSpec) -> Any:
    value = spec.default
    if isinstance(value, bool):  # the keywords, not 1/0: both PostgreSQL and SQLite (>= 3.23) read them
        return sa.text("true" if value else "false")
    if isinstance(value, int | float):
        return sa.text(repr(value))
    if isinstance(value, str):
        return value
    return None
