"""``rtserve alerts`` through the real command line app."""

from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from rtserve.cli.main import app


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.prometheus
def test_alerts_writes_rules_promtool_accepts_and_a_dashboard(tmp_path):
    result = run("alerts", "--output", tmp_path, "--p99-ms", "120", "--error-rate", "0.02")
    assert result.exit_code == 0, result.output
    rules = tmp_path / "rtserve-alerts.yml"
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules)], check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "> 0.12" in rules.read_text()
    board = json.loads((tmp_path / "rtserve-dashboard.json").read_text())
    assert board["title"] == "rtserve"


def test_alerts_refuses_a_malformed_duration(tmp_path):
    result = run("alerts", "--output", tmp_path, "--window", "five minutes")
    assert result.exit_code == 2
