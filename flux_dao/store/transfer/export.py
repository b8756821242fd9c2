"""``flux-dao export``: every row of the chosen resources, as NDJSON, in dependency order and id order.

Rows are read in keyset pages by id from one snapshot (a read-only REPEATABLE READ transaction on PostgreSQL, a
read transaction on SQLite), so memory holds one page whatever the table's size, and the export is consistent even
while the service writes. Each resource's lines are hashed as they go (sha256), and so are all the lines in order:
equal checksums mean equal data, whatever the backend.
"""

import hashlib
import time
from pathlib import Path
from typing import BinaryIO, Final, Protocol

import msgspec

from flux_dao.config import DatabaseSettings
from flux_dao.schema.resources import Resources
from flux_dao.store.transfer.backend import Backend, open_backend, require_tables
from flux_dao.store.transfer.order import Step, chosen_steps
from flux_dao.store.transfer.report import Exported, ExportSummary, Progress, Silent
from flux_dao.store.transfer.rows import RowCodec, wrap

__all__ = ("FORMAT", "PAGE_ROWS", "DirectorySink", "Sink", "StreamSink", "export_rows")

PAGE_ROWS: Final = 5000
FORMAT: Final = "flux-dao-ndjson/1"
"""Named in ``manifest.json``: the line format (read shape, canonical JSON) and its version."""


class Sink(Protocol):
    """Where exported lines go."""

    def begin(self, resource: str) -> None:
        """A resource's lines follow."""
        ...

    def write(self, resource: str, lines: bytes) -> None:
        """Canonical bare-row lines of ``resource``, each ending in a newline."""
        ...

    def end(self, summary: ExportSummary) -> None:
        """Everything is written."""
        ...


class DirectorySink:
    """One ``<resource>.ndjson`` of bare rows per resource, and ``manifest.json`` with the counts and checksums."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._file: BinaryIO | None = None

    def begin(self, resource: str) -> None:
        """Open the resource's file (replacing an earlier export's)."""
        self._close()
        self._file = (self.folder / f"{resource}.ndjson").open("wb")

    def write(self, resource: str, lines: bytes) -> None:
        """Append to the resource's file."""
        assert self._file is not None  # noqa: S101 (begin() came first)
        self._file.write(lines)

    def end(self, summary: ExportSummary) -> None:
        """Close the last file and write ``manifest.json``."""
        self._close()
        document = {
            "format": FORMAT,
            "sha256": summary.sha256,
            "resources": {r.resource: {"rows": r.rows, "sha256": r.sha256} for r in summary.resources},
        }
        (self.folder / "manifest.json").write_bytes(msgspec.json.format(msgspec.json.encode(document)) + b"\n")

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StreamSink:
    """One stream of ``{"resource": ..., "row": ...}`` lines (stdout or one file)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def begin(self, resource: str) -> None:
        """Nothing: the resource is on every line."""

    def write(self, resource: str, lines: bytes) -> None:
        """The lines, wrapped."""
        self.stream.write(wrap(resource, lines))

    def end(self, summary: ExportSummary) -> None:
        """Flush."""
        self.stream.flush()


async def export_rows(
    database: DatabaseSettings,
    resources: Resources,
    sink: Sink,
    *,
    names: tuple[str, ...] = (),
    progress: Progress | None = None,
    page_rows: int = PAGE_ROWS,
) -> ExportSummary:
    """Write every row of the resources ``names`` (default: all) to ``sink``; return counts and checksums.

    Raises:
        TransferError: an unknown resource, or a table the database lacks (not migrated).
        DatabaseUnreachableError: the database cannot be connected to.
    """
    steps = chosen_steps(resources.manifest, names)
    progress = progress or Silent()
    backend = await open_backend(database)
    summary, overall, began = ExportSummary(), hashlib.sha256(), time.perf_counter()
    try:
        await require_tables(backend, [step.name for step in steps], database)
        async with backend.snapshot():
            for step in steps:
                summary.resources.append(
                    await _export_one(backend, resources, step, sink, overall, progress, page_rows)
                )
    finally:
        await backend.close()
    summary.sha256 = overall.hexdigest()
    summary.seconds = time.perf_counter() - began
    sink.end(summary)
    return summary


async def _export_one(
    backend: Backend,
    resources: Resources,
    step: Step,
    sink: Sink,
    overall: "hashlib._Hash",
    progress: Progress,
    page_rows: int,
) -> Exported:
    table = resources.metadata.tables[step.name]
    codec = RowCodec(next(r for r in resources.items if r.entity.name == step.name))
    done, digest, began = Exported(step.name), hashlib.sha256(), time.perf_counter()
    progress.start(step.name, await backend.count(table))
    sink.begin(step.name)
    after = None
    while True:
        rows = await backend.page(table, after, page_rows)
        if not rows:
            break
        lines = codec.encode(rows)
        digest.update(lines)
        overall.update(lines)
        sink.write(step.name, lines)
        done.rows += len(rows)
        progress.advance(len(rows))
        if len(rows) < page_rows:
            break
        after = rows[-1][0]
    progress.done()
    done.sha256 = digest.hexdigest()
    done.seconds = time.perf_counter() - began
    return done
