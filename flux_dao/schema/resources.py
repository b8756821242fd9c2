"""The generated schema of one manifest, as one immutable value.

``build_resources`` runs once per app (or per migration command): manifest -> tables -> structs. Routers are built
later, in ``flux_dao.http``, because they need the database the app connects to.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from flux_dao.manifest.relations import Embed, embeds
from flux_dao.manifest.spec import EntitySpec, Manifest
from flux_dao.schema.structs import EntitySchemas, build_schemas
from flux_dao.schema.tables import build_tables

__all__ = ("Catalog", "Resource", "Resources", "build_resources")


@dataclass(frozen=True)
class Catalog:
    """Every entity and table of one build: what queries and error diagnosis need to look across resources."""

    entities: Mapping[str, EntitySpec]
    tables: Mapping[str, sa.Table]
    embeds: Mapping[str, Mapping[str, Embed]]
    """Each entity's embeds by name."""


@dataclass(frozen=True)
class Resource:
    """One entity with everything generated for it."""

    entity: EntitySpec
    table: sa.Table
    schemas: EntitySchemas


@dataclass(frozen=True)
class Resources:
    """Every resource of a manifest, sharing one ``MetaData``."""

    manifest: Manifest
    metadata: sa.MetaData
    items: tuple[Resource, ...]
    embeds: Mapping[str, Mapping[str, Embed]]

    @property
    def catalog(self) -> Catalog:
        """Entities and tables by name, for cross-resource lookups in the repository."""
        return Catalog(
            entities={r.entity.name: r.entity for r in self.items},
            tables={r.entity.name: r.table for r in self.items},
            embeds=self.embeds,
        )


def build_resources(manifest: Manifest) -> Resources:
    """Generate tables and structs for every entity of ``manifest``."""
    metadata = build_tables(manifest)
    relations = {entity.name: embeds(manifest, entity) for entity in manifest.entities}
    schemas = build_schemas(manifest, relations)
    items = tuple(
        Resource(entity=entity, table=metadata.tables[entity.name], schemas=schemas[entity.name])
        for entity in manifest.entities
    )
    return Resources(manifest=manifest, metadata=metadata, items=items, embeds=relations)
