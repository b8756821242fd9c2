"""What ``/ready`` asks the database: does it answer, and at which migration revision is it."""

import sqlalchemy as sa

from flux_dao.store.db import Database

__all__ = ("migrated_revisions",)

_PING = sa.text("SELECT 1")
_VERSION_QUERY = sa.text("SELECT version_num FROM alembic_version")


async def migrated_revisions(db: Database) -> frozenset[str] | str:
    """The database's migration revision(s), or why they cannot be read."""
    try:
        async with db.reading() as conn:
            await conn.scalar(_PING, {})
            try:
                return frozenset(row[0] for row in await conn.all(_VERSION_QUERY, {}))
            except Exception:  # noqa: BLE001 (any failure here means the version table is missing)
                return "The database schema is not migrated (no alembic_version table); run `flux-dao migrate`."
    except Exception as exc:  # noqa: BLE001 (every failure to answer is "not ready", with its kind)
        return no_answer(exc)


def no_answer(exc: BaseException) -> str:
    """Why the database is not ready, when asking it failed with ``exc``."""
    return f"The database does not answer: {type(exc).__name__}."
