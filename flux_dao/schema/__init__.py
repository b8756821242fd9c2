"""The manifest's generated schema: SQLAlchemy tables, msgspec structs and the type map between them."""

from flux_dao.schema.resources import Catalog, Resource, Resources, build_resources

__all__ = ("Catalog", "Resource", "Resources", "build_resources")
