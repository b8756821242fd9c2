"""The image is reproducible, read from its files: no registry is reachable here, so these facts are checked statically.

The Containerfile's base images are named in full and pinned by digest; Python packages are installed only from the
hashed lock files (``--require-hashes``), the project wheel without resolving anything (``--no-deps``); ``/data`` is
a volume holding the SQLite default; the health check probes ``/ready`` on the port ``serve`` binds. The lock files
pin every dependency of ``pyproject.toml`` (runtime and build backend) at a version its specifier allows, with hashes.
``.ci/lock --check`` (in CI) re-compiles them; ``.ci/run`` builds the image when its base image is available.
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` for each instruction, continuation lines joined, comments left out."""
    text = CONTAINERFILE.read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(arguments.split())))
    return found


def arguments_of(keyword: str) -> list[str]:
    return [arguments for found, arguments in instructions() if found == keyword]


def env() -> dict[str, str]:
    return dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(arguments_of("ENV"))))


def pins(lock: str) -> dict[str, tuple[Version, bool]]:
    """Package name to its pinned version and whether the entry carries at least one sha256 hash."""
    text = (ROOT / lock).read_text()
    pinned: dict[str, tuple[Version, bool]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        requirement = Requirement(entry.split("\\", 1)[0].split("\n", 1)[0].strip())
        (spec,) = requirement.specifier
        assert spec.operator == "==", entry
        pinned[canonicalize_name(requirement.name)] = (Version(spec.version), "--hash=sha256:" in entry)
    return pinned


def test_every_base_image_is_named_in_full_and_pinned_by_digest() -> None:
    bases = [arguments.split()[0] for arguments in arguments_of("FROM")]
    assert len(bases) == 2, bases  # a build stage and the runtime stage
    for base in bases:
        assert re.fullmatch(r"docker\.io/library/python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    assert len(set(bases)) == 1, bases  # both stages on the same Python, so the venv copies across


def test_packages_come_only_from_the_hashed_locks_and_the_project_wheel_resolves_nothing() -> None:
    installs = [run for run in arguments_of("RUN") if "pip install" in run or "pip wheel" in run]
    commands = [c.strip() for run in installs for c in run.split("&&") if "pip install" in c or "pip wheel" in c]
    assert commands, installs
    for command in commands:
        if "-r " in command:
            assert "--require-hashes" in command, command
        else:
            assert "--no-deps" in command, command  # the project's own wheel: its dependencies came from the lock
    locks = {match for command in commands for match in re.findall(r"-r (\S+)", command)}
    assert locks == {"requirements.lock", "requirements-build.lock"}, commands
    assert any("--no-build-isolation" in c for c in commands if "pip wheel" in c), commands


def test_data_is_a_volume_holding_the_sqlite_default() -> None:
    assert arguments_of("VOLUME") == ["/data"]
    assert env()["DATABASE_URL"] == "sqlite+aiosqlite:////data/flux_dao.db"
    assert arguments_of("WORKDIR")[-1] == "/data"


def test_the_health_check_probes_ready_on_the_port_serve_binds() -> None:
    (healthcheck,) = arguments_of("HEALTHCHECK")
    assert "/ready" in healthcheck, healthcheck
    assert "FLUX_DAO_PORT" in healthcheck, healthcheck
    variables = env()
    assert variables["FLUX_DAO_HOST"] == "0.0.0.0"  # noqa: S104 (inside a container: reachable through its port)
    assert arguments_of("EXPOSE") == [variables["FLUX_DAO_PORT"]]
    assert arguments_of("ENTRYPOINT") == ['["flux-dao"]']
    assert arguments_of("CMD")[-1] == '["serve"]'  # host and port from FLUX_DAO_HOST / FLUX_DAO_PORT


def declared_requirements() -> dict[str, list[Requirement]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {
        "requirements.lock": [Requirement(r) for r in pyproject["project"]["dependencies"]],
        "requirements-build.lock": [Requirement(r) for r in pyproject["build-system"]["requires"]],
    }


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-build.lock"])
def test_the_lock_pins_every_dependency_of_pyproject_at_an_allowed_version_with_hashes(lock: str) -> None:
    pinned = pins(lock)
    unhashed = [name for name, (_, hashed) in pinned.items() if not hashed]
    assert not unhashed, unhashed
    for requirement in declared_requirements()[lock]:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not in {lock}: run .ci/lock"
        version = pinned[name][0]
        allowed = requirement.specifier.contains(version, prereleases=True)
        assert allowed, f"{lock} pins {name}=={version}: {requirement}"


def test_the_lock_holds_the_extras_the_service_runs_on() -> None:
    """``uvicorn[standard]`` is what gives serve uvloop and httptools; the lock must carry them, not just uvicorn."""
    pinned = pins("requirements.lock")
    assert {"uvloop", "httptools", "uvicorn", "asyncpg", "aiosqlite"} <= set(pinned), sorted(pinned)
    assert not {"pytest", "ruff", "mypy", "uv"} & set(pinned)  # development tools stay out of the image
