"""``rtserve config show`` and ``rtserve config check`` through the real command line app."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from rtserve.settings import Settings
from tests.unit.cli.conftest import Invoke


@pytest.fixture(autouse=True)
def _no_rtserve_environment(monkeypatch):
    """Each test sets the variables it means; none leak in from the machine running it."""
    for name in list(os.environ):
        if name.startswith("RTSERVE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, content: dict, name: str = "rtserve.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(content))
    return path


def test_show_gives_every_setting_its_value_and_source_default_file_env_or_flag(
    rtserve_cli: Invoke, tmp_path: Path, monkeypatch
):
    config = write(tmp_path, {"server": {"port": 9000}, "limits": {"max_body_bytes": 4096}})
    monkeypatch.setenv("RTSERVE_SERVER__WORKERS", "3")

    result = rtserve_cli(
        "config", "show", "--config", config, "--set", "cache.max_entries=16", "--json"
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert list(shown) == Settings.leaves()
    assert shown["server.port"] == {"value": 9000, "source": "file"}
    assert shown["server.workers"] == {"value": 3, "source": "env"}
    assert shown["cache.max_entries"] == {"value": 16, "source": "flag"}
    assert shown["server.host"] == {"value": "127.0.0.1", "source": "default"}
    assert shown["limits.max_body_bytes"]["source"] == "file"


def test_show_as_text_is_one_line_per_setting_with_its_source(rtserve_cli: Invoke, monkeypatch):
    monkeypatch.setenv("RTSERVE_SERVER__PORT", "9000")

    result = rtserve_cli("config", "show")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(Settings.leaves())
    port = next(line for line in lines if line.startswith("server.port "))
    assert port.split() == ["server.port", "9000", "(env)"]


def test_show_masks_secrets_and_passwords_in_urls(rtserve_cli: Invoke, monkeypatch):
    monkeypatch.setenv("RTSERVE_AUTH__JWT_SECRET", "hunter2-jwt")
    monkeypatch.setenv("RTSERVE_AUTH__JWT_ISSUER", "issuer")
    monkeypatch.setenv("RTSERVE_AUTH__JWT_AUDIENCE", "audience")
    monkeypatch.setenv("RTSERVE_RATE_LIMIT__STORAGE", "redis://:hunter2-redis@cache:6379/0")
    monkeypatch.setenv("RTSERVE_DECISION_LOG__SINK", "sql")
    monkeypatch.setenv("RTSERVE_DECISION_LOG__DATABASE_URL", "postgresql://u:hunter2-db@db/x")

    result = rtserve_cli("config", "show", "--json")

    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    shown = json.loads(result.stdout)
    assert shown["auth.jwt_secret"] == {"value": "**********", "source": "env"}
    assert shown["rate_limit.storage"]["value"] == "redis://:**********@cache:6379/0"
    assert shown["decision_log.database_url"]["value"] == "postgresql://u:**********@db/x"


def test_show_warns_about_an_old_name_and_says_the_new_one(rtserve_cli: Invoke, monkeypatch):
    monkeypatch.setenv("RTSERVE_MAX_WAIT_MS", "5")

    result = rtserve_cli("config", "show", "--json")

    assert result.exit_code == 0, result.output
    assert "warning: environment variable RTSERVE_MAX_WAIT_MS" in result.stderr
    assert "RTSERVE_BATCHING__MAX_WAIT_S" in result.stderr
    assert json.loads(result.stdout)["batching.max_wait_s"]["value"] == pytest.approx(0.005)


def test_check_accepts_a_valid_file(rtserve_cli: Invoke, tmp_path: Path):
    config = write(
        tmp_path,
        {
            "server": {"port": 9000},
            "policies": {"fraud": {"fallback": {"mode": "fail_open", "default": {"label": 0}}}},
        },
    )

    result = rtserve_cli("config", "check", config)

    assert result.exit_code == 0, result.output
    assert "valid" in result.stderr


def test_check_refuses_a_bad_value_with_one_line_naming_its_key_path(
    rtserve_cli: Invoke, tmp_path: Path
):
    config = write(tmp_path, {"limits": {"max_body_bytes": 12}})

    result = rtserve_cli("config", "check", config)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: limits.max_body_bytes: 12 (from the config file)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_refuses_a_malformed_policy_naming_its_key_path(rtserve_cli: Invoke, tmp_path: Path):
    config = write(tmp_path, {"policies": {"fraud": {"fallback": {"mode": "fail_open"}}}})

    result = rtserve_cli("config", "check", config)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: policies.fraud.fallback: ")
    assert "fail_open needs a default answer" in result.stderr


def test_check_judges_the_file_alone_not_the_environment(
    rtserve_cli: Invoke, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("RTSERVE_LIMITS__MAX_BODY_BYTES", "1")

    result = rtserve_cli("config", "check", write(tmp_path, {"server": {"port": 9000}}))

    assert result.exit_code == 0, result.output


def test_check_of_a_missing_or_unparseable_file_fails_with_one_line(
    rtserve_cli: Invoke, tmp_path: Path
):
    missing = rtserve_cli("config", "check", tmp_path / "nope.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("server: [port\n")
    unparseable = rtserve_cli("config", "check", broken)

    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr
    assert unparseable.exit_code == 1
    assert unparseable.stderr.startswith(f"error: config file {broken}: not readable YAML")


def test_check_accepts_an_old_key_with_a_warning_naming_the_new_one(
    rtserve_cli: Invoke, tmp_path: Path
):
    result = rtserve_cli("config", "check", write(tmp_path, {"max_body_bytes": 4096}))

    assert result.exit_code == 0, result.output
    assert "warning: config file key 'max_body_bytes'" in result.stderr
    assert "limits.max_body_bytes" in result.stderr
