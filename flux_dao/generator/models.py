"""SQLAlchemy models built from the manifest, on a fresh registry per build.

A fresh ``registry``/``MetaData`` per call keeps two builds in one process (tests, a second manifest) apart. Enums
are text columns with a CHECK constraint so the schema is the same on PostgreSQL and SQLite, and every default is
also a server default so a migration can add a NOT NULL column to a table that already has rows.
"""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from msgspec import UNSET
from sqlalchemy.orm import DeclarativeBase, mapped_column, registry
from uuid_utils.compat import uuid7

from flux_dao.generator.names import GENERATED_MODULE, NAMING_CONVENTION, class_name, index_name
from flux_dao.generator.typemap import lookup
from flux_dao.manifest.spec import EntitySpec, FieldSpec, Manifest
from flux_dao.server_defaults import random_uuid

__all__ = ("build_models", "has_own_index", "utcnow")

_ON_DELETE = {"cascade": "CASCADE", "set null": "SET NULL", "restrict": "RESTRICT"}


def utcnow() -> datetime:
    """The server clock in UTC; the single source of ``created_at`` / ``updated_at``."""
    return datetime.now(UTC)


def build_models(manifest: Manifest) -> tuple[sa.MetaData, dict[str, type[DeclarativeBase]]]:
    """One declarative model per entity, keyed by entity name, sharing one new ``MetaData``."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    base: type[DeclarativeBase] = type(
        "Base",
        (DeclarativeBase,),
        {"registry": registry(metadata=metadata), "metadata": metadata, "__abstract__": True},
    )
    models = {entity.name: _build_model(base, manifest, entity) for entity in manifest.entities}
    base.registry.configure()
    return metadata, models


def _build_model(base: type[DeclarativeBase], manifest: Manifest, entity: EntitySpec) -> type[DeclarativeBase]:
    namespace: dict[str, Any] = {
        "__tablename__": entity.name,
        "__module__": GENERATED_MODULE,
        "__doc__": entity.description,
        # the service makes time-ordered UUIDv7 ids; the database default serves rows inserted by SQL tools
        "id": mapped_column("id", GUID(), primary_key=True, default=uuid7, server_default=random_uuid()),
    }
    for name, spec in entity.fields.items():
        namespace[name] = _column(manifest, name, spec, index=has_own_index(entity, name))
    for stamp in entity.timestamps:
        namespace[stamp] = mapped_column(
            stamp,
            DateTimeUTC(timezone=True),
            nullable=False,
            default=utcnow,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        )
    table_args: list[Any] = [
        sa.CheckConstraint(sa.column(name).in_(spec.values or ()), name=name)
        for name, spec in entity.fields.items()
        if spec.type == "enum"
    ]
    table_args += [
        sa.Index(index_name(entity.name, index.fields), *index.fields, unique=index.unique) for index in entity.indexes
    ]
    namespace["__table_args__"] = tuple(table_args)
    return type(class_name(entity), (base,), namespace)


def has_own_index(entity: EntitySpec, name: str) -> bool:
    """Whether field ``name`` gets a single-column index.

    As the manifest says (``index``), else when lists filter on it or it is a reference (joins, cascades and
    RESTRICT checks look it up), unless it is unique or a declared index starts with it: those serve the lookups.
    """
    spec = entity.fields[name]
    if spec.index is not None:
        return spec.index
    if not spec.filter and spec.references is None:
        return False
    return not spec.unique and all(index.fields[:1] != (name,) for index in entity.indexes)


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
    return mapped_column(name, *args, **kwargs)


def _server_default(spec: FieldSpec) -> Any:
    value = spec.default
    if isinstance(value, bool):  # the keywords, not 1/0: both PostgreSQL and SQLite (>= 3.23) read them
        return sa.text("true" if value else "false")
    if isinstance(value, int | float):
        return sa.text(repr(value))
    if isinstance(value, str):
        return value
    return None
