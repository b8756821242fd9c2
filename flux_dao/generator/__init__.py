"""Manifest -> SQLAlchemy models, msgspec structs and Litestar routers."""

from flux_dao.generator.resources import Resource, Resources, build_resources

__all__ = ("Resource", "Resources", "build_resources")
