"""The `rtserve` root command: help for every command, version, exit codes 0 / 1 / 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli.conftest import Invoke

COMMANDS = ["build", "inspect", "verify", "reseal", "predict"]


def test_help_lists_every_command(rtserve_cli: Invoke) -> None:
    result = rtserve_cli("--help")

    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(rtserve_cli: Invoke, command: str) -> None:
    result = rtserve_cli(command, "--help")

    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"rtserve {command} " in result.stdout


def test_version_prints_the_installed_version(rtserve_cli: Invoke) -> None:
    from importlib import metadata

    result = rtserve_cli("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"rtserve {metadata.version('rtserve')}"


def test_an_unknown_command_is_a_usage_error(rtserve_cli: Invoke) -> None:
    result = rtserve_cli("bogus")

    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_a_failure_is_one_red_line_without_a_traceback(rtserve_cli: Invoke, tmp_path: Path) -> None:
    result = rtserve_cli("inspect", tmp_path / "missing")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: {tmp_path / 'missing'}: no such bundle directory or archive\n"
