"""``flux-dao``: a thin click shell over the library. Each command is a few lines calling one function."""

import atexit
import ipaddress
import json
import logging
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from flux_dao import __version__
from flux_dao.config import Exposure, Settings
from flux_dao.errors import DatabaseUnreachableError, ManifestError
from flux_dao.logs import FIELDS_ATTR, configure_logging, logging_config
from flux_dao.manifest.spec import Manifest

if TYPE_CHECKING:
    from flux_dao.store.drift import Difference
    from flux_dao.store.migrations import Move

__all__ = ("main",)

logger = logging.getLogger("flux_dao")


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


class FluxDaoGroup(click.Group):
    """The command group: an unreachable database or an alembic refusal ends any command with one line."""

    def invoke(self, ctx: click.Context) -> object:
        from alembic.util.exc import CommandError  # noqa: PLC0415 (alembic loads only for the commands that use it)

        try:
            return super().invoke(ctx)
        except DatabaseUnreachableError as exc:
            raise click.ClickException(str(exc)) from None
        except CommandError as exc:  # a revision the database names and the migrations lack, and the like
            msg = f"migrations: {exc}"
            raise click.ClickException(msg) from None


def log_format_for(configured: str, command: str | None) -> str:
    """The log format a command uses: the configured one, or for ``auto`` JSON for ``serve``, plain for the rest.

    A service's logs are read by machines; every other command's output is read by a person.
    """
    if configured != "auto":
        return configured
    return "json" if command == "serve" else "cli"


@click.group(cls=FluxDaoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FLUX_DAO_MANIFEST",
    show_envvar=True,
    help="Manifest to serve (default ./resources.yaml, else the bundled one). "
    "Its migrations live in the migrations/ folder beside it.",
)
@click.version_option(package_name="flux-dao")
@click.pass_context
def main(ctx: click.Context, manifest: Path | None) -> None:
    """flux-dao: the schema-driven data service for Flux's agents.

    Settings come from the environment, each as FLUX_DAO_<NAME> (FLUX_DAO_DATABASE_URL, FLUX_DAO_SERVICE_API_KEYS,
    FLUX_DAO_LOG_LEVEL...); the older bare names (DATABASE_URL...) still work, the prefixed one wins.

    \b
    Examples:
        flux-dao serve                 # SQLite ./flux_dao.db on 127.0.0.1:8001
        flux-dao --manifest my.yaml check
    """
    try:
        settings = Settings.from_env()
        settings = replace(settings, log_format=log_format_for(settings.log_format, ctx.invoked_subcommand))
        configure_logging(settings.log_level, settings.log_format)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if manifest is not None:
        settings = replace(settings, manifest_path=manifest.resolve())
    ctx.obj = settings


_QUEUED_HANDLER: Final = "flux_dao.ops.log_writer.QueuedStderrHandler"
"""``serve``'s log handler (in the server and in each worker): lines are formatted and written off the request path."""
_WORKER_HEALTHCHECK_SECONDS: Final = 30
"""How long uvicorn waits for a worker to answer its health ping before it kills and restarts it."""
_ENV: Final[dict[str, Any]] = {"show_envvar": True, "show_default": True}
"""Options that also read an environment variable, and say which in ``--help``."""


