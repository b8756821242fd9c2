"""The glue behind ``flux-dao export`` and ``flux-dao import``: files and stdin/stdout, progress, the event loop.

The work itself is ``flux_dao.store.transfer``; this opens what the command line names and shows the progress.
"""

import asyncio
import sys
import tempfile
from pathlib import Path

from flux_dao.config import Settings
from flux_dao.manifest.spec import Manifest
from flux_dao.ops.progress import progress_for
from flux_dao.schema import build_resources
from flux_dao.store.transfer.backend import OnConflict
from flux_dao.store.transfer.export import DirectorySink, Sink, StreamSink, export_rows
from flux_dao.store.transfer.load import Loader
from flux_dao.store.transfer.order import chosen_steps, dependency_order
from flux_dao.store.transfer.report import ExportSummary, ImportSummary
from flux_dao.store.transfer.sources import plan_segments, spool

__all__ = ("STDIO", "run_export", "run_import")

STDIO = "-"
"""The path that means stdout (export) or stdin (import)."""


def run_export(
    settings: Settings, manifest: Manifest, *, folder: Path | None, output: str | None, names: tuple[str, ...]
) -> ExportSummary:
    """Export to ``folder`` (one file per resource) or ``output`` (one stream: a file, or ``-`` for stdout)."""
    resources = build_resources(manifest)
    chosen_steps(manifest, names)  # an unknown name fails before any file is opened
    with progress_for() as progress:
        if folder is not None:
            sink: Sink = DirectorySink(folder)
            return asyncio.run(export_rows(settings.database, resources, sink, names=names, progress=progress))
        if output == STDIO:
            sink = StreamSink(sys.stdout.buffer)
            return asyncio.run(export_rows(settings.database, resources, sink, names=names, progress=progress))
        assert output is not None  # noqa: S101 (the command asks for one of the two)
        with Path(output).open("wb") as stream:
            sink = StreamSink(stream)
            return asyncio.run(export_rows(settings.database, resources, sink, names=names, progress=progress))


def run_import(
    settings: Settings, manifest: Manifest, source: str, *, names: tuple[str, ...], on_conflict: OnConflict
) -> ImportSummary:
    """Import a folder, a file or ``-`` (stdin, spooled to a temporary file first)."""
    resources = build_resources(manifest)
    steps = list(dependency_order(manifest))
    wanted = {step.name for step in chosen_steps(manifest, names)}
    resource = names[0] if len(names) == 1 else None
    with tempfile.TemporaryDirectory(prefix="flux-dao-import-") as spool_dir, progress_for() as progress:
        path = spool(sys.stdin.buffer, Path(spool_dir)) if source == STDIO else Path(source)
        segments, unreadable = plan_segments(path, source, steps, wanted, progress.problem, resource)
        loader = Loader(settings.database, resources, on_conflict=on_conflict, progress=progress)

        async def run() -> ImportSummary:
            async with loader:
                return await loader.load(segments, unreadable)

        return asyncio.run(run())
