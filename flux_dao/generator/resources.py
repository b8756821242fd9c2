"""The generated classes of one manifest, as one immutable value.

``build_resources`` runs once per app (or per migration command): manifest -> models and tables -> structs.
Routers are built later, in ``web``, because they need the database the app connects to.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from flux_dao.generator.models import build_models
from flux_dao.generator.schemas import EntitySchemas, build_schemas
from flux_dao.manifest.spec import EntitySpec, Manifest
from flux_dao.repository.repository import Catalog

__all__ = ("Resource", "Resources", "build_resources")


@dataclass(frozen=True)
class Resource:
    """One entity with everything generated for it."""

    entity: EntitySpec
    model: type[DeclarativeBase]
    table: sa.Table
    schemas: EntitySchemas


@dataclass(frozen=True)
class Resources:
    """Every resource of a manifest, sharing one ``MetaData``."""

    manifest: Manifest
    metadata: sa.MetaData
    items: tuple[Resource, ...]

    @property
    def catalog(self) -> Catalog:
        """Entities and tables by name, for cross-resource lookups in the repository."""
        return Catalog(
            entities={r.entity.name: r.entity for r in self.items},
            tables={r.entity.name: r.table for r in self.items},
        )


def build_resources(manifest: Manifest) -> Resources:
    """Generate models, tables and structs for every entity of ``manifest``."""
    metadata, models = build_models(manifest)
    items = tuple(
        Resource(
            entity=entity,
            model=models[entity.name],
            table=metadata.tables[entity.name],
            schemas=build_schemas(entity),
        )
        for entity in manifest.entities
    )
    return Resources(manifest=manifest, metadata=metadata, items=items)
