"""The README documents every CLI command and every environment variable the service reads."""

import re
from pathlib import Path

import pytest

from flux_dao import config
from flux_dao.ops.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG_SOURCE = (ROOT / "flux_dao" / "config.py").read_text(encoding="utf-8")
ENV_VARS = sorted(set(re.findall(r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"', CONFIG_SOURCE)) - set(config.__all__))


def test_config_reads_the_variables_this_test_looks_for():
    assert {"DATABASE_URL", "SERVICE_API_KEYS", "FLUX_DAO_MANIFEST", "DB_POOL_SIZE"} <= set(ENV_VARS)


@pytest.mark.parametrize("variable", ENV_VARS)
def test_every_environment_variable_is_documented(variable):
    assert f"`{variable}`" in README


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_cli_command_is_documented(command):
    assert f"flux-dao {command}" in README


def test_readme_starts_with_the_two_newcomer_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    assert "flux-dao serve" in blocks[0]
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command():
    test_command = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
