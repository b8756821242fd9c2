"""How ``export`` and ``import`` show their progress: a rich bar on a terminal, plain lines otherwise.

On a terminal (stderr is a TTY) each resource gets a bar with its rows, rows per second and the time left; refused
rows print above the bars. Anywhere else (a log, CI, a pipe) a line every few seconds says the same in words, so
logs stay readable. Both write to stderr: stdout may be the export itself (``-o -``).
"""

import sys
import time
from typing import Final, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from flux_dao.store.transfer.report import ExportSummary, ImportSummary

__all__ = ("PlainProgress", "RichProgress", "export_lines", "import_lines", "progress_for")

PLAIN_EVERY: Final = 5.0
"""Seconds between two plain progress lines of one resource."""


class _RowsPerSecond(ProgressColumn):
    """The task's speed as rows per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


class RichProgress:
    """A rich progress display on stderr: one bar per resource."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            _RowsPerSecond(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> "RichProgress":
        self._bars.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._bars.stop()

    def start(self, label: str, total: int | None) -> None:
        """A new bar."""
        self._task = self._bars.add_task(label, total=total)

    def advance(self, rows: int) -> None:
        """Move the bar."""
        if self._task is not None:
            self._bars.advance(self._task, rows)

    def done(self) -> None:
        """Fill the bar to what was done (the total counted blank lines too)."""
        if self._task is not None:
            task = next(task for task in self._bars.tasks if task.id == self._task)
            self._bars.update(self._task, total=task.completed)
            self._bars.stop_task(self._task)

    def problem(self, text: str) -> None:
        """A refused row, printed above the bars."""
        self._bars.console.print(text, markup=False, highlight=False)


class PlainProgress:
    """A line per resource every few seconds, and when it ends: ``tasks: 40,000/100,000 rows, 52,000 rows/s``."""

    def __init__(self, stream: TextIO | None = None, every: float = PLAIN_EVERY) -> None:
        self._stream = stream or sys.stderr
        self._every = every
        self._label, self._done = "", 0
        self._total: int | None = None
        self._began = self._shown = 0.0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *_: object) -> None:
        self._stream.flush()

    def start(self, label: str, total: int | None) -> None:
        """Note the resource; nothing shown yet."""
        self._label, self._total, self._done = label, total, 0
        self._began = self._shown = time.monotonic()

    def advance(self, rows: int) -> None:
        """Show a line when the last is a few seconds old."""
        self._done += rows
        now = time.monotonic()
        if now - self._shown >= self._every:
            self._shown = now
            self._line(now)

    def done(self) -> None:
        """The resource's last line."""
        self._total = self._done
        self._line(time.monotonic())

    def problem(self, text: str) -> None:
        """A refused row, on its own line."""
        print(text, file=self._stream, flush=True)

    def _line(self, now: float) -> None:
        elapsed = max(now - self._began, 1e-9)
        rate = self._done / elapsed
        of = f"/{self._total:,}" if self._total is not None else ""
        left = ""
        if self._total and rate > 0 and self._done < self._total:
            left = f", {(self._total - self._done) / rate:,.0f} s left"
        print(f"{self._label}: {self._done:,}{of} rows, {rate:,.0f} rows/s{left}", file=self._stream, flush=True)


def progress_for(stream: TextIO | None = None) -> RichProgress | PlainProgress:
    """Rich bars when ``stream`` (stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress(Console(file=stream))
    return PlainProgress(stream)


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "-"


def export_lines(summary: ExportSummary) -> list[str]:
    """The export's summary: rows and sha256 per resource, then in all."""
    width = max((len(r.resource) for r in summary.resources), default=0)
    lines = [
        f"{r.resource:<{width}}  {r.rows:>10,} rows  sha256 {r.sha256}  ({_rate(r.rows, r.seconds)})"
        for r in summary.resources
    ]
    lines.append(
        f"{'all':<{width}}  {summary.rows:>10,} rows  sha256 {summary.sha256}  "
        f"in {summary.seconds:.1f} s ({_rate(summary.rows, summary.seconds)})"
    )
    return lines


def import_lines(summary: ImportSummary) -> list[str]:
    """The import's summary: per resource what became of its rows, then in all."""
    width = max((len(r.resource) for r in summary.resources), default=0)
    lines = [
        f"{r.resource:<{width}}  {r.rows:>10,} rows: {r.inserted:,} inserted, {r.updated:,} updated, "
        f"{r.skipped:,} skipped, {r.rejected:,} rejected  ({_rate(r.rows, r.seconds)})"
        for r in summary.resources
    ]
    if summary.unreadable:
        lines.append(f"{summary.unreadable:,} stream lines named no resource (reported above)")
    verdict = f"{summary.rejected:,} rejected (reported above)" if summary.rejected else "none rejected"
    lines.append(
        f"imported {summary.rows:,} rows in {summary.seconds:.1f} s ({_rate(summary.rows, summary.seconds)}), {verdict}"
    )
    return lines