@main.command(
    epilog="Every other setting is an environment variable too: FLUX_DAO_DATABASE_URL, FLUX_DAO_SERVICE_API_KEYS, "
    "FLUX_DAO_KEYS_FILE, FLUX_DAO_DB_POOL_SIZE, FLUX_DAO_LOG_LEVEL, FLUX_DAO_LOG_FORMAT... (README: Configuration)."
)
@click.option("--host", default="127.0.0.1", envvar="FLUX_DAO_HOST", **_ENV, help="Address to bind.")
@click.option(
    "--port", default=8001, type=click.IntRange(0, 65535), envvar="FLUX_DAO_PORT", **_ENV, help="Port to bind."
)
@click.option(
    "--workers", default=1, type=click.IntRange(min=1), envvar="FLUX_DAO_WORKERS", **_ENV, help="Worker processes."
)
@click.option(
    "--no-migrate",
    is_flag=True,
    envvar="FLUX_DAO_NO_MIGRATE",
    show_envvar=True,
    help="Do not apply pending migrations before serving.",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int, no_migrate: bool) -> None:
    """Apply pending migrations, then serve the API with uvicorn.

    Without SERVICE_API_KEYS the API is open, so it only starts on a loopback address.

    \b
    Examples:
        flux-dao serve --port 8002
        FLUX_DAO_SERVICE_API_KEYS=k1,k2 FLUX_DAO_DATABASE_URL=postgres://postgres@127.0.0.1/flux \\
            flux-dao serve --host 0.0.0.0
    """
    import signal  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415 (only serve needs the server)

    from flux_dao.http.observability import share_metrics  # noqa: PLC0415
    from flux_dao.http.protocols import http_protocol  # noqa: PLC0415
    from flux_dao.ops.startup import startup_summary  # noqa: PLC0415
    from flux_dao.store.migrations import live_drift, upgrade  # noqa: PLC0415

    settings = _settings(ctx)
    if not settings.has_keys and not is_loopback(host):
        msg = (
            f"refusing to serve on {host} without service keys: set SERVICE_API_KEYS "
            "(a JSON list or comma-separated keys), or bind to 127.0.0.1"
        )
        raise click.ClickException(msg)
    manifest = _load_or_exit(settings)
    _check_keys(settings, manifest)
    _refuse_drift(_head_drift(settings), "its migrations")
    migrations = "skipped (--no-migrate)"
    if not no_migrate:  # with --no-migrate, /ready says whether the database matches (schema-drift)
        _refuse_unadopted(settings)
        migrations = _moved(upgrade(settings), "head", "upgraded")
        _refuse_drift(live_drift(settings), "the database")
    if not settings.has_keys:
        logger.warning("no SERVICE_API_KEYS configured: the API is open on loopback only (%s)", host)
    os.environ["FLUX_DAO_MANIFEST"] = str(settings.manifest_path)  # workers rebuild settings from the environment
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler it found: with the
    # default one the process would die of it (exit -15) after a clean shutdown. Exit 0 instead.
    signal.signal(signal.SIGTERM, _exit_after_shutdown)
    share_metrics(workers)  # several workers: one metrics folder, summed on every scrape; removed at exit
    summary = startup_summary(
        settings, len(manifest.entities), host=host, port=port, workers=workers, migrations=migrations
    )
    logger.info("starting flux-dao %s", __version__, extra={FIELDS_ATTR: summary})
    uvicorn.run(
        "flux_dao.http.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # flux-dao writes its own request log (flux_dao.access)
        log_config=logging_config(settings.log_level, settings.log_format, _QUEUED_HANDLER),
        loop="uvloop",
        http=http_protocol(settings.http_parser),  # uvicorn's own, with bounded request heads
        proxy_headers=False,  # flux-dao is reached directly by its agents; no proxy headers to trust
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=settings.shutdown_grace,  # SIGTERM: stop accepting, finish in-flight requests
        # a worker answers uvicorn's health ping only once it has imported and built the app: on a busy machine (a
        # throttled container) that takes more than uvicorn's 5 s, and it would be killed and restarted in a loop
        timeout_worker_healthcheck=_WORKER_HEALTHCHECK_SECONDS,
    )


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
def migrate(ctx: click.Context, revision: str) -> None:
    """Upgrade the database to the migration head; say from which revision to which.

    At the head, it also checks that the database matches the manifest (exit 1 naming the differences).

    \b
    Example:
        FLUX_DAO_DATABASE_URL=postgres://postgres@127.0.0.1/flux flux-dao migrate
    """
    from flux_dao.store.migrations import live_drift, upgrade  # noqa: PLC0415

    settings = _settings(ctx)
    _load_or_exit(settings)
    _require_migrations(settings)
    _refuse_unadopted(settings)
    click.echo(_moved(upgrade(settings, revision), revision, "upgraded"))
    if revision == "head":
        _refuse_drift(live_drift(settings), "the database")


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the plan (and any rows that block it); change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; adopt never prompts.")
@click.option(
    "--revision-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the adoption revision (default: adoptions/ in the migrations folder).",
)
@click.pass_context
def adopt(ctx: click.Context, dry_run: bool, yes: bool, revision_dir: Path | None) -> None:
    """Bring an existing PostgreSQL database (made by another tool) under flux-dao's migrations, in place.

    Compares the database with the manifest and prints the differences: safe to change, changes data
    representation, would lose data. Then it writes an alembic revision that closes them (with explicit data
    conversions), runs it and stamps the migration head, all in one transaction. It never drops a column, a table or
    a row: where data would be lost it changes nothing and exits 1, with counts and sample ids.

    \b
    Examples:
        FLUX_DAO_DATABASE_URL=postgresql://postgres@127.0.0.1/flux flux-dao adopt --dry-run
        FLUX_DAO_DATABASE_URL=postgresql://postgres@127.0.0.1/flux flux-dao adopt
    """
    from flux_dao.ops.adopt_report import report_lines  # noqa: PLC0415
    from flux_dao.store.adopt import AdoptionError, State  # noqa: PLC0415
    from flux_dao.store.adopt import adopt as run_adopt  # noqa: PLC0415

    settings = _settings(ctx)
    _load_or_exit(settings)
    _require_migrations(settings)
    try:
        adoption = run_adopt(settings, apply=not dry_run, revision_dir=revision_dir)
    except AdoptionError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in report_lines(adoption):
        click.echo(line)
    if adoption.state is State.REFUSED or (
        adoption.state is State.ALREADY and set(adoption.current) != set(adoption.heads)
    ):
        sys.exit(1)


