"""``flux-dao adopt``: read the database, plan, check the rows, and apply the plan in one transaction.

Everything happens on one connection to ``DATABASE_DIRECT_URL`` (or ``DATABASE_URL``) under the migrations'
advisory lock, inside one transaction: PostgreSQL's DDL is transactional, so an adoption is applied whole (the
revision's statements, the stamp at the migration head, the change triggers) or not at all. Before committing it
compares the result with the manifest the way ``serve`` will; any difference left rolls everything back.
"""

import asyncio
import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from flux_dao.config import Settings, redact_url
from flux_dao.errors import FluxDaoError
from flux_dao.store.adopt.catalog import read_catalog
from flux_dao.store.adopt.plan import Guard, Kind, Plan, Step, plan_adoption
from flux_dao.store.adopt.revision import load_revision, render_revision
from flux_dao.store.change_triggers import sync_change_triggers
from flux_dao.store.db import connect_once
from flux_dao.store.migrations import (
    ADVISORY_LOCK_KEY,
    alembic_config,
    database_drift,
    manifest_metadata,
    read_schema,
)

__all__ = ("Adoption", "AdoptionError", "Blocked", "State", "adopt")

SAMPLE: int = 5
"""How many ids (and distinct values) a refusal shows of the rows that block a step."""


_SINGULAR = {"have": "has", "exist": "exists", "share": "shares", "point": "points", "are": "is"}
"""The verbs a guard's problem starts with, for one row."""


class AdoptionError(FluxDaoError):
    """The adoption could not be applied; nothing was changed."""


class State(enum.StrEnum):
    """How an adoption ended."""

    PLANNED = "planned"
    """``--dry-run``: the plan was printed, nothing written."""
    APPLIED = "applied"
    REFUSED = "refused"
    """Rows would lose data: the report says which; nothing was changed."""
    ALREADY = "already"
    """The database is already under flux-dao's migrations."""
    EMPTY = "empty"
    """None of the manifest's tables exist: ``flux-dao migrate`` creates them."""


@dataclass(frozen=True)
class Blocked:
    """A step existing rows block: how many, a few of their ids, and their most common offending values."""

    step: Step
    count: int
    ids: tuple[str, ...]
    values: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        guard = self.step.guard
        if guard is None or not self.count:  # refused whatever the rows: the words say why
            return f"{self.step.subject}: {self.step.words}"
        problem = guard.problem
        if self.count == 1:  # "3 rows have ...", "1 row has ..."
            verb, _, rest = problem.partition(" ")
            problem = f"{_SINGULAR.get(verb, verb)} {rest}"
        text = f"{self.step.subject}: {self.step.words}. {self.count} row{'s' if self.count != 1 else ''} {problem}"
        if self.values:
            text += " (" + ", ".join(f"{value!r}: {count}" for value, count in self.values) + ")"
        return text + (f"; e.g. id {', '.join(self.ids)}" if self.ids else "")


@dataclass(frozen=True)
class Adoption:
    """What ``adopt`` found and did."""

    database: str
    state: State
    heads: tuple[str, ...] = ()
    plan: Plan = field(default_factory=lambda: Plan(()))
    blocked: tuple[Blocked, ...] = ()
    revision_path: Path | None = None
    current: tuple[str, ...] = ()
    """The database's own revision(s) when it is already under migrations."""


