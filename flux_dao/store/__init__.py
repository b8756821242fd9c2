"""The store: the database connection, the generic repository that runs every plan, and error translation."""

from flux_dao.store.repository import ListResult, ResourceRepository, atomically

__all__ = ("ListResult", "ResourceRepository", "atomically")
