"""``/health`` (the process lives) and ``/ready`` (the database answers, matches the manifest, is at the head)."""

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from flux_dao.http.problems import problem_response, problem_responses
from flux_dao.http.schema_watch import SchemaWatch
from flux_dao.store.db import Database
from flux_dao.store.drift import drift_message
from flux_dao.store.probes import migrated_revisions, no_answer
from flux_dao.store.standby import Standby, StandbyStatus

__all__ = ("HealthStatus", "health_handlers")


class HealthStatus(msgspec.Struct, omit_defaults=True):
    """``{"status": "ok"}`` or ``{"status": "ready"}`` (with the standby's state when reads may go to one)."""

    status: str
    standby: StandbyStatus | None = None
    """Only with ``DATABASE_READ_URL``: the standby never makes the service unready (the primary serves reads)."""


def health_handlers(
    db: Database, expected_heads: frozenset[str] | None, watch: SchemaWatch, standby: Standby | None = None
) -> list[HTTPRouteHandler]:
    """The two probe routes; ``expected_heads`` is None when the manifest has no migrations folder."""

    @get("/health", operation_id="health", tags=["operations"], summary="Liveness: the process is up.")
    async def health() -> HealthStatus:
        return HealthStatus(status="ok")

    @get(
        "/ready",
        operation_id="ready",
        tags=["operations"],
        summary="Readiness: the database answers, its schema matches the manifest and is at the migration head.",
        responses=problem_responses(503),
    )
    async def ready() -> Response[HealthStatus]:
        current = await migrated_revisions(db)
        if isinstance(current, str):
            return problem_response("not-ready", current, headers={"Retry-After": "1"})
        try:
            differences = await watch.current(current)
        except Exception as exc:  # noqa: BLE001 (the look at the schema failed half-way: the database is going)
            return problem_response("not-ready", no_answer(exc), headers={"Retry-After": "1"})
        if differences:
            detail = drift_message(differences, "the database")
            errors = [{"field": d.subject, "message": d.message} for d in differences]
            return problem_response("schema-drift", detail[:1].upper() + detail[1:], errors=errors)
        reason = _revision_problem(current, expected_heads)
        if reason is not None:
            return problem_response("not-ready", reason, headers={"Retry-After": "1"})
        return Response(HealthStatus(status="ready", standby=standby.status() if standby is not None else None))

    return [health, ready]


def _revision_problem(current: frozenset[str], expected_heads: frozenset[str] | None) -> str | None:
    if expected_heads is None:
        return None
    if current != expected_heads:
        found = ", ".join(sorted(current)) or "none"
        wanted = ", ".join(sorted(expected_heads))
        return f"Schema at revision {found}, not at the migration head {wanted}: run `flux-dao migrate`."
    return None