def adopt(settings: Settings, *, apply: bool, revision_dir: Path | None = None) -> Adoption:
    """Plan the adoption of the configured PostgreSQL database and, with ``apply``, carry it out."""
    database = settings.database.for_migrations()
    if not database.is_postgres:
        msg = (
            "adopt works on PostgreSQL databases; move a SQLite database's rows with "
            "`flux-dao export` and `flux-dao import` instead"
        )
        raise AdoptionError(msg)
    scripts = ScriptDirectory.from_config(alembic_config(settings))
    heads = tuple(sorted(scripts.get_heads()))
    metadata = manifest_metadata(settings)
    folder = revision_dir or settings.migrations_dir / "adoptions"
    name = redact_url(database.url)

    def run(connection: Connection) -> Adoption:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        current = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
        known = {script.revision for script in scripts.walk_revisions()}
        foreign = [revision for revision in current if revision not in known]
        if foreign:
            msg = (
                f"the database's alembic_version table holds {', '.join(foreign)}, which is none of flux-dao's "
                "revisions: it is another tool's migration history. Rename that table (ALTER TABLE alembic_version "
                "RENAME TO <tool>_alembic_version), point that tool at the new name, then run adopt again"
            )
            raise AdoptionError(msg)
        if current:
            return Adoption(name, State.ALREADY, heads, current=current)
        live = read_catalog(connection, metadata.tables)
        resources = {t.name for t in metadata.sorted_tables if not t.name.startswith("flux_dao_")}
        if not resources & set(live.tables):
            return Adoption(name, State.EMPTY, heads)
        plan = plan_adoption(live, metadata)
        blocked = tuple(found for step in plan.steps if (found := _blocked(connection, step)) is not None)
        if blocked:
            return Adoption(name, State.REFUSED, heads, plan, blocked)
        if not apply:
            return Adoption(name, State.PLANNED, heads, plan)
        path = _write_revision(folder, plan, database=connection.engine.url.database or "database", heads=heads)
        try:
            _apply(connection, path, scripts, metadata)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Adoption(name, State.APPLIED, heads, plan, revision_path=path)

    async def main() -> Adoption:
        async with connect_once(database) as conn:
            try:
                adoption = await conn.run_sync(run)
            except sa.exc.DBAPIError as exc:
                await conn.rollback()
                statement = " ".join(str(exc.statement or "").split())
                statement = statement if len(statement) <= 160 else statement[:157] + "..."
                msg = f"the adoption failed and nothing was changed: {exc.orig} (running: {statement})"
                raise AdoptionError(msg) from exc
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
            return adoption

    return asyncio.run(main())


def _blocked(connection: Connection, step: Step) -> Blocked | None:
    """What refuses ``step``: the rows its guard finds, or the step itself when adopt cannot carry it out."""
    guard: Guard | None = step.guard
    cannot = step.kind is Kind.BLOCKED or (step.kind is Kind.LOSES_DATA and not step.sql)
    if guard is None:
        return Blocked(step, 0, ()) if cannot else None
    table = sa.table(guard.table, sa.column("id"))
    condition = sa.text(guard.condition.replace(":", "\\:"))  # a literal's colon is no bind parameter
    count = connection.scalar(sa.select(sa.func.count()).select_from(table).where(condition)) or 0
    if not count:
        return Blocked(step, 0, ()) if cannot else None
    ids: list[Any] = []
    if guard.ids:
        ids = list(
            connection.scalars(
                sa.select(sa.cast(table.c.id, sa.Text)).where(condition).order_by(table.c.id).limit(SAMPLE)
            )
        )
    values: tuple[tuple[str, int], ...] = ()
    if guard.column is not None:
        column = sa.cast(sa.column(guard.column), sa.Text)
        rows = connection.execute(
            sa.select(column, sa.func.count())
            .select_from(table)
            .where(condition)
            .group_by(column)
            .order_by(sa.func.count().desc(), column)
            .limit(SAMPLE)
        ).all()
        values = tuple((str(value), int(n)) for value, n in rows)
    return Blocked(step, int(count), tuple(dict.fromkeys(str(i) for i in ids if i is not None)), values)


def _write_revision(folder: Path, plan: Plan, *, database: str, heads: tuple[str, ...]) -> Path:
    revision = secrets.token_hex(6)
    path = folder / f"{revision}_adopt_{''.join(c if c.isalnum() else '_' for c in database)}.py"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(render_revision(plan, revision=revision, database=database, heads=heads), encoding="utf-8")
    except OSError as exc:
        msg = f"cannot write the adoption revision to {folder} ({exc.strerror}): choose a folder with --revision-dir"
        raise AdoptionError(msg) from exc
    return path


def _apply(connection: Connection, path: Path, scripts: ScriptDirectory, metadata: sa.MetaData) -> None:
    """Run the revision, stamp the head, install the change triggers, and check the result like ``serve`` does."""
    upgrade: Callable[[], Any] = load_revision(path).upgrade
    context = MigrationContext.configure(connection)
    with Operations.context(context):
        upgrade()
    context.stamp(scripts, "head")
    sync_change_triggers(connection, metadata)
    left = database_drift(read_schema(connection, metadata).diffs)
    if left:
        listed = "; ".join(str(difference) for difference in left)
        msg = f"after the adoption the database would still differ from the manifest ({listed}); nothing was changed"
        raise AdoptionError(msg)
