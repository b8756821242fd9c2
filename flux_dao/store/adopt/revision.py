"""The adoption revision: an alembic script that records, and runs, exactly what ``flux-dao adopt`` changes.

It is kept beside the migrations (``migrations/adoptions/`` by default), not among them: it converts one database
made by another tool, so the chain that builds fresh databases never runs it. ``down_revision`` is None and
``adopted_head`` names the revision the database is stamped at once it ran.
"""

import importlib.util
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from flux_dao.store.adopt.plan import Kind, Plan

__all__ = ("load_revision", "render_revision")


def render_revision(plan: Plan, *, revision: str, database: str, heads: Sequence[str]) -> str:
    """The revision's Python source: the plan in words as its docstring, its statements in ``upgrade()``."""
    lines = [f"adopt {database} into flux-dao's migrations at {', '.join(heads)}", ""]
    lines += [f"Revision ID: {revision}", f"Create Date: {datetime.now(UTC).isoformat(timespec='seconds')}", ""]
    lines += ["Written and run by `flux-dao adopt`, which stamped the database at the head above afterwards."]
    lines += ["It is not part of the migration chain (fresh databases never need it); it records what was changed."]
    for kind in Kind:
        steps = plan.of(kind)
        if steps:
            lines += ["", f"{kind.capitalize()}:"] + [f"- {step}" for step in steps]
    if plan.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in plan.notes]
    doc = "\n".join(lines).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    body = "\n".join(f"    run({statement!r})" for statement in plan.statements) or "    pass"
    return f'''"""{doc}
"""

from alembic import op

revision = {revision!r}
down_revision = None
adopted_head = {tuple(heads)!r}


def upgrade() -> None:
    run = op.get_bind().exec_driver_sql  # the statements as written: a ':' in a view's text is no bind parameter
{body}


def downgrade() -> None:
    msg = "an adoption is not undone by a migration: restore the backup taken before it"
    raise NotImplementedError(msg)
'''


def load_revision(path: Path) -> ModuleType:
    """The revision at ``path`` as a module, to run its ``upgrade()`` under alembic's ``op``."""
    spec = importlib.util.spec_from_file_location(f"flux_dao_adoption_{path.stem}", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
