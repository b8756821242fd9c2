"""Where an import's lines come from: a folder of ``<resource>.ndjson`` files, one such file, or one stream.

Everything is a file by the time it is read (stdin is spooled to a temporary file first), because a resource that
references itself is read twice and a stream is checked once before anything is written. A stream's lines are
checked for order then: each resource's rows together, parents before children, as ``flux-dao export -o`` writes
them; otherwise the import stops before writing anything, saying which line is out of place.
"""

import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from flux_dao.errors import FieldError, TransferError
from flux_dao.store.transfer.order import Step
from flux_dao.store.transfer.rows import RowCodec

__all__ = ("Segment", "lines_of", "plan_segments", "spool")

_CHUNK: Final = 1 << 20
_BOM: Final = b"\xef\xbb\xbf"
"""A UTF-8 byte order mark, which some editors put at the start of a file."""
_LOOK_AHEAD: Final = 100
"""Lines read to find the first JSON object, which tells a stream from bare rows."""


@dataclass(frozen=True)
class Segment:
    """The lines of one resource: a whole file of bare rows, or a stretch of a stream."""

    resource: str
    label: str
    """The file as reports name it (``-`` for stdin)."""
    path: Path
    offset: int = 0
    first_line: int = 1
    lines: int = 0
    """How many lines (blank ones included): the progress bar's total."""
    wrapped: bool = False
    """Stream lines: ``{"resource": ..., "row": {...}}``."""


def spool(stream: BinaryIO, folder: Path) -> Path:
    """Copy ``stream`` (stdin) into a file in ``folder``, in chunks."""
    path = folder / "stdin.ndjson"
    with path.open("wb") as out:
        shutil.copyfileobj(stream, out, _CHUNK)
    return path


def lines_of(segment: Segment) -> Iterator[tuple[int, bytes]]:
    """The segment's non-blank lines with their line numbers, read one at a time (a UTF-8 BOM at the start dropped)."""
    with segment.path.open("rb") as file:
        file.seek(segment.offset)
        for number, line in enumerate(file, start=segment.first_line):
            if number >= segment.first_line + segment.lines:
                return
            stripped = line.removeprefix(_BOM).strip() if number == 1 else line.strip()
            if stripped:
                yield number, stripped


def plan_segments(
    path: Path,
    label: str,
    steps: list[Step],
    wanted: set[str],
    report: Callable[[str], None],
    resource: str | None = None,
) -> tuple[list[Segment], int]:
    """The segments to import from ``path``, in the order to import them, and how many stream lines were unreadable.

    ``steps`` are every resource in dependency order, ``wanted`` those to import. A folder gives its
    ``<resource>.ndjson`` files (others are refused); a file of bare rows is the resource ``resource`` (else its
    name's); a stream is checked for order. Unreadable stream lines are reported through ``report`` as
    ``file:line: field: message``.

    Raises:
        TransferError: a file names no resource, or a stream is out of order.
    """
    if path.is_dir():
        return _folder(path, steps, wanted), 0
    first = _first_line(path)
    if first is None:  # nothing but blank lines: an export of an empty database, say
        return [], 0
    if _is_envelope(first):
        return _stream(path, label, steps, wanted, report)
    name = resource or path.name.removesuffix(".ndjson")
    if name not in wanted:
        msg = (
            f"{label}: cannot tell which resource its rows are: name the file <resource>.ndjson or pass "
            f"--resource (one of {', '.join(step.name for step in steps if step.name in wanted)})"
        )
        raise TransferError(msg)
    return [Segment(name, label, path, lines=_count_lines(path))], 0


def _folder(folder: Path, steps: list[Step], wanted: set[str]) -> list[Segment]:
    files = {file.name.removesuffix(".ndjson"): file for file in folder.glob("*.ndjson")}
    listed = _exported(folder)
    if listed is not None:  # the folder of an export: what it wrote, not what an earlier export left there
        files = {name: file for name, file in files.items() if name in listed}
    known = {step.name for step in steps}
    strays = sorted(name for name in files if name not in known)
    if strays:
        msg = (
            f"{folder}: {', '.join(f'{name}.ndjson' for name in strays)} names no resource to import "
            f"(resources: {', '.join(step.name for step in steps)})"
        )
        raise TransferError(msg)
    return [
        Segment(step.name, str(files[step.name]), files[step.name], lines=_count_lines(files[step.name]))
        for step in steps
        if step.name in files and step.name in wanted
    ]


