"""``flux-dao import``: NDJSON rows into the tables, validated, in batches that commit whole.

Per resource, in dependency order: each line is validated (``rows``); a line that does not fit, or whose parent
row is missing, is reported as ``file:line: field: message`` and left out, and the rest go on. Rows go in batches
of a few thousand, each one transaction (COPY + ``INSERT ... SELECT`` on PostgreSQL, ``executemany`` on SQLite),
so an interruption leaves whole batches and a re-run with ``--on-conflict skip`` imports only what is missing. A
batch the database refuses as a whole (a unique email, say) is written again row by row to name the culprits.

A field referencing its own resource (``goals.parent_goal_id``) is written NULL first; once every row of the
resource is in, the input is read again and the field set (batched UPDATEs), so rows may come in any order and
memory stays flat. Writes go straight to the tables: the change-feed triggers record every one of them.
"""

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import sqlalchemy as sa

from flux_dao.config import DatabaseSettings
from flux_dao.errors import FieldError, TransferError
from flux_dao.manifest.spec import VERSION
from flux_dao.schema.resources import Resources
from flux_dao.store.transfer.backend import Backend, OnConflict, Reference, open_backend, require_tables
from flux_dao.store.transfer.order import Step, chosen_steps
from flux_dao.store.transfer.report import Imported, ImportSummary, Progress, Silent
from flux_dao.store.transfer.rows import RowCodec, printable
from flux_dao.store.transfer.sources import Segment, lines_of
from flux_dao.types import Row

__all__ = ("BATCH_ROWS", "Loader")

BATCH_ROWS: Final = 5000

Numbered = tuple[int, Row]
"""A validated row and its line number."""


@dataclass
class _Target:
    """One segment being imported: what it goes into and how it fares."""

    segment: Segment
    step: Step
    table: sa.Table
    codec: RowCodec
    result: Imported


