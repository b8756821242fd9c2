"""The change feed's statements, built once per database kind over the change-log tables.

Every statement takes named parameters only, so each is compiled once and cached like the repository's.
"""

from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from flux_dao.schema.system import CHANGES_PURGED_TABLE, CHANGES_TABLE

__all__ = ("ChangeStatements",)

_PURGE_ROW: Final = 1
"""The one row of the purge mark."""


class ChangeStatements:
    """Reading a page after a position, the feed's head, and purging old changes."""

    def __init__(self, metadata: sa.MetaData, *, postgres: bool) -> None:
        changes = metadata.tables[CHANGES_TABLE]
        purged = metadata.tables[CHANGES_PURGED_TABLE]
        c = changes.c
        row = sa.cast(c.row, sa.Text) if postgres else c.row  # PostgreSQL: the text, decoded straight into structs
        if postgres:
            listed = c.resource == sa.any_(sa.bindparam("resources", type_=postgresql.ARRAY(sa.String())))
        else:
            listed = c.resource.in_(sa.bindparam("resources", expanding=True, type_=sa.String()))
        self.page = (
            sa.select(c.position, c.resource, c.op, c.row_id, c.committed_at, row)
            .where(c.position > sa.bindparam("after"), c.position <= sa.bindparam("upto"), listed)
            .order_by(c.position)
            .limit(sa.bindparam("limit"))
        )
        """Changes of ``resources`` with positions in (``after``, ``upto``], oldest first, at most ``limit``."""
        self.purged_through = sa.select(purged.c.through).where(purged.c.id == _PURGE_ROW)
        """The newest position purged (no row: nothing was)."""
        self.oldest = sa.select(sa.func.min(c.position))
        """The oldest position kept (NULL when none is)."""
        if postgres:
            self.high: sa.TextClause | sa.Select[tuple[int]] = sa.text(
                f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {CHANGES_TABLE}_position_seq"  # noqa: S608 (a constant name)
            )
            """The last position handed to a writer, committed or not (sequences are outside transactions)."""
            self.snapshot: sa.TextClause | None = sa.text(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, pg_current_xact_id()::text"
            )
            """The oldest transaction still running, then a transaction id of the reader's own (``xid8`` as text).

            Run after ``high``: the id is newer than every one handed out before ``high`` was read. (A snapshot's
            ``xmax`` is not: it is the newest *ended* transaction's id plus one, and a running transaction that
            took a newer id appears neither in it nor in ``xmin``.)"""
            self.running: sa.TextClause | None = sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            """The oldest transaction still running (``xid8`` as text)."""
        else:
            self.high = sa.select(sa.func.coalesce(sa.func.max(c.position), 0))
            """The last position written: SQLite has one writer at a time, so every one below it is committed."""
            self.snapshot = self.running = None
        newest = sa.select(sa.func.max(c.position)).scalar_subquery()
        oldest = (
            sa.select(c.position, c.committed_at)
            .where(c.position <= sa.bindparam("upto"), c.position < newest)
            .order_by(c.position)
            .limit(sa.bindparam("batch"))
            .subquery()
        )
        self.purge_upto = sa.select(sa.func.max(oldest.c.position)).where(
            oldest.c.committed_at < sa.bindparam("cutoff")
        )
        """Among the ``batch`` oldest settled changes (at most ``upto``, and never the newest of all: on SQLite the
        next position follows it), the newest older than ``cutoff``: what one round of a purge removes up to. Read
        by position along the primary key: the change log has no index on ``committed_at`` (its writers would pay
        for it), and positions follow time closely."""
        self.purge = sa.delete(changes).where(c.position <= sa.bindparam("through"))
        insert = (postgresql.insert if postgres else sqlite.insert)(purged).values(
            id=_PURGE_ROW, through=sa.bindparam("through")
        )
        greatest = sa.func.greatest if postgres else sa.func.max  # SQLite's two-argument max() is the greater value
        self.mark_purged = insert.on_conflict_do_update(
            index_elements=[purged.c.id], set_={"through": greatest(purged.c.through, insert.excluded.through)}
        )