def _exported(folder: Path) -> frozenset[str] | None:
    """The resources the folder's ``manifest.json`` (written by export) lists; None without one."""
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        document = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        msg = f"{path}: not the manifest.json an export writes ({exc})"
        raise TransferError(msg) from None
    resources = document.get("resources") if isinstance(document, dict) else None
    if not isinstance(resources, dict):
        msg = f"{path}: not the manifest.json an export writes (no 'resources')"
        raise TransferError(msg)
    return frozenset(resources)


def _first_line(path: Path) -> bytes | None:
    """The first line that is a JSON object (what tells a stream from bare rows), else the first non-blank one."""
    first = None
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            stripped = line.removeprefix(_BOM).strip() if number == 1 else line.strip()
            if not stripped:
                continue
            first = first or stripped
            if _is_object(stripped) or number > _LOOK_AHEAD:
                return stripped if _is_object(stripped) else first
    return first


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(msgspec.json.decode(line), dict)
    except (msgspec.DecodeError, RecursionError):
        return False


def _is_envelope(line: bytes) -> bool:
    try:
        decoded = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return False
    return isinstance(decoded, dict) and set(decoded) == {"resource", "row"}


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


class _StreamPlan:
    """The running state of a stream's check: the segment being read, those done, the resources seen."""

    def __init__(self, path: Path, label: str, steps: list[Step], wanted: set[str]) -> None:
        self.path, self.label = path, label
        self.wanted = wanted
        self.ancestors = _ancestors(steps)
        self.segments: list[Segment] = []
        self.seen: list[str] = []
        self.current: tuple[str, int, int] | None = None
        """(resource, offset, first line) of the segment being read."""

    def switch(self, resource: str, offset: int, number: int) -> None:
        if self.current is not None and self.current[0] == resource:
            return
        if resource in self.seen:
            msg = (
                f"{self.label}:{number}: {resource} rows again after {self.seen[-1]} rows: a stream holds each "
                "resource's rows together, parents first, as `flux-dao export -o` writes it"
            )
            raise TransferError(msg)
        children = [name for name in self.seen if resource in self.ancestors.get(name, ())]
        if children:
            msg = (
                f"{self.label}:{number}: {resource} rows after {children[0]} rows, which reference {resource}: a "
                "stream lists parents first, as `flux-dao export -o` writes it (or import one file per resource "
                "from a folder, in any order)"
            )
            raise TransferError(msg)
        self.close(offset, number)
        self.seen.append(resource)
        self.current = (resource, offset, number)

    def close(self, offset: int, number: int) -> None:
        if self.current is not None and self.current[0] in self.wanted:
            resource, start, first = self.current
            self.segments.append(Segment(resource, self.label, self.path, start, first, number - first, wrapped=True))


def _stream(
    path: Path, label: str, steps: list[Step], wanted: set[str], report: Callable[[str], None]
) -> tuple[list[Segment], int]:
    known = {step.name for step in steps}
    plan, unreadable, offset, number = _StreamPlan(path, label, steps, wanted), 0, 0, 0
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                problem = _resource_of(line.strip(), known)
                if isinstance(problem, FieldError):
                    report(f"{label}:{number}: {problem}")
                    unreadable += 1
                else:
                    plan.switch(problem, offset, number)
            offset += len(line)
    plan.close(offset, number + 1)
    return plan.segments, unreadable


def _resource_of(line: bytes, known: set[str]) -> str | FieldError:
    try:
        resource = RowCodec.envelope(line).resource
    except FieldError as exc:
        return exc
    if resource not in known:
        return FieldError("resource", f"no resource {resource!r} in the manifest")
    return resource


def _ancestors(steps: list[Step]) -> Mapping[str, frozenset[str]]:
    """Each resource's parents, their parents and so on."""
    direct = {step.name: set(step.parents.values()) for step in steps}
    found: dict[str, frozenset[str]] = {}
    for step in steps:  # dependency order: a parent's ancestors are complete before its children's
        names = set(direct[step.name])
        for parent in direct[step.name]:
            names |= found.get(parent, frozenset())
        found[step.name] = frozenset(names)
    return found
