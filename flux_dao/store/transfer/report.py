"""What a transfer tells its caller as it goes (progress, refused rows) and at the end (the summary).

The library only calls ``Progress``; how it shows (a rich bar on a terminal, plain lines otherwise) is the command
line's business (``flux_dao.ops.progress``).
"""

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ("ExportSummary", "Exported", "ImportSummary", "Imported", "Progress", "Silent")


class Progress(Protocol):
    """Receives a transfer's progress, one resource (or pass) at a time."""

    def start(self, label: str, total: int | None) -> None:
        """A resource begins; ``total`` rows (lines) are expected, when known."""
        ...

    def advance(self, rows: int) -> None:
        """``rows`` more are done."""
        ...

    def done(self) -> None:
        """The resource is finished."""
        ...

    def problem(self, text: str) -> None:
        """A refused row: ``file:line: field: message``."""
        ...


class Silent:
    """Progress that shows nothing (library callers, tests)."""

    def start(self, label: str, total: int | None) -> None:
        """Nothing to show."""

    def advance(self, rows: int) -> None:
        """Nothing to show."""

    def done(self) -> None:
        """Nothing to show."""

    def problem(self, text: str) -> None:
        """Nothing to show."""


@dataclass
class Exported:
    """One resource's export: rows written, the sha256 of its lines, how long it took."""

    resource: str
    rows: int = 0
    sha256: str = ""
    seconds: float = 0.0


@dataclass
class ExportSummary:
    """A whole export: per resource in dependency order, and the sha256 over all their lines in that order."""

    resources: list[Exported] = field(default_factory=list)
    sha256: str = ""
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Rows written in all."""
        return sum(r.rows for r in self.resources)


@dataclass
class Imported:
    """One resource's import: rows read, and what became of them."""

    resource: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    """Already there (``--on-conflict skip``)."""
    rejected: int = 0
    """Reported as ``file:line: field: message`` and not imported (or, for a self-reference, imported without it)."""
    seconds: float = 0.0


@dataclass
class ImportSummary:
    """A whole import: per resource, in the order imported."""

    resources: list[Imported] = field(default_factory=list)
    unreadable: int = 0
    """Stream lines that named no resource of the manifest, or were not ``{"resource": ..., "row": ...}``."""
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        """Rows and lines reported, in all."""
        return self.unreadable + sum(r.rejected for r in self.resources)

    @property
    def rows(self) -> int:
        """Rows read in all."""
        return sum(r.rows for r in self.resources)