class Loader:
    """Imports segments into one database (open it with ``async with``)."""

    def __init__(
        self,
        database: DatabaseSettings,
        resources: Resources,
        *,
        on_conflict: OnConflict = OnConflict.SKIP,
        progress: Progress | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.database = database
        self.resources = resources
        self.on_conflict = on_conflict
        self.progress = progress or Silent()
        self.batch_rows = batch_rows
        self.steps = {step.name: step for step in chosen_steps(resources.manifest, ())}
        self._backends: list[Backend] = []

    async def __aenter__(self) -> "Loader":
        try:
            self._backends.append(await open_backend(self.database))
            # --on-conflict fail stops at the first row already there: one writer, so it is the first in the input
            writers = 1 if self.on_conflict is OnConflict.FAIL else self._backends[0].writers
            while len(self._backends) < writers:
                self._backends.append(await open_backend(self.database))
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        for backend in self._backends:
            await backend.close()
        self._backends.clear()

    @property
    def backend(self) -> Backend:
        """The first open backend: lookups and the second pass."""
        return self._backends[0]

    async def load(self, segments: Sequence[Segment], unreadable: int = 0) -> ImportSummary:
        """Import ``segments`` in their order; what became of each resource's rows.

        Raises:
            TransferError: a table is missing, or a row's id is already there under ``--on-conflict fail``.
        """
        summary, began = ImportSummary(unreadable=unreadable), time.perf_counter()
        await require_tables(self.backend, sorted({segment.resource for segment in segments}), self.database)
        for segment in segments:
            resource = next(r for r in self.resources.items if r.entity.name == segment.resource)
            target = _Target(
                segment, self.steps[segment.resource], resource.table, RowCodec(resource), Imported(segment.resource)
            )
            summary.resources.append(target.result)
            started = time.perf_counter()
            await self._first_pass(target)
            for field in target.step.self_references:
                await self._second_pass(target, field)
            target.result.seconds = time.perf_counter() - started
        summary.seconds = time.perf_counter() - began
        return summary

    # -- the rows ------------------------------------------------------------------------------------------------

    def _rows(self, target: _Target) -> Iterator[tuple[int, Row | FieldError]]:
        """Each line of the segment, validated (or why not); stream lines of other resources are passed over."""
        segment, codec = target.segment, target.codec
        for number, line in lines_of(segment):
            raw = line
            if segment.wrapped:
                try:
                    envelope = codec.envelope(line)
                except FieldError:  # reported when the stream was checked
                    continue
                if envelope.resource != segment.resource:
                    continue
                raw = envelope.row
            try:
                yield number, codec.decode(raw)
            except FieldError as exc:
                yield number, exc

    def _report(self, target: _Target, number: int, problem: FieldError) -> None:
        target.result.rejected += 1
        field, message = printable(problem.field), printable(problem.message)
        self.progress.problem(f"{target.segment.label}:{number}: {field}: {message}")

    async def _first_pass(self, target: _Target) -> None:
        """Every row, self-references left NULL for the second pass.

        A reader validates batches into a small queue and each writer (one per backend connection) takes the next:
        on PostgreSQL two batches are written at once, and validating overlaps the server's work. Memory: the
        queue and the batches being written, a few at most.
        """
        self.progress.start(target.segment.resource, target.segment.lines)
        queue: asyncio.Queue[tuple[list[Numbered], int] | None] = asyncio.Queue(maxsize=len(self._backends))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read_batches(target, queue))
                for backend in self._backends:
                    group.create_task(self._writer(target, queue, backend))
        except ExceptionGroup as failed:  # the first failure, as it was raised (a TransferError the CLI shows)
            raise failed.exceptions[0] from None
        self.progress.done()

    async def _writer(
        self, target: _Target, queue: "asyncio.Queue[tuple[list[Numbered], int] | None]", backend: Backend
    ) -> None:
        while (item := await queue.get()) is not None:
            batch, read = item
            if batch:
                await self._write(target, batch, backend)
            self.progress.advance(read)
            target.result.rows += read

    async def _read_batches(self, target: _Target, queue: "asyncio.Queue[tuple[list[Numbered], int] | None]") -> None:
        """Validated rows in batches, with how many lines each took (bad ones reported here); then a None per writer."""
        batch: list[Numbered] = []
        lines: dict[UUID, int] = {}  # the batch's ids, and the line of each
        read = 0
        for number, row in self._rows(target):
            read += 1
            if isinstance(row, FieldError):
                self._report(target, number, row)
                continue
            if (first := lines.setdefault(row["id"], number)) != number:
                self._report(target, number, FieldError("id", f"is the id of line {first} too: left out"))
                continue
            for field in target.step.self_references:
                row[field] = None
            batch.append((number, row))
            if len(batch) >= self.batch_rows:
                await queue.put((batch, read))
                batch, read, lines = [], 0, {}
        await queue.put((batch, read))
        for _ in self._backends:
            await queue.put(None)

    async def _write(self, target: _Target, batch: list[Numbered], backend: Backend) -> None:
        result = target.result
        existing = await backend.existing(target.table, [row["id"] for _, row in batch])
        if existing and self.on_conflict is OnConflict.FAIL:
            number, row = next((n, r) for n, r in batch if r["id"] in existing)
            msg = (
                f"{target.segment.label}:{number}: {target.segment.resource} {row['id']} is already in the database "
                "(--on-conflict fail); the batches written before stay: re-run with --on-conflict skip "
                "to import only what is missing, or update to overwrite"
            )
            raise TransferError(msg)
        if existing and self.on_conflict is OnConflict.SKIP:
            result.skipped += sum(row["id"] in existing for _, row in batch)
            batch = [(n, row) for n, row in batch if row["id"] not in existing]
        batch = await self._with_parents(target, batch, backend)
        if not batch:
            return
        keep = target.step.self_references
        try:
            written = await backend.write(target.table, [row for _, row in batch], self.on_conflict, keep)
        except Exception as exc:
            if backend.problem(exc) is None:
                raise
            batch, written = await self._one_by_one(target, batch, backend)
        # counted from what the database did: a row another batch wrote meanwhile (an id given twice) was skipped
        updated = min(written, sum(row["id"] in existing for _, row in batch))
        result.updated += updated
        result.inserted += written - updated
        result.skipped += len(batch) - written

    async def _with_parents(self, target: _Target, batch: list[Numbered], backend: Backend) -> list[Numbered]:
        """The rows whose referenced rows exist; the others reported (``user_id: users <id> does not exist``)."""
        for field, parent in target.step.parents.items():
            wanted = {row[field] for _, row in batch if row[field] is not None}
            if not wanted:
                continue
            missing = wanted - await backend.existing(self.resources.metadata.tables[parent], list(wanted))
            if missing:
                for number, row in batch:
                    if row[field] in missing:
                        self._report(target, number, FieldError(field, f"{parent} {row[field]} does not exist"))
                batch = [(n, row) for n, row in batch if row[field] not in missing]
        return batch

    async def _one_by_one(self, target: _Target, batch: list[Numbered], backend: Backend) -> tuple[list[Numbered], int]:
        """Write a refused batch row by row, reporting the rows the database refuses.

        Returns the rows it took, and how many it wrote (a row skipped on conflict is taken, not written).
        """
        taken, written = [], 0
        keep = target.step.self_references
        for number, row in batch:
            try:
                written += await backend.write(target.table, [row], self.on_conflict, keep)
            except Exception as exc:
                problem = backend.problem(exc)
                if problem is None:
                    raise
                self._report(target, number, problem)
            else:
                taken.append((number, row))
        return taken, written

    # -- self-references -----------------------------------------------------------------------------------------

    async def _second_pass(self, target: _Target, field: str) -> None:
        """Read the segment again and set ``field`` on the rows now in the table."""
        overwrite = self.on_conflict is OnConflict.UPDATE
        self.progress.start(f"{target.segment.resource}.{field}", target.segment.lines)
        pairs: list[tuple[int, Reference]] = []
        read = shown = 0
        for number, row in self._rows(target):
            read += 1
            if isinstance(row, FieldError):
                continue
            if row[field] is not None or overwrite:
                pairs.append((number, Reference(row["id"], row[field], row[VERSION], row["updated_at"])))
            if len(pairs) >= self.batch_rows:
                await self._set_references(target, field, pairs, overwrite=overwrite)
                self.progress.advance(read - shown)
                pairs, shown = [], read
        if pairs:
            await self._set_references(target, field, pairs, overwrite=overwrite)
        self.progress.advance(read - shown)
        self.progress.done()

    async def _set_references(
        self, target: _Target, field: str, pairs: list[tuple[int, Reference]], *, overwrite: bool
    ) -> None:
        present = await self.backend.existing(target.table, [ref.id for _, ref in pairs])
        pairs = [pair for pair in pairs if pair[1].id in present]  # rows refused in the first pass are reported
        values = {ref.value for _, ref in pairs if ref.value is not None}
        found = await self.backend.existing(target.table, list(values)) if values else set()
        name = target.segment.resource
        for number, ref in pairs:
            if ref.value is not None and ref.value not in found:
                message = f"{name} {ref.value} does not exist (the row was imported without it)"
                self._report(target, number, FieldError(field, message))
        ready = [ref for _, ref in pairs if ref.value is None or ref.value in found]
        if ready:
            await self.backend.set_references(target.table, field, ready, overwrite=overwrite)