@main.command()
@click.option("-m", "--message", required=True, help="Revision message.")
@click.pass_context
def makemigrations(ctx: click.Context, message: str) -> None:
    """Autogenerate a migration from the manifest (creates migrations/ beside it if needed).

    Compares the manifest with its migrations on a scratch SQLite database; DATABASE_URL is not touched.

    \b
    Example:
        flux-dao makemigrations -m "add messages"
    """
    from flux_dao.store.migrations import make_migration  # noqa: PLC0415

    settings = _settings(ctx)
    _load_or_exit(settings)
    path = make_migration(settings, message)
    click.echo(f"created {path}" if path else "no changes: the migrations already match the manifest")


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the manifest and compare it with its migrations; exit 1 with every problem listed.

    The migrations run on a scratch SQLite database (DATABASE_URL is not touched); a field, table or index the
    manifest has and the migrations lack (or the reverse) is named, with the command that fixes it.

    \b
    Example:
        flux-dao --manifest my.yaml check
    """
    settings = _settings(ctx)
    manifest = _load_or_exit(settings)
    names = ", ".join(e.name for e in manifest.entities)
    click.echo(f"{manifest.source}: ok ({len(manifest.entities)} resources: {names})")
    _refuse_drift(_head_drift(settings), "its migrations")
    click.echo(f"{settings.migrations_dir}: the migrations match the manifest")


@main.group()
def migrations() -> None:
    """See and move the database's migration revision (the database of DATABASE_URL).

    \b
    Example:
        flux-dao migrations current
    """


@migrations.command()
@click.pass_context
def current(ctx: click.Context) -> None:
    """Print the database's revision and whether it is the head.

    Example:
        DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/flux flux-dao migrations current
    """
    from flux_dao.store.migrations import current_revisions, migration_heads  # noqa: PLC0415

    settings = _settings(ctx)
    revisions = current_revisions(settings)
    heads = migration_heads(settings.migrations_dir) or frozenset()
    if not revisions:
        click.echo("base (no migration applied): run `flux-dao migrate`")
    elif set(revisions) == heads:
        click.echo(f"{_revisions(revisions)} (head)")
    else:
        click.echo(f"{_revisions(revisions)} (not the head {_revisions(heads)}: run `flux-dao migrate`)")


@migrations.command()
@click.pass_context
def history(ctx: click.Context) -> None:
    """List the revisions, newest first, marking the head and the database's current one.

    Example:
        flux-dao migrations history
    """
    from flux_dao.store.migrations import current_revisions, revisions  # noqa: PLC0415

    settings = _settings(ctx)
    scripts = revisions(settings.migrations_dir)
    if not scripts:
        _require_migrations(settings)
    current = set(current_revisions(settings))
    for script in scripts:
        marks = [m for m, on in (("head", script.is_head), ("current", script.revision in current)) if on]
        click.echo(f"{script.revision}  {script.doc}" + (f"  ({', '.join(marks)})" if marks else ""))


@migrations.command()
@click.argument("revision")
@click.confirmation_option(prompt="This drops what later revisions added (tables, columns) and its data. Go on?")
@click.pass_context
def downgrade(ctx: click.Context, revision: str) -> None:
    """Take the database back to REVISION (a revision id, or `base` for before the first one).

    Example:
        flux-dao migrations downgrade c9f00535a8ea --yes
    """
    from flux_dao.store.migrations import downgrade as run_downgrade  # noqa: PLC0415

    settings = _settings(ctx)
    _load_or_exit(settings)
    _require_migrations(settings)
    click.echo(_moved(run_downgrade(settings, revision), revision, "downgraded"))


@main.command()
@click.argument("resource")
@click.argument("query", default="")
@click.pass_context
def explain(ctx: click.Context, resource: str, query: str) -> None:
    """Print the database's plan for GET /RESOURCE?QUERY (the list route), as the service would run it.

    \b
    Example:
        flux-dao explain tasks 'user_id=...&status__in=pending,missed&sort=scheduled_at'
    """
    import asyncio  # noqa: PLC0415

    from flux_dao.errors import InvalidInputError  # noqa: PLC0415
    from flux_dao.ops.explain import explain_list  # noqa: PLC0415

    settings = _settings(ctx)
    _load_or_exit(settings)
    try:
        click.echo(asyncio.run(explain_list(settings.database.url, resource, query, settings=settings)))
    except (InvalidInputError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--indent", default=2, show_default=True, type=int, help="JSON indentation.")
@click.pass_context
def openapi(ctx: click.Context, indent: int) -> None:
    """Print the OpenAPI 3.1 document as JSON.

    \b
    Example:
        flux-dao openapi > openapi.json
    """
    from flux_dao.http.app import create_app  # noqa: PLC0415

    settings = replace(_settings(ctx), docs=Exposure.PUBLIC)  # the document exists whoever may read it online
    _load_or_exit(settings)
    app = create_app(settings)
    click.echo(json.dumps(app.openapi_schema.to_schema(), indent=indent))


@main.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", metavar="FILE", help="Write one stream of {resource, row} lines instead: - is stdout.")
@click.option("--resource", "names", multiple=True, metavar="NAME", help="Only this resource (repeat for more).")
@click.pass_context
def export(ctx: click.Context, folder: Path | None, output: str | None, names: tuple[str, ...]) -> None:
    """Write every row as NDJSON, parents first: one <resource>.ndjson per resource in FOLDER, or one stream (-o).

    A row is what GET /api/v1/<resource>/<id> answers, in canonical JSON (sorted keys), in id order. The summary
    gives each resource's rows and sha256, and one over everything: equal checksums mean equal data. The export
    reads one snapshot, so the service may keep writing.

    \b
    Examples:
        flux-dao export backup/                          # backup/users.ndjson ... and backup/manifest.json
        flux-dao export -o - --resource tasks | gzip > tasks.ndjson.gz
    """
    from flux_dao.errors import TransferError  # noqa: PLC0415
    from flux_dao.ops.progress import export_lines  # noqa: PLC0415
    from flux_dao.ops.transfer import STDIO, run_export  # noqa: PLC0415

    if (folder is None) == (output is None):
        msg = "give a FOLDER or -o FILE (- for stdout), not both"
        raise click.UsageError(msg)
    settings = _settings(ctx)
    try:
        summary = run_export(settings, _load_or_exit(settings), folder=folder, output=output, names=names)
    except TransferError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(export_lines(summary)), err=output == STDIO)


@main.command("import")
@click.argument("source")
@click.option(
    "--on-conflict",
    type=click.Choice(["skip", "update", "fail"]),
    default="skip",
    show_default=True,
    help="A row whose id is there already: skip it (a re-run imports only what is missing), update it, or fail.",
)
@click.option("--resource", "names", multiple=True, metavar="NAME", help="Only this resource (repeat for more).")
@click.pass_context
def import_(ctx: click.Context, source: str, on_conflict: str, names: tuple[str, ...]) -> None:
    """Import NDJSON rows from SOURCE: a folder made by export, one .ndjson file, or - (stdin).

    Every row is validated as the API validates a body, plus its id, timestamps and version, which are kept.
    A bad row is reported as file:line: field: message and left out; the rest go on, and the command exits 1 at
    the end. Rows commit in batches, so an interrupted import is resumed by running it again (skip).

    \b
    Examples:
        flux-dao migrate && flux-dao import backup/
        flux-dao import tasks.ndjson --on-conflict update
        flux-dao export -o - | FLUX_DAO_DATABASE_URL=postgresql://... flux-dao import -
    """
    from flux_dao.errors import TransferError  # noqa: PLC0415
    from flux_dao.ops.progress import import_lines  # noqa: PLC0415
    from flux_dao.ops.transfer import run_import  # noqa: PLC0415
    from flux_dao.store.transfer.backend import OnConflict  # noqa: PLC0415

    settings = _settings(ctx)
    try:
        summary = run_import(
            settings, _load_or_exit(settings), source, names=names, on_conflict=OnConflict(on_conflict)
        )
    except (TransferError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(import_lines(summary)))
    if summary.rejected:
        sys.exit(1)


def _exit_after_shutdown(*_: object) -> None:
    """End ``serve`` with 0 once uvicorn has shut down (it re-raises SIGTERM when done).

    By then requests are answered or cancelled and the pools closed, so the process ends here: exit handlers and
    logging are flushed, but threads are not waited for.
    """
    atexit._run_exitfuncs()  # the metrics folder of several workers, and the like
    logging.shutdown()
    os._exit(0)


def _check_keys(settings: Settings, manifest: "Manifest") -> None:
    """Refuse to start on a bad keys file before any worker does (each would fail the same way)."""
    from flux_dao.http.keys import KeysFileError, build_keyring  # noqa: PLC0415

    try:
        build_keyring(settings.api_keys, settings.keys_file, frozenset(e.name for e in manifest.entities))
    except KeysFileError as exc:
        raise click.ClickException(str(exc)) from exc


def _revisions(revisions: Iterable[str]) -> str:
    return ", ".join(sorted(revisions)) or "base"


def _moved(move: "Move", target: str, verb: str) -> str:
    """``database upgraded from <a> to <b>``, or ``already at head (<rev>)`` when nothing ran."""
    if move.before == move.after:
        return f"already at {target} ({_revisions(move.after)})"
    return f"database {verb} from {_revisions(move.before)} to {_revisions(move.after)}"


def _refuse_unadopted(settings: Settings) -> None:
    """Exit 1 before migrating a database another tool made (its tables exist, no migration history)."""
    from flux_dao.store.migrations import unadopted_tables  # noqa: PLC0415

    tables = unadopted_tables(settings)
    if tables:
        msg = (
            f"the database already has the manifest's tables ({', '.join(tables)}) but no migration history: "
            "another tool made it. Bring it under flux-dao's migrations with `flux-dao adopt --dry-run`, then "
            "`flux-dao adopt` (README: Adopting an existing database)"
        )
        raise click.ClickException(msg)


def _require_migrations(settings: Settings) -> None:
    if not (settings.migrations_dir / "env.py").is_file():
        raise click.ClickException(_NO_MIGRATIONS.format(folder=settings.migrations_dir))


_NO_MIGRATIONS: Final = (
    "the manifest has no migrations yet ({folder} does not exist): "
    'run `flux-dao makemigrations -m "initial schema"`, then `flux-dao migrate`'
)


def _head_drift(settings: Settings) -> "list[Difference]":
    """The manifest's differences from the schema its migrations produce; exit 1 when it has none."""
    from flux_dao.store.migrations import head_drift  # noqa: PLC0415

    try:
        differences = head_drift(settings)
    except Exception as exc:  # a broken revision file, whatever it raises, is the user's to fix
        msg = f"the migrations in {settings.migrations_dir} do not run on a scratch database: {exc}"
        raise click.ClickException(msg) from exc
    if differences is None:
        raise click.ClickException(_NO_MIGRATIONS.format(folder=settings.migrations_dir))
    return differences


def _refuse_drift(differences: "list[Difference]", where: str) -> None:
    """Exit 1 with one message naming every difference and the commands that fix them."""
    from flux_dao.store.drift import drift_message  # noqa: PLC0415

    if differences:
        raise click.ClickException("schema drift: " + drift_message(differences, where))


def _load_or_exit(settings: Settings) -> "Manifest":
    from flux_dao.manifest import load_manifest  # noqa: PLC0415

    try:
        return load_manifest(settings.manifest_path)
    except ManifestError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
