"""``flux-dao explain``: the database's plan for the query a list request would run.

The request's query string goes through the same parser and compiler as in the service, and the statement runs
under ``EXPLAIN`` (PostgreSQL) or ``EXPLAIN QUERY PLAN`` (SQLite) with the same bound values: what an operator
checks before opening a filter to agents, and what the index tests assert on.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from litestar.datastructures import MultiDict
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import Executable

from flux_dao.config import DatabaseSettings, Settings
from flux_dao.http.cursor import CursorSeal, cursor_secret_from_keys
from flux_dao.http.query_tables import build_resource_queries
from flux_dao.http.request import ListRequest, QueryParser
from flux_dao.manifest import load_manifest
from flux_dao.query.compiler import ResourceStatements
from flux_dao.schema import build_resources
from flux_dao.store.db import Database

__all__ = ("explain_list",)


class _Explain(Executable, ClauseElement):
    """``EXPLAIN <statement>``, compiled with the statement's own bound parameters."""

    inherit_cache = False

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if compiler.dialect.name == "sqlite" else "EXPLAIN "
    sql = prefix + compiler.process(element.statement, **kw)
    compiler._result_columns = []
    return sql


async def explain_list(
    database_url: str,
    resource: str,
    query_string: str,
    *,
    settings: Settings | None = None,
    api_keys: Sequence[str] = (),
) -> str:
    """The plan of ``GET /{resource}?{query_string}`` on the database at ``database_url``, as text.

    A page whose order starts with a nullable column is read in two statements (values, then nulls): their plans
    are separated by a ``--`` line.

    ``settings`` gives the manifest and the cursor secret (default: the project's manifest; the secret derived from
    ``api_keys``, as the service derives it), so a cursor taken from a real answer opens here too.
    """
    settings = settings or Settings(database=DatabaseSettings(url=database_url), api_keys=tuple(api_keys))
    manifest = load_manifest(settings.manifest_path)
    resources = build_resources(manifest)
    entity = next((r for r in resources.items if r.entity.name == resource), None)
    if entity is None:
        msg = f"no resource {resource!r} in {manifest.source}"
        raise ValueError(msg)
    queries = build_resource_queries((r.entity for r in resources.items), resources.embeds)
    seal = CursorSeal(settings.cursor_secret or cursor_secret_from_keys(settings.api_keys))
    parser = QueryParser(queries[resource], listing=True, filtering=True)
    parsed = parser.parse(MultiDict(parse_qsl(query_string, keep_blank_values=True)))
    plan = ListRequest(parser, seal).plan(parsed)
    db = Database(replace(settings.database, url=database_url))
    await db.start()
    try:
        statements = ResourceStatements(entity.entity, entity.table, postgres=db.is_postgres)
        params = statements.params(plan.conditions) | {"limit": plan.limit + 1, "offset": plan.offset}
        plans = []
        async with db.reading() as conn:
            for part in statements.rows(plan):  # a page around a nullable sort key reads values, then nulls
                rows = await conn.all(_Explain(part.statement), params | part.positions)
                plans.append("\n".join(" ".join(str(value) for value in row) for row in rows))
    finally:
        await db.dispose()
    return "\n--\n".join(plans)
