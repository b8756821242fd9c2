"""Copies of the project's manifest and migrations to change in a test (a field added, no migration made yet)."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRIORITY = "      priority: {type: integer, ge: 0}\n"
"""A field to add to ``tasks``; unindexed (not a filter), so its only schema change is the column."""
_AFTER = '      recurrence_rule: {type: string, description: "An RRULE, e.g. FREQ=DAILY."}\n'


def project_copy(folder: Path, *, task_fields: str = "", migrations: bool = True) -> Path:
    """The project's manifest (plus ``task_fields`` on ``tasks``) and migrations in ``folder``; the manifest path."""
    text = (ROOT / "resources.yaml").read_text(encoding="utf-8")
    assert _AFTER in text
    manifest = folder / "resources.yaml"
    manifest.write_text(text.replace(_AFTER, _AFTER + task_fields), encoding="utf-8")
    if migrations:
        shutil.copytree(ROOT / "migrations", folder / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    return manifest
