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


def test_an_unforeseen_failure_is_one_line_too_and_the_traceback_comes_on_request(
    rtserve_cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtserve.bundle import bundle as bundle_module

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(bundle_module.Bundle, "open", broken)
    result = rtserve_cli("inspect", tmp_path)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: KeyError: 'a bug' (unexpected; run again with RTSERVE_DEBUG=1 for the "
        "traceback, and please report it)"
    ]

    monkeypatch.setenv("RTSERVE_DEBUG", "1")
    debugged = rtserve_cli("inspect", tmp_path)
    assert isinstance(debugged.exception, KeyError)


def test_help_loads_no_data_or_model_library() -> None:
    """`rtserve --help` stays fast: numpy, pandas, pydantic and the frameworks load only when a
    command runs (timings are printed by bench/import_time.py, not asserted)."""
    import subprocess
    import sys

    heavy = ["numpy", "pandas", "pydantic", "sklearn", "sqlalchemy", "starlette", "uvicorn"]
    code = (
        "import sys\nfrom rtserve.cli.main import main\nsys.argv = ['rtserve', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', ' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "build" in result.stdout
    assert result.stdout.splitlines()[-1].split() == ["LOADED"]
