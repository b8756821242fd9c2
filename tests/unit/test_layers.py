"""The package's folders are the request pipeline's stages, and imports run one way: down the stages.

``manifest`` (what the resources are) <- ``schema`` (tables and structs generated from it) <- ``query`` (plans and
the SQL compiler) <- ``store`` (the database, the repository) <- ``http`` (requests in, responses out) <- ``ops``
(the command line). The modules at the root (errors, types, config, logs, server defaults) are shared by all.
An import from a later stage into an earlier one, even inside a function, fails here.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "flux_dao"
STAGES = ("manifest", "schema", "query", "store", "http", "ops")
"""In order: a module may import from its own stage, earlier stages and the shared root modules."""
SHARED = frozenset({"errors", "types", "config", "logs", "server_defaults", "__init__", "__main__"})


def _stage(module: str) -> str | None:
    """The stage of a dotted module name under flux_dao, or None for a shared root module."""
    parts = module.split(".")
    if parts[0] != "flux_dao" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in STAGES else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("flux_dao")]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem not in {"__init__", "__main__"})


def test_every_module_lives_in_a_stage_or_is_shared() -> None:
    misplaced = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if (p.parent == PACKAGE and p.stem not in SHARED) or p.relative_to(PACKAGE).parts[0] not in (*STAGES, p.name)
    ]
    assert misplaced == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_stages(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0] if len(relative.parts) > 1 else None
    rank = STAGES.index(own) if own else -1
    upward = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if (stage := _stage(name)) is not None and STAGES.index(stage) > rank
    ]
    assert upward == [], f"{relative} imports from a later stage"
